"""The planner: writes the plan (numbered steps, each with the test that proves it),
after retrieving precedents from memory-lane."""

from __future__ import annotations

from sisyphus_tui.actors.base import SisyphusActor, Turn, message_kind
from sisyphus_tui.stream.base import Event


class Planner(SisyphusActor):
    """Turns the goal (and any review's reasons) into PLAN_INIT and PLAN_STEP events."""

    role = "planner"

    async def on_message(self, turn: Turn, message: Event) -> None:
        kind = message_kind(message)
        data = dict(message.payload.get("data", {}))
        if kind == "task":
            await self.finish_task(turn, message, "a planner plans through the kernel: "
                                   "send it a TASK_INIT")
            return
        if kind not in ("plan_request", "revise"):
            return
        revision = int(data.get("revision", 1))
        turn.status("working", f"planning revision {revision}", "plan")
        precedents = await turn.swarm.memory_find(str(data.get("goal", "")))
        decision = await turn.think("plan", revision=revision, goal=data.get("goal"),
                                    reasons=data.get("reasons", []), precedents=precedents)
        plan_id = f"plan-{revision}"
        steps = decision["steps"]
        turn.emit("PLAN_INIT", {"plan_id": plan_id, "summary": decision.get("summary", ""),
                                "approach": decision.get("approach", ""), "revision": revision,
                                "steps": len(steps),
                                "precedents": [p["id"] for p in precedents]})
        for number, step in enumerate(steps, start=1):
            await turn.pace()
            turn.emit("PLAN_STEP", {"plan_id": plan_id, "step": number, "title": step["title"],
                                    "test": step.get("test", ""),
                                    "files": list(step.get("files", []))})
        self.state["revision"] = revision
        turn.status("idle", f"{plan_id} written", "plan")
        await turn.send("kernel", "plan_ready", f"{plan_id} is ready",
                        {"plan_id": plan_id, "steps": len(steps)})
