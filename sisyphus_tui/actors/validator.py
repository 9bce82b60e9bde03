"""The validator: reviews a plan in its own isolated context (its own brain session),
against the spec and memory-lane, and answers approve or needs_changes with reasons."""

from __future__ import annotations

from sisyphus_tui.actors.base import REVIEW_BEATS, SisyphusActor, Turn, message_kind
from sisyphus_tui.stream.base import Event


class Validator(SisyphusActor):
    """Sends a durable verdict on each plan to the kernel."""

    role = "validator"

    async def on_message(self, turn: Turn, message: Event) -> None:
        kind = message_kind(message)
        data = dict(message.payload.get("data", {}))
        if kind == "task":
            await self.finish_task(turn, message, "a validator reviews plans the kernel "
                                   "sends it")
            return
        if kind != "review_request":
            return
        await turn.pace(REVIEW_BEATS)  # the plan is read before its verdict lands
        ledger = await turn.swarm.ledger_at(message.offset)
        plan = ledger.plan(str(data["plan_id"]))
        if plan is None:
            raise LookupError(f"plan {data['plan_id']} is not in the log")
        turn.status("working", f"reviewing {plan.plan_id}", "validate")
        precedents = await turn.swarm.memory_find(plan.approach)
        decision = await turn.think("review", plan_id=plan.plan_id, approach=plan.approach,
                                    steps=len(plan.steps), precedents=precedents)
        review_round = int(data.get("round", 1))
        turn.emit("REVIEW", {"plan_id": plan.plan_id, "verdict": decision["verdict"],
                             "reasons": decision.get("reasons", []), "round": review_round,
                             "precedents": decision.get("precedents", [])})
        for memory_id in decision.get("precedents", []):
            # The precedent changed the verdict: rank it up for the next run.
            turn.emit("MEMORY_FEEDBACK", {"memory_id": memory_id, "helpful": True},
                      key=f"feedback:{self.name}:{plan.plan_id}:{memory_id}")
        turn.status("idle", f"{plan.plan_id}: {decision['verdict']}", "validate")
        await turn.send("kernel", "review", decision["verdict"],
                        {"plan_id": plan.plan_id, "verdict": decision["verdict"],
                         "reasons": decision.get("reasons", []), "steps": len(plan.steps)})
