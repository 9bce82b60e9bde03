"""A real coding agent as a brain: each thought becomes one prompt to its CLI (in the
agent's own backend session, resumed turn after turn), every event it streams goes to
the log as it happens, and its answer is read back as the purpose's decision.

Planning, reviewing and tasks answer in JSON (the backend's own schema flag where it
has one, and the prompt says the shape anyway). Red, green and fix are acts: the agent
edits the workspace itself, and the executor observes what changed (it never takes
the agent's account of it); the swarm runs the tests and gates.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sisyphus_tui.agents import backend as make_backend
from sisyphus_tui.agents.base import AgentEvent, AgentRequest, Backend, Permissions
from sisyphus_tui.agents.config import AGENTS_FOLDER, BrainConfig, agent_folder
from sisyphus_tui.agents.runner import AgentResult, run_resuming
from sisyphus_tui.brains.base import Brain, Thought
from sisyphus_tui.brains.decisions import DECISIONS
from sisyphus_tui.errors import SisyphusError

ACTS = ("red", "green", "fix")
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


class AgentFailed(SisyphusError):
    """The agent's turn did not finish: the reason in one line (its backend's own).
    ``passing``: the failure may pass (an overloaded model, a dropped connection): the
    turn is tried again after ``retry_after_s``, never made the run's verdict."""

    retry_after_s = 5.0
    # A fault that passes is waited out this many times, then the host stops (exit 4,
    # the same command resumes): a mistyped URL must not spin for ever.
    max_retries = 6
    # The agent's environment failed (its model, its key, its CLI), not the message it
    # was handling: never a reason to set that message aside as poison.
    not_the_message = True

    def __init__(self, message: str, *, passing: bool = False) -> None:
        super().__init__(message)
        self.passing = passing


