"""The scripted brain: deterministic, no network, and doing real work.

It plays the demo's script (``sisyphus_tui/demo/script.py``): the planner's two plan
revisions, a validator that rejects an approach a failed precedent warns about, and
the executor's real file contents for each TDD step and gate fix. Its "conversation"
is the list of thoughts it has had; a wipe empties it.
"""

from __future__ import annotations

import re
from typing import Any

from sisyphus_tui.brains.base import Brain, Thought

WORD = re.compile(r"[a-z]{4,}")


def _words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


class ScriptedBrain(Brain):
    """Plays the demo script for any role."""

    kind = "scripted"

    def __init__(self) -> None:
        from sisyphus_tui.demo.script import load_script

        self.script = load_script()
        self.session: list[str] = []

    @property
    def memory_size(self) -> int:
        return len(self.session)

    def reset(self) -> None:
        self.session.clear()

    async def think(self, thought: Thought) -> dict[str, Any]:
        self.session.append(f"{thought.purpose}@{thought.message.offset}")
        handler = getattr(self, "_" + thought.purpose)
        result: dict[str, Any] = handler(thought)
        return result

    def _plan(self, thought: Thought) -> dict[str, Any]:
        revision = int(thought.data.get("revision", 1))
        plan = self.script.first_plan if revision == 1 else self.script.approved_plan
        return {
            "approach": plan.approach,
            "summary": plan.summary,
            "tags": list(plan.tags),
            "steps": [
                {"title": s.title, "test": s.test, "files": list(s.files)} for s in plan.steps
            ],
        }

    def _review(self, thought: Thought) -> dict[str, Any]:
        approach = str(thought.data.get("approach", ""))
        warnings = [
            p for p in thought.data.get("precedents", [])
            if str(p.get("outcome", "")).lower().startswith("failed")
            and len(_words(approach) & _words(p.get("title", "") + " " + p.get("what", ""))) >= 2
        ]
        if warnings:
            return {
                "verdict": "needs_changes",
                "reasons": [
                    f"precedent #{p['id']} ({p['title']}): {p['outcome']}" for p in warnings
                ],
                "precedents": [p["id"] for p in warnings],
            }
        return {"verdict": "approve", "reasons": ["the plan matches the spec; every step "
                                                   "names the test that proves it"],
                "precedents": []}

    def _step(self, number: int) -> Any:
        for step in self.script.approved_plan.steps:
            if step.number == number:
                return step
        raise LookupError(f"the script has no step {number}")

    def _red(self, thought: Thought) -> dict[str, Any]:
        step = self._step(int(thought.data["step"]))
        return {"files": dict(step.red), "test": step.test}

    def _green(self, thought: Thought) -> dict[str, Any]:
        step = self._step(int(thought.data["step"]))
        return {"files": dict(step.green), "test": step.test}

    def _fix(self, thought: Thought) -> dict[str, Any]:
        return {"files": dict(self.script.gate_fixes.get(str(thought.data.get("gate")), {})),
                "test": ""}

    def _task(self, thought: Thought) -> dict[str, Any]:
        findings = thought.data.get("findings")
        if findings is not None:
            lines = [f"{f['path']}:{f['line']}: {f['text']}" for f in findings.get("files", [])]
            lines += [f"precedent #{p['id']}: {p['title']} ({p['outcome']})"
                      for p in findings.get("precedents", [])]
            text = "\n".join(lines) if lines else "nothing found"
            return {"text": text, "data": findings}
        return {"text": f"the scripted {thought.role} brain has no script for: "
                        f"{thought.data.get('prompt', '')!r}", "data": {}}
