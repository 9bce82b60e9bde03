"""The story of a run, one line per event: what the headless output prints, the TUI's
stream rows and ``sisyphus events`` show.

``summary(event)`` is the one-line description of an event (``review of plan-1:
needs_changes - precedent #1 ...``), ``line(event)`` the headless form with its offset
and actor (``[40] validator: review of plan-1: ...``). Both return the log's text as it
is: every output escapes it (``printable``) or shows it as plain text where it is shown.
Multi-line text (a test run's output, a blocked reason) is cut to ``headline``: its
first line and its last meaningful one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sisyphus_tui.agents.base import subject_of
from sisyphus_tui.stream.base import Event

# The events that keep the log durable but tell no story: an agent's checkpoint, its
# status (the agents pane shows it), its registration. The stream hides them until asked.
BOOKKEEPING = frozenset({"CHECKPOINT", "STATUS_UPDATE", "AGENT_REGISTERED"})
ONE_LINE_LIMIT = 400
# A line made only of these says nothing (pytest's ``=====`` rules, ``---``).
_RULE = re.compile(r"^[\s=\-_*#~.+]*$")
_FRAME = " =-_*#~"


def headline(text: str, limit: int = ONE_LINE_LIMIT) -> str:
    """``text`` on one line: itself if it has one line, else its first line and its last
    meaningful one (``step 2 failed: ... … 1 failed, 3 passed in 0.21s``), spaces folded."""
    lines = [" ".join(part.split()) for part in text.splitlines()]
    lines = [part for part in lines if part]
    if not lines:
        return ""
    first = lines[0]
    meaningful = [part.strip(_FRAME) for part in lines[1:] if not _RULE.match(part)]
    out = first if not meaningful else f"{first} … {meaningful[-1]}"
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _who(e: Event, p: dict[str, Any], sep: str = " ") -> str:
    """The agent an event is about, unless it is the event's own actor (a row and the
    headless line already start with it: ``executor: executor: resumed``)."""
    return "" if p["agent"] == e.actor else f"{p['agent']}{sep}"


def _events(count: int) -> str:
    return "1 event" if count == 1 else f"{count} events"


def _steps(p: dict[str, Any]) -> str:
    return f"step {p['step']}: " if p.get("step") is not None else ""


def _test(p: dict[str, Any], verdict: str) -> str:
    took = f" in {p['duration_s']:.2f}s" if isinstance(p.get("duration_s"), int | float) \
        else ""
    tail = headline(str(p.get("output_tail") or ""))
    last = tail.rsplit(" … ", 1)[-1] if tail else ""
    return f"{_steps(p)}tests {verdict}{took}" + (f" ({last})" if last else "")


def resumed_run(p: dict[str, Any]) -> str:
    """What a RUN_RESUMED says: ``resumed at step 2/4 after an interruption`` while the
    steps run (the step in hand: one past those done), else the phase it resumed in."""
    done, total = int(p["done"]), int(p["total"])
    if p["phase"] == "execute" and total:
        return f"resumed at step {min(done + 1, total)}/{total} after an interruption"
    steps = f" ({done}/{total} steps done)" if total else ""
    return f"resumed in phase {p['phase']}{steps} after an interruption"


def _control(p: dict[str, Any]) -> str:
    action = p["action"]
    target = p.get("agent") or p.get("gate") or ""
    extra = f" (skill {p['skill']})" if action == "spawn" and p.get("skill") else ""
    return f"requests {action}" + (f" {target}" if target else "") + extra


def _message(event: Event, p: dict[str, Any]) -> str:
    kind = p.get("kind") or "note"
    text = headline(str(p.get("text") or ""))
    to = f"to {event.to}: " if event.to else ""
    return f"{to}{kind}" + (f": {text}" if text else "")


def _output(p: dict[str, Any]) -> str:
    kind = p.get("kind", "?")
    raw = p.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    text = headline(str(p.get("text") or ""))
    if kind == "tool_call" and data.get("name"):
        return f"tool {data['name']}" + (f": {text}" if text else "")
    return f"{kind}" + (f": {text}" if text else "")


def _asked(p: dict[str, Any]) -> str:
    """``asks to use Bash: pytest -q`` (the call's command, else its path or url...)."""
    raw = p.get("input")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    subject = subject_of(data) or ""
    waits = f" ({p.get('on_timeout', 'deny')} if unanswered in {p['timeout_s']:g}s)" \
        if p.get("timeout_s") else ""
    return f"asks to use {p['tool']}" + (f": {headline(subject)}" if subject else "") + waits


def _answered(e: Event, p: dict[str, Any]) -> str:
    done = "allowed" if p["decision"] == "allow" else "denied"
    who = {"human": f"by {e.actor or 'a person'}", "timeout": "by the timeout",
           "policy": "by the policy"}.get(str(p.get("by") or "human"), "")
    always = " for the rest of the run" if p.get("always") else ""
    said = f": {headline(str(p['message']))}" if p.get("message") else ""
    return f"{p['agent']}'s request {done} {who}{always}{said}"


def _turn(e: Event, p: dict[str, Any]) -> str:
    attempt = f", attempt {p['attempt']}" if int(p.get("attempt") or 1) > 1 else ""
    again = ", redone after an interruption" if p.get("recovering") else ""
    session = f", resuming {p['session']}" if p.get("session") else ", new session"
    return (f"{_who(e, p)}turn on message {p['message']} ({p['backend']}{session}"
            f"{attempt}{again})")


def _usd(amount: float) -> str:
    """``$4.00``; under a dollar with four decimals (a small budget is not ``$0.00``)."""
    return f"${amount:.2f}" if amount >= 1 else f"${amount:.4f}"


def _budget(p: dict[str, Any]) -> str:
    whose = f"{p['agent']}'s budget" if p.get("agent") else "the run's budget"
    spent = f"{_usd(float(p['spent_usd']))} of {_usd(float(p['limit_usd']))}"
    if p["level"] == "warn":
        return f"{whose}: {spent} spent (80%)"
    return f"{whose} is spent ({spent}): paused"


_LINES: dict[str, Callable[[Event, dict[str, Any]], str]] = {
    "TASK_INIT": lambda e, p: f"task: {headline(p['goal'])}",
    "PHASE": lambda e, p: f"phase {p['phase']}"
                          + (f": {headline(p['reason'])}" if p.get("reason") else ""),
    "AGENT_SPAWNED": lambda e, p: f"spawned {p['agent']} ({p['role']}"
                                  + (f", skill {p['skill']}" if p.get("skill") else "") + ")",
    "AGENT_REGISTERED": lambda e, p: f"registered {p['agent']}"
                                     + (f" ({p['role']})" if p.get("role") else ""),
    "PLAN_INIT": lambda e, p: f"{p['plan_id']}: {headline(p.get('approach', ''))} "
                              f"({p.get('steps', 0)} steps)",
    "PLAN_STEP": lambda e, p: f"{p['plan_id']} step {p['step']}: {headline(p['title'])}",
    "REVIEW": lambda e, p: f"review of {p['plan_id']}: {p['verdict']}"
                           + (f" - {headline('; '.join(map(str, p['reasons'])))}"
                              if p.get("reasons") else ""),
    "FILE_EDIT": lambda e, p: f"{_steps(p)}edit {p['path']}"
                              + (" (already applied)" if p.get("already_applied") else ""),
    "TEST_FAIL": lambda e, p: _test(p, "fail"),
    "TEST_PASS": lambda e, p: _test(p, "pass"),
    "GATE_RESULT": lambda e, p: f"gate {p['gate']}: {'pass' if p['passed'] else 'FAIL'}"
                                + (f" (exit {p['exit_code']})"
                                   if not p["passed"] and p.get("exit_code") is not None
                                   else ""),
    "MESSAGE": _message,
    "STATUS_UPDATE": lambda e, p: f"{_who(e, p)}{p['state']}"
                                  + (f": {headline(p['detail'])}" if p.get("detail") else ""),
    "CHECKPOINT": lambda e, p: f"{_who(e, p)}checkpoint"
                               + (f" at cursor {p['cursor']}" if p.get("cursor") is not None
                                  else "")
                               + (f", step {p['step']}" if p.get("step") is not None else ""),
    "CONTEXT_WIPED": lambda e, p: f"{p['agent']}: context wiped",
    "RESUMED": lambda e, p: f"{_who(e, p, ': ')}resumed from checkpoint @{p['cursor']} "
                            f"({_events(p['reread'])} re-read, {p['duration_ms']:.1f} ms)",
    "RUN_RESUMED": lambda e, p: resumed_run(p),
    "AGENT_FAILED": lambda e, p: f"{p['agent']} FAILED: {headline(p['error'])}",
    "AGENT_STALE": lambda e, p: f"{p['agent']} is stale ({p['silent_s']:.0f}s silent)",
    "AGENT_STOPPED": lambda e, p: f"{_who(e, p)}stopped"
                                  + (f": {headline(p['reason'])}" if p.get("reason") else ""),
    "CONTROL": lambda e, p: _control(p),
    "MEMORY_STORED": lambda e, p: f"stored #{e.offset} {headline(p['title'])}",
    "MEMORY_FEEDBACK": lambda e, p: f"memory #{p['memory_id']} "
                                    + ("helped" if p["helpful"] else "did not help"),
    "AGENT_OUTPUT": lambda e, p: f"{_who(e, p)}{_output(p)}",
    "TURN_STARTED": _turn,
    "PERMISSION_REQUESTED": lambda e, p: f"{_who(e, p)}{_asked(p)}",
    "PERMISSION_ANSWERED": _answered,
    "AGENT_QUEUED": lambda e, p: f"{_who(e, p)}queued: {p['backend']} runs "
                                 f"{p['running']} of {p['cap']}",
    "AGENT_STALLED": lambda e, p: f"{p['agent']} stalled: no output for "
                                  f"{float(p['silent_s']):.0f}s",
    "AGENT_CANCELLED": lambda e, p: f"{p['agent']}'s turn cancelled"
                                    + (f" ({p['how']})" if p.get("how", "none") != "none" else
                                       " (before any process ran)"),
    "BUDGET": lambda e, p: _budget(p),
}


def summary(event: Event) -> str:
    """What ``event`` says, on one line (the log's text unescaped: escape it to show it).
    A type with no story of its own, or a payload the line cannot read, is its type and
    compact JSON."""
    describe = _LINES.get(event.type)
    if describe is not None:
        try:
            out = describe(event, event.payload)
        except (KeyError, TypeError, ValueError, AttributeError):
            out = None
        if out is not None:
            return headline(out)
    text = event.payload.get("text")
    if isinstance(text, str) and text.strip():
        return headline(f"{event.type}: {text}")
    body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False)
    return headline(f"{event.type} {body}")


def line(event: Event) -> str:
    """The headless line: ``[40] validator: review of plan-1: needs_changes - ...``."""
    return f"[{event.offset}] {event.actor or '-'}: {summary(event)}"