class AgentBrain(Brain):
    """One agent's brain on a coding-agent backend: a session of its own."""

    acts = True

    def __init__(self, config: BrainConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.backend = backend or make_backend(config.backend)
        self.kind = config.backend  # type: ignore[misc]  # (an instance's own kind)
        self.session: str | None = None
        self.fresh = False  # wiped: the log's session is not this brain's any more
        self.turns = 0

    @property
    def memory_size(self) -> int:
        return self.turns

    def reset(self) -> None:
        self.session = None
        self.fresh = True
        self.turns = 0

    async def think(self, thought: Thought) -> dict[str, Any]:
        if thought.workspace is None:
            raise SisyphusError("an agent brain needs the workspace to work in")
        record = thought.record
        # A turn a crash left in doubt is done again: in its session, told so, or in a
        # fresh one, by the role's policy; a wipe always starts a fresh one.
        interrupted = await record.interrupted() if record is not None else None
        fresh = self.fresh or (interrupted is not None and self.config.on_interrupt == "fresh")
        session = None if fresh else (self.session or thought.session)
        await asyncio.to_thread(agent_folder, thought.workspace, thought.agent)
        request = self.request(thought, session)
        if record is not None:
            sections: list[str] = []
            view = thought.ledger.agents.get(thought.agent)
            if session is None and (fresh or (view is not None and view.wiped_ts is not None)):
                # A new session for an agent with a past: primed from the log (its
                # last session's conversation is not this one's).
                sections.append(await record.primer())
            rolled = False
            if interrupted is not None:
                rolled = not request.read_only and await record.roll_back()
                sections.append(interruption_note(
                    interrupted, rolled_back=rolled, resumed=session is not None,
                    edits=not request.read_only))
            if session is not None:
                task = request.prompt
                # Should the session not come back, the new one is primed as after a
                # wipe (and told of the interruption), not handed a prompt that
                # assumes a conversation it never had.
                async def fresh_prompt() -> str:
                    assert record is not None
                    parts = [await record.primer()]
                    if interrupted is not None:
                        parts.append(interruption_note(
                            interrupted, rolled_back=rolled, resumed=False,
                            edits=not request.read_only))
                    return "\n\n".join([*parts, "## Your task now", task])

                request = replace(request, fresh_prompt=fresh_prompt)
            if sections:
                request = replace(request, prompt="\n\n".join(
                    [*sections, "## Your task now", request.prompt]))
            await record.begin(self.backend.name, self.config.model, request.prompt,
                               session, edits=not request.read_only)

        async def said(event: AgentEvent) -> None:
            if event.kind == "session" and event.data.get("session_id"):
                self.session = str(event.data["session_id"])
                self.fresh = False
            if thought.say is not None:
                await thought.say(event.kind, event.text, event.data, event.raw)

        result = await run_resuming(self.backend, request, said)
        self.turns += 1
        if result.session:
            self.session = result.session
        if not result.ok:
            why = result.error or "failed"
            if not why.startswith(self.backend.name):
                why = f"{self.backend.name}: {why}"
            raise AgentFailed(why, passing=result.passing)
        return answer_of(thought.purpose, result)

    def request(self, thought: Thought, session: str | None) -> AgentRequest:
        """The request for one thought (``thought.workspace`` is set)."""
        assert thought.workspace is not None
        schema = None
        if thought.purpose not in ACTS and thought.purpose in DECISIONS:
            schema = DECISIONS[thought.purpose].model_json_schema()
        thinking = self.config.thinking or thought.thinking
        state_dir = thought.workspace / AGENTS_FOLDER / thought.agent
        return AgentRequest(
            prompt=prompt_for(thought), workspace=thought.workspace, session=session,
            instructions=thought.instructions, model=self.config.model, thinking=thinking,
            schema=schema, permissions=Permissions(
                # A skill's tools are its agent's, beyond editing the workspace.
                (*self.config.allow, *thought.tools), self.config.deny, self.config.ask),
            ask=thought.ask,
            args=self.config.args, env=dict(self.config.env), command=self.config.command,
            state_dir=state_dir,
            # Only an act edits the workspace: the planner, the validator and a
            # researcher read it (each CLI refuses their edits itself).
            read_only=thought.purpose not in ACTS,
            timeout_s=thought.timeout_s or self.config.timeout_s)


def interruption_note(started: Mapping[str, Any], *, rolled_back: bool, resumed: bool,
                      edits: bool = True) -> str:
    """What an agent redoing a turn found in doubt is told: that its previous attempt
    was interrupted, and whether the workspace was put back as that attempt found it."""
    attempt = started.get("attempt") or 1
    whose = "Your" if resumed else "A"
    text = (f"## Note: this turn was interrupted\n\n{whose} previous attempt at this "
            f"turn (attempt {attempt}) was interrupted before it finished (the supervisor "
            "stopped, or the attempt failed).")
    if rolled_back:
        return (text + " The workspace was rolled back to where that attempt started: "
                "none of its edits are there any more. Do the whole task again, from "
                "the start.")
    if not edits:
        return text + " Answer again, from the start."
    return text + " Do the task again from the start (look at the files: they may hold " \
                  "part of that attempt's work)."


def answer_of(purpose: str, result: AgentResult) -> dict[str, Any]:
    """The decision in an agent's final answer. An act's decision is what it did (the
    executor looks at the files); any other is the JSON object it answered with, or
    what it said instead (``check_decision`` then names what is missing)."""
    if purpose in ACTS:
        return {"files": {}, "test": None, "summary": result.text[-2000:]}
    found = json_in(result.text)
    if found is None:
        return {"_answer": result.text[-2000:]}
    return found


def json_in(text: str) -> dict[str, Any] | None:
    """The JSON object an answer holds: the whole text, else the last fenced block,
    else the last object found in it."""
    stripped = text.strip()
    candidates = [stripped, *reversed(_FENCE.findall(text))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    last: dict[str, Any] | None = None
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            last = value
    return last


def _plan_text(thought: Thought, plan_id: str | None) -> str:
    plan = thought.ledger.plan(plan_id) if plan_id else None
    if plan is None:
        return "(the plan is not in the log)"
    lines = [f"Plan {plan.plan_id} (revision {plan.revision}): {plan.summary}",
             f"Approach: {plan.approach}"]
    for number in sorted(plan.steps):
        step = plan.steps[number]
        files = ", ".join(step.files) or "-"
        lines.append(f"  {number}. {step.title}\n     test: {step.test or '-'}\n"
                     f"     files: {files}")
    return "\n".join(lines)


def _precedents(thought: Thought) -> str:
    found = thought.data.get("precedents") or []
    if not found:
        return "memory-lane holds no precedent for this."
    return "\n".join(f"- precedent #{p.get('id')}: {p.get('title')}: {p.get('what')} "
                     f"-> {p.get('outcome')}" for p in found)


def _json_answer(purpose: str) -> str:
    schema = json.dumps(DECISIONS[purpose].model_json_schema(), separators=(",", ":"))
    return ("Answer with one JSON object and nothing else (no prose around it), fitting "
            f"this JSON schema:\n{schema}")


def _step_of(thought: Thought) -> tuple[str, str]:
    """The current step's text and its test, from the plan the message names."""
    data = thought.message.payload.get("data", {})
    plan = thought.ledger.plan(str(data.get("plan_id"))) if data.get("plan_id") else None
    number = int(thought.data.get("step", data.get("step", 0)) or 0)
    if plan is None or number not in plan.steps:
        return f"step {number}", ""
    step = plan.steps[number]
    return (f"step {number} of {len(plan.steps)}: {step.title} (files: "
            f"{', '.join(step.files) or '-'})"), step.test


def prompt_for(thought: Thought) -> str:
    """The prompt for one thought: what the role is asked, with what it needs to know."""
    purpose, data = thought.purpose, thought.data
    goal = thought.ledger.goal or str(data.get("goal") or "")
    parts: list[str] = [f"You are the {thought.role} of a supervised swarm of coding "
                        f"agents working in {thought.workspace}. The goal of the run: {goal}"]
    if purpose == "plan":
        parts.append("Read the repository (do not edit any file) and write the plan: "
                     "small steps, each one behaviour, each naming the test that proves "
                     "it (a pytest node id that fails before the step and passes after "
                     "it) and the files it edits. The whole suite must stay green "
                     "after every step.")
        if data.get("reasons"):
            parts.append("The validator sent the last plan back: "
                         + "; ".join(str(r) for r in data["reasons"]))
        parts.append("Precedents from past runs:\n" + _precedents(thought))
        parts.append(_json_answer("plan"))
    elif purpose == "review":
        parts.append("Review this plan, in your own judgement, against the goal, the "
                     "repository (read it; do not edit) and the precedents. Approve it "
                     "only if every step is small, names a real test and keeps the suite "
                     "green; else ask for changes and say why.")
        parts.append(_plan_text(thought, str(data.get("plan_id") or "")))
        parts.append("Precedents from past runs:\n" + _precedents(thought))
        parts.append(_json_answer("review"))
    elif purpose == "red":
        step, test = _step_of(thought)
        parts.append(f"Do the TEST half of {step}. Write (or extend) the test that "
                     f"proves it: {test or 'name it after the step'}. It must fail now. "
                     "Do not change the code under test. Edit the files directly; the "
                     "swarm runs the test after you.")
    elif purpose == "green":
        step, test = _step_of(thought)
        parts.append(f"Now make {step} pass: edit the code so that its test ({test or '-'}) "
                     "and the whole suite pass. Do not weaken or delete tests. Edit the "
                     "files directly; the swarm runs the suite after you.")
    elif purpose == "fix":
        parts.append(f"The quality gate {data.get('gate')!r} fails. Its output:\n"
                     f"{str(data.get('output_tail', ''))[-3000:]}\nFix the code so it "
                     "passes, keeping every test green. Edit the files directly.")
    else:
        parts.append(f"Your task: {data.get('prompt') or thought.message.payload.get('text')}")
        if data.get("findings") is not None:
            parts.append("What was found so far: " + json.dumps(data["findings"])[:4000])
        parts.append(_json_answer("task"))
    if data.get("invalid_answer"):
        parts.append(f"Your last answer could not be used: {data['invalid_answer']}. "
                     "Answer again, fitting the schema exactly.")
    return "\n\n".join(parts)
