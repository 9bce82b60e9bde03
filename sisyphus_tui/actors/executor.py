"""The executor: TDD, step by step. Red: write the failing test and run it (TEST_FAIL).
Green: edit the code (FILE_EDIT with hashes), run the tests (TEST_PASS), checkpoint.

Red and green are two messages (the executor mails itself the green half), so each
half commits on its own and a crash between them resumes at green.
"""

from __future__ import annotations

from typing import Any

from sisyphus_tui.actors.base import SisyphusActor, Turn, message_kind
from sisyphus_tui.stream.base import Event


class Executor(SisyphusActor):
    """Carries out the approved plan's steps and fixes failing gates."""

    role = "executor"

    async def on_message(self, turn: Turn, message: Event) -> None:
        kind = message_kind(message)
        data: dict[str, Any] = dict(message.payload.get("data", {}))
        if kind == "execute_step":
            await self._red(turn, int(data["step"]), data)
        elif kind == "green":
            await self._green(turn, int(data["step"]), data)
        elif kind == "fix_gate":
            await self._fix(turn, str(data["gate"]), data)
        elif kind == "task":
            await self.finish_task(turn, message, "an executor works on the approved "
                                   "plan's steps, sent by the kernel")

    async def _write(self, turn: Turn, files: dict[str, str], step: int | None) -> None:
        hashes: dict[str, str] = self.state.setdefault("files", {})
        for path in sorted(files):
            hashes[path] = await turn.write_file(path, files[path], step=step,
                                                 expected_before=hashes.get(path))

    async def _red(self, turn: Turn, step: int, data: dict[str, Any]) -> None:
        if step <= self.state.get("step", 0):
            return  # done before a wipe: the checkpoint says so, nothing to redo
        turn.status("working", f"step {step}: writing the failing test", "execute")
        decision = await turn.think("red", step=step)
        await self._write(turn, decision["files"], step)
        result = await turn.run_tests(decision["test"], step=step)
        if result.ok:
            # The test passed before the change: it proves nothing. Say so, carry on.
            turn.status("working", f"step {step}: the new test already passes", "execute")
        await turn.send(self.name, "green", f"step {step}: make it pass", data)

    async def _green(self, turn: Turn, step: int, data: dict[str, Any]) -> None:
        if step <= self.state.get("step", 0):
            return
        turn.status("working", f"step {step}: editing the code", "execute")
        decision = await turn.think("green", step=step)
        await self._write(turn, decision["files"], step)
        # The whole suite: the step's own test and everything that passed before.
        suite = await turn.run_tests(None, step=step)
        if not suite.ok:
            turn.status("blocked", f"step {step}: tests still fail", "execute")
            await turn.send("kernel", "step_failed", suite.output_tail[-400:], {"step": step})
            return
        self.state["step"] = step
        turn.status("idle", f"step {step} done", "execute")
        await turn.send("kernel", "step_done", f"step {step} done", {"step": step})

    async def _fix(self, turn: Turn, gate: str, data: dict[str, Any]) -> None:
        turn.status("working", f"fixing gate {gate}", "gates")
        decision = await turn.think("fix", gate=gate, output_tail=data.get("output_tail", ""))
        await self._write(turn, decision["files"], None)
        await turn.run_tests(None)
        turn.status("idle", f"gate {gate}: fix applied", "gates")
        await turn.send("kernel", "gate_fixed", f"gate {gate}: fix applied", {"gate": gate})

