"""The kernel: the coordinator that drives Plan -> Validate -> Execute, then the gates.

Its whole state is a small dict, checkpointed with every message it handles, so a
wiped or restarted kernel carries on from exactly where it was.
"""

from __future__ import annotations

from typing import Any

from sisyphus_tui.actors.base import PHASE_BEATS, SisyphusActor, Turn, message_kind
from sisyphus_tui.conductor import Spec, SpecError, parse_spec, run_gate
from sisyphus_tui.stream.base import Event

TEAM = (("planner", "planner"), ("validator", "validator"), ("executor", "executor"))


class Kernel(SisyphusActor):
    """Coordinator: spawns the team, routes the plan through review, runs steps and gates."""

    role = "kernel"

    def spec(self) -> Spec:
        """The run's spec, from the kernel's state (copied from TASK_INIT)."""
        return parse_spec(self.state.get("spec", {}))

    async def on_message(self, turn: Turn, message: Event) -> None:
        kind = message_kind(message)
        data: dict[str, Any] = dict(message.payload.get("data", {}))
        if kind == "TASK_INIT":
            await self._start(turn, message)
        elif kind == "plan_ready":
            await self._phase(turn, "validate")
            turn.status("waiting", f"validator reviews {data['plan_id']}", "validate")
            await turn.send("validator", "review_request", f"review {data['plan_id']}",
                            {"plan_id": data["plan_id"], "round": self.state["round"]})
        elif kind == "review":
            await self._review(turn, data)
        elif kind == "step_done":
            await self._step_done(turn, int(data["step"]))
        elif kind == "step_failed":
            await self._block(turn, f"step {data.get('step')} failed: {message.payload['text']}")
        elif kind == "run_gate":
            await self._run_gate(turn, int(data["index"]))
        elif kind == "gate_fixed":
            await self._run_gate(turn, self.state.get("gate_index", 0))
        elif kind == "approve":
            await self._approve(turn, str(data["gate"]))
        elif kind == "agent_failed":
            # On the record, not a verdict: a failed member of the team stops the host
            # (the swarm sees to that), and the next host starts it again; a
            # sub-agent's failure leaves the run going on.
            self.state.setdefault("failed", []).append(str(data.get("agent")))
        elif kind == "refused":
            await self._refused(turn, message, data)
        elif kind == "result":
            results = self.state.setdefault("results", {})
            found = data.get("findings", {}).get("files", [])
            results[str(data.get("agent", message.actor))] = f"{len(found)} findings"
        # Anything else (a human's note) is on the record; nothing to do.

    async def _phase(self, turn: Turn, phase: str, reason: str = "") -> None:
        await turn.pace(PHASE_BEATS)  # each phase is read before the next one starts
        self.state["phase"] = phase
        turn.emit("PHASE", {"phase": phase, "reason": reason})

    async def _start(self, turn: Turn, message: Event) -> None:
        if self.state.get("phase"):
            return  # a second TASK_INIT for a run in progress changes nothing
        try:
            spec = parse_spec(message.payload.get("spec", {}))
        except SpecError as exc:  # written before specs were checked whole
            await self._block(turn, f"the task cannot run: {exc}")
            return
        self.state.update({"goal": message.payload["goal"], "spec": spec.model_dump(),
                           "round": 1, "revision": 1, "gate_index": 0, "gate_fixes": {},
                           "approved": [], "current_step": 0,
                           "task_offset": message.offset})
        for name, skill in TEAM:
            turn.spawn(skill, name)
        # A background sub-agent: its findings come back to the kernel as a message.
        turn.spawn("researcher", "researcher", spec.research or message.payload["goal"])
        await self._phase(turn, "plan")
        turn.status("waiting", "planner writes the plan", "plan")
        await turn.send("planner", "plan_request", message.payload["goal"],
                        {"goal": message.payload["goal"], "revision": 1})

    async def _review(self, turn: Turn, data: dict[str, Any]) -> None:
        if data["verdict"] == "approve":
            self.state.update({"plan_id": data["plan_id"], "steps": int(data["steps"]),
                               "current_step": 1})
            await self._phase(turn, "execute")
            await self._dispatch_step(turn, 1)
            return
        if self.state["round"] >= self.spec().max_review_rounds:
            await self._block(turn, f"the plan was rejected {self.state['round']} times: "
                                    + "; ".join(data.get("reasons", [])))
            return
        self.state["round"] += 1
        self.state["revision"] += 1
        await self._phase(turn, "plan", "the validator asked for changes")
        await turn.send("planner", "revise", "; ".join(data.get("reasons", [])),
                        {"goal": self.state["goal"], "revision": self.state["revision"],
                         "reasons": data.get("reasons", []), "plan_id": data["plan_id"]})

    async def _dispatch_step(self, turn: Turn, step: int) -> None:
        turn.status("waiting", f"executor on step {step}/{self.state['steps']}", "execute")
        await turn.send("executor", "execute_step", f"step {step}",
                        {"plan_id": self.state["plan_id"], "step": step})

    async def _step_done(self, turn: Turn, step: int) -> None:
        if step < self.state.get("current_step", 0):
            return  # a duplicate report of an earlier step
        if step < self.state["steps"]:
            self.state["current_step"] = step + 1
            await self._dispatch_step(turn, step + 1)
            return
        self.state["current_step"] = step
        await self._phase(turn, "gates")
        await turn.send(self.name, "run_gate", "gate 1", {"index": 0})

    async def _run_gate(self, turn: Turn, index: int) -> None:
        gates = self.spec().gates
        self.state["gate_index"] = index
        if index >= len(gates):
            await self._done(turn)
            return
        gate = gates[index]
        if gate.human:
            if gate.name in self.state["approved"]:
                turn.emit("GATE_RESULT", {"gate": gate.name, "passed": True,
                                          "output_tail": "approved by a human"})
                await turn.send(self.name, "run_gate", f"gate {index + 2}", {"index": index + 1})
            else:
                self.state["waiting_gate"] = gate.name
                turn.status("waiting", f"gate {gate.name} awaits `sisyphus approve "
                                       f"{gate.name}`", "gates")
            return
        turn.status("working", f"gate {gate.name}", "gates")
        await turn.pace()
        result = await run_gate(gate, turn.swarm.workspace)
        turn.emit("GATE_RESULT", result)
        if result["passed"]:
            await turn.send(self.name, "run_gate", f"gate {index + 2}", {"index": index + 1})
            return
        fixes = self.state["gate_fixes"]
        fixes[gate.name] = fixes.get(gate.name, 0) + 1
        if fixes[gate.name] > self.spec().max_gate_fixes:
            await self._block(turn, f"gate {gate.name} still fails after "
                                    f"{fixes[gate.name] - 1} fixes")
            return
        await turn.send("executor", "fix_gate", f"gate {gate.name} failed",
                        {"gate": gate.name, "output_tail": result["output_tail"][-1500:],
                         "attempt": fixes[gate.name]})

    async def _approve(self, turn: Turn, gate: str) -> None:
        if gate not in self.state["approved"]:
            self.state["approved"].append(gate)
        if self.state.pop("waiting_gate", None) == gate:
            await self._run_gate(turn, self.state["gate_index"])

    async def _done(self, turn: Turn) -> None:
        await self._phase(turn, "done", "every step passed its test and every gate passed")
        plan = turn.swarm.ledger.plan(self.state.get("plan_id"))
        approach = plan.approach if plan else ""
        turn.emit("MEMORY_STORED", {
            "title": f"Done: {self.state['goal']}",
            "what": f"approach: {approach}; {self.state.get('steps', 0)} TDD steps; "
                    f"gates: {', '.join(g.name for g in self.spec().gates)}",
            "outcome": "success: every gate passed",
            "tags": ["run", "success"],
            "run": str(self.state.get("task_offset", "")) or None,
        }, key=f"memory:run:{turn.message.offset}")
        turn.status("done", "the run is done", "done")

    async def _refused(self, turn: Turn, message: Event, data: dict[str, Any]) -> None:
        """An agent set aside a message it failed on twice. A step other than the one
        in hand (a stale or forged request) changes nothing; anything else the run
        needed and will not get blocks it, saying why."""
        inner = data.get("data")
        inner = inner if isinstance(inner, dict) else {}
        if data.get("kind") in ("execute_step", "green") and \
                inner.get("step") != self.state.get("current_step"):
            self.state.setdefault("refused", []).append(data.get("message"))
            return
        await self._block(turn, f"{data.get('agent')} could not handle message "
                                f"{data.get('message')} ({data.get('kind')}) twice: "
                                f"{message.payload.get('text', '')}"[:600])

    async def _block(self, turn: Turn, reason: str) -> None:
        await self._phase(turn, "blocked", reason)
        turn.status("blocked", reason, "blocked")
