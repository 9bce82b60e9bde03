"""The executor: TDD, step by step. Red: write the failing test and run it (TEST_FAIL).
Green: edit the code (FILE_EDIT with hashes), run the tests (TEST_PASS), checkpoint.

Red and green are two messages (the executor mails itself the green half), so each
half commits on its own and a crash between them resumes at green.
"""

from __future__ import annotations

from typing import Any

from sisyphus_tui.actors.base import STEP_BEATS, SisyphusActor, Turn, message_kind
from sisyphus_tui.stream.base import Event

# pytest's exit codes for "no test ran": none collected, or a bad target or option.
PYTEST_USAGE_ERROR = 4
PYTEST_NO_TESTS = 5


class Executor(SisyphusActor):
    """Carries out the approved plan's steps and fixes failing gates."""

    role = "executor"

    async def on_message(self, turn: Turn, message: Event) -> None:
        kind = message_kind(message)
        data: dict[str, Any] = dict(message.payload.get("data", {}))
        if kind == "execute_step":
            await turn.pace(STEP_BEATS)  # a step's start is seen before its test runs
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

    async def _act(self, turn: Turn, purpose: str, step: int | None,
                   **extra: Any) -> dict[str, Any]:
        """Ask the brain, and make its edits: the files it answered with, or, for a
        coding agent that edits the workspace itself, what the files show it did."""
        data = {"step": step, **extra} if step is not None else extra
        if not self.brain.acts:
            decision = await turn.think(purpose, **data)
            await self._write(turn, decision["files"], step)
            return decision
        # An attempt of this turn a crash left in doubt: the workspace goes back to
        # where it started first, so what is observed is this attempt's work, once.
        await turn.record.roll_back()
        before = await turn.snapshot_before()
        decision = await turn.think(purpose, **data)
        await turn.observe(before, step=step)
        return decision

    def _step_test(self, turn: Turn, data: dict[str, Any], step: int) -> str | None:
        """The test the plan names for a step (what the swarm runs, whatever the agent
        claims): its node id or file, a leading ``pytest`` and the words after it
        dropped; None (the whole suite) if it names none, or names an option."""
        plan = turn.swarm.ledger.plan(str(data.get("plan_id")))
        view = plan.steps.get(step) if plan is not None else None
        words = view.test.split() if view is not None else []
        if words[:1] in (["pytest"], ["py.test"]):
            words = words[1:]
        target = words[0].strip("`'\",") if words else ""
        if not target or target.startswith("-"):
            return None
        return target if "::" in target or target.endswith(".py") else None

    async def _red(self, turn: Turn, step: int, data: dict[str, Any]) -> None:
        if step <= self.state.get("step", 0):
            return  # done before a wipe: the checkpoint says so, nothing to redo
        turn.status("working", f"step {step}: writing the failing test", "execute")
        decision = await self._act(turn, "red", step)
        result = await turn.run_tests(decision["test"] or self._step_test(turn, data, step),
                                      step=step)
        if result.ok:
            # The test passed before the change: it proves nothing. Say so, carry on.
            turn.status("working", f"step {step}: the new test already passes", "execute")
        elif result.exit_code in (PYTEST_NO_TESTS, PYTEST_USAGE_ERROR):
            # Not a failing test: no test ran at all. Said, so a person sees the step
            # is not proven by a red test.
            turn.status("working", f"step {step}: the test it names did not run (pytest "
                                   f"exit {result.exit_code})", "execute")
        await turn.send(self.name, "green", f"step {step}: make it pass", data)

    async def _green(self, turn: Turn, step: int, data: dict[str, Any]) -> None:
        if step <= self.state.get("step", 0):
            return
        turn.status("working", f"step {step}: editing the code", "execute")
        await self._act(turn, "green", step)
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
        await self._act(turn, "fix", None, gate=gate, output_tail=data.get("output_tail", ""))
        await turn.run_tests(None)
        turn.status("idle", f"gate {gate}: fix applied", "gates")
        await turn.send("kernel", "gate_fixed", f"gate {gate}: fix applied", {"gate": gate})

