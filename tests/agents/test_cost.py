"""Tokens, cost and budgets on the real agent CLIs against the fake model servers: a
budget that pauses a real ``sisyphus run`` on claude until ``sisyphus unpause``; claude's
own cost through ``sisyphus agent``, ``sisyphus cost`` and ``agents --json``; opencode's
steps summed once and priced from the config's table (marked as an estimate); gemini
resumed, priced by the model it names; an ACP agent's turn counted once; a codex thread
resumed twice, whose CLI counts the whole thread, counted turn by turn."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.agents import backend
from sisyphus_tui.agents.base import AgentEvent, AgentRequest
from sisyphus_tui.agents.codex import CodexBackend, codex_home, thread_usage
from sisyphus_tui.agents.config import Price
from sisyphus_tui.agents.gemini import GeminiBackend
from sisyphus_tui.agents.runner import run_agent
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.stream.base import Event
from sisyphus_tui.usage import account, estimate
from tests.agents.fakemodel import FakeModel, Step
from tests.agents.fakemodel.anthropic import Anthropic
from tests.agents.fakemodel.gemini import Gemini
from tests.agents.fakemodel.openai_chat import OpenAIChat
from tests.agents.fakemodel.openai_responses import OpenAIResponses
from tests.agents.test_acp import command as acp_command
from tests.agents.test_codex import MODEL as CODEX_MODEL
from tests.agents.test_codex import configure as configure_codex
from tests.agents.test_codex import request as codex_request
from tests.agents.test_gemini import gemini_env, workspace
from tests.agents.test_gemini import request_for as gemini_request
from tests.agents.test_swarm_on_agents import (
    GOAL,
    claude_env,
    events_of,
    model_of_the_swarm,
    repo,
    sisyphus,
)

__all__ = ["gemini_env", "repo", "workspace"]  # (fixtures shared with the backends' tests)

RUN_LIMIT = 0.001  # USD: claude's first model call (about $0.0013 here) goes over it


def cli_json(*args: str, env: dict[str, str], cwd: Path) -> Any:
    """A ``sisyphus`` command's JSON output (every line one object)."""
    done = sisyphus(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return rows[0] if len(rows) == 1 and "--json" in args and args[0] == "cost" else rows


def wait_for(condition: Any, what: str, timeout_s: float = 240.0) -> Any:
    """Poll ``condition()`` (a look at the log) until it holds; its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.1)


def with_budget(repo: Path, run_usd: float) -> None:
    """The workspace's config: every role on claude, and a budget for the run."""
    (repo / ".sisyphus").mkdir(exist_ok=True)
    (repo / ".sisyphus" / "config.toml").write_text(
        f'[brain]\nbackend = "claude"\n\n[budget]\nrun_usd = {run_usd}\n')


def control_by_swarm(db: Path, action: str) -> int | None:
    """The offset of the first CONTROL ``action`` the swarm itself asked for."""
    if not db.exists():
        return None
    return next((o for o, t, a, p in events_of(db) if t == "CONTROL"
                 and p["action"] == action and a == "swarm"), None)


@dataclass
class PausedRun:
    """A ``sisyphus run`` on claude (as a user starts it) that its budget has paused."""

    model: FakeModel
    env: dict[str, str]
    db: Path
    host: subprocess.Popen[str]
    paused_at: int


@contextmanager
def paused_run(repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> Iterator[PausedRun]:
    """The run, once the budget's pause is in its log; the host killed if still there."""
    with_budget(repo, RUN_LIMIT)
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), model_of_the_swarm) as model:
        env = claude_env(agent_env, model)
        host = subprocess.Popen([sys.executable, "-m", "sisyphus_tui", "run", "--headless",
                                 "--db", str(db), "--workspace", str(repo), "--goal", GOAL],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            paused_at = wait_for(lambda: control_by_swarm(db, "pause"), "the budget's pause")
            yield PausedRun(model, env, db, host, paused_at)
        finally:
            if host.poll() is None:
                host.kill()
                host.communicate()


def test_a_budget_pauses_the_run_until_it_is_unpaused(repo: Path, tmp_path: Path,
                                                       agent_env: dict[str, str]) -> None:
    with paused_run(repo, tmp_path, agent_env) as run:
        db, env, host = run.db, run.env, run.host

        def settled() -> bool:
            # The turn in hand when the budget ran out finishes (never lost)...
            rows = cli_json("agents", "--db", str(db), "--json", env=env, cwd=tmp_path)
            return all(r["state"] not in ("working", "needs_input") for r in rows)

        wait_for(settled, "the turns in hand finished")
        rows = cli_json("agents", "--db", str(db), "--json", env=env, cwd=tmp_path)
        assert {r["state"] for r in rows if r["role"] in ("planner", "kernel")} == {"paused"}
        # ... and nothing new starts: no model call, no agent output, for a while.
        calls, head = len(run.model.posts()), len(events_of(db))
        time.sleep(3.0)  # (proving an absence: a bounded look, not a race papered over)
        assert len(run.model.posts()) == calls
        later = events_of(db)[head:]
        assert not [t for _, t, _, p in later if t == "AGENT_OUTPUT"], later
        assert host.poll() is None  # paused, not stopped
        spent = cli_json("cost", "--db", str(db), "--json", env=env, cwd=tmp_path)
        assert spent["run"]["cost_usd"] >= RUN_LIMIT
        assert spent["run"]["cost_is_estimate"] is False  # claude's own cost

        unpaused = sisyphus("unpause", "--db", str(db), env=env, cwd=tmp_path)
        assert unpaused.returncode == 0, unpaused.stderr
        out, err = host.communicate(timeout=300)
    assert host.returncode == 0, out + err
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    events = events_of(db)
    budgets = [p for _, t, _, p in events if t == "BUDGET"]
    # Each level once for the limit: past it, after the unpause, no second pause.
    assert [(b["level"], b["agent"], b["limit_usd"]) for b in budgets] == [
        ("warn", None, RUN_LIMIT), ("exceeded", None, RUN_LIMIT)]
    assert budgets[1]["spent_usd"] >= RUN_LIMIT
    pauses = [(o, p) for o, t, _, p in events if t == "CONTROL" and p["action"] == "pause"]
    assert [o for o, _ in pauses] == [run.paused_at]
    assert "the run's budget is spent" in pauses[0][1]["reason"]
    assert "sisyphus unpause" in pauses[0][1]["reason"]
    assert "the run's budget is spent" in err  # said on the host's stderr
    # The run went on after the unpause: every turn's cost is counted, the ledger says so.
    usage = [p["data"] for _, t, _, p in events if t == "AGENT_OUTPUT" and p["kind"] == "usage"]
    total = sum(u["cost_usd"] for u in usage)
    assert len(usage) > 2 and all(u["cost_usd"] > 0 for u in usage)
    spent = cli_json("cost", "--db", str(db), "--json", env=env, cwd=tmp_path)
    assert abs(spent["run"]["cost_usd"] - total) < 1e-6
    assert set(spent["roles"]) >= {"planner", "validator", "executor"}
    ledger = (repo / "SISYPHUS_LEDGER.md").read_text()
    assert "## Spend" in ledger and f"${total:.4f}" in ledger


def test_a_budget_raised_in_the_config_lets_the_run_go_on(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    with paused_run(repo, tmp_path, agent_env) as run:
        db, host = run.db, run.host
        with_budget(repo, 100.0)  # no unpause: the host reads the config again
        out, err = host.communicate(timeout=300)
    assert host.returncode == 0, out + err
    unpaused_at = control_by_swarm(db, "unpause")
    assert unpaused_at is not None and unpaused_at > run.paused_at
    events = events_of(db)
    (reason,) = [p["reason"] for o, t, _, p in events if o == unpaused_at]
    assert "raised" in reason
    assert [(p["level"], p["limit_usd"]) for _, t, _, p in events if t == "BUDGET"] == [
        ("warn", RUN_LIMIT), ("exceeded", RUN_LIMIT)]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_a_budget_raised_after_the_host_restarted_lets_the_run_go_on(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    """The host that paused is gone; the next one, still paused by that budget, lifts
    the pause itself once the budget is raised."""
    with paused_run(repo, tmp_path, agent_env) as run:
        db, env = run.db, run.env
        run.host.kill()
        run.host.communicate()
        host = subprocess.Popen([sys.executable, "-m", "sisyphus_tui", "run", "--headless",
                                 "--db", str(db), "--workspace", str(repo)], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            wait_for(lambda: any(t == "RUN_RESUMED" for _, t, _, _ in events_of(db)),
                     "the second host's start")
            with_budget(repo, 100.0)
            out, err = host.communicate(timeout=300)
        finally:
            if host.poll() is None:
                host.kill()
                host.communicate()
    assert host.returncode == 0, out + err
    unpaused_at = control_by_swarm(db, "unpause")
    assert unpaused_at is not None and unpaused_at > run.paused_at
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


def test_claude_reports_its_own_cost(repo: Path, tmp_path: Path,
                                     agent_env: dict[str, str]) -> None:
    steps = [Step(tool="read", args={"path": "calc.py"}, input_tokens=1000,
                  output_tokens=100),
             Step(text="calc.add subtracts.", input_tokens=2000, output_tokens=50,
                  cached_tokens=700)]
    db = tmp_path / "swarm.db"
    with FakeModel(Anthropic(), steps) as model:
        env = claude_env(agent_env, model)
        done = sisyphus("agent", "claude", "What does calc.add do?", "--workspace",
                        str(repo), "--db", str(db), "--name", "asker", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (usage,) = [p["data"] for _, t, _, p in events_of(db)
                if t == "AGENT_OUTPUT" and p["kind"] == "usage"]
    assert usage["cost_usd"] > 0 and usage["cost_is_estimate"] is False
    # Claude counts its cache reads apart from its input; tokens_in holds them all.
    assert usage["cached_tokens"] == 700
    assert usage["tokens_in"] == usage["input_tokens"] + 700
    (row,) = cli_json("agents", "--db", str(db), "--json", env=env, cwd=tmp_path)
    assert (row["agent"], row["state"]) == ("asker", "done")
    assert (row["tokens_in"], row["tokens_out"], row["tokens_cached"]) == (
        usage["tokens_in"], usage["tokens_out"], 700)
    assert row["cost_usd"] == round(usage["cost_usd"], 6)
    assert row["cost_is_estimate"] is False
    spent = cli_json("cost", "--db", str(db), "--json", env=env, cwd=tmp_path)
    assert spent["agents"]["asker"]["cost_usd"] == row["cost_usd"]
    assert spent["roles"] == {"agent": {k: v for k, v in spent["agents"]["asker"].items()
                                        if k != "role"}}
    text = sisyphus("cost", "--db", str(db), env=env, cwd=tmp_path).stdout
    assert f"${usage['cost_usd']:.4f}" in text and "~" not in text
    listed = sisyphus("agents", "--db", str(db), env=env, cwd=tmp_path).stdout
    assert f"${usage['cost_usd']:.4f}" in listed.splitlines()[2]


def opencode_workspace(repo: Path, url: str, prices: str) -> None:
    """opencode pointed at the fake chat server (its model has no price of its own)."""
    (repo / "opencode.json").write_text(json.dumps({"provider": {"fake": {
        "npm": "@ai-sdk/openai-compatible", "name": "Fake",
        "options": {"baseURL": f"{url}/v1", "apiKey": "fake-key"},
        "models": {"fake-model": {"name": "Fake model"}}}}}))
    (repo / ".sisyphus").mkdir(exist_ok=True)
    (repo / ".sisyphus" / "config.toml").write_text(
        '[brain]\nbackend = "opencode"\nmodel = "fake/fake-model"\n\n' + prices)


def test_opencode_steps_summed_once_and_priced_from_the_table(
        repo: Path, tmp_path: Path, agent_env: dict[str, str]) -> None:
    steps = [Step(tool="read", args={"path": "calc.py"}, input_tokens=1000,
                  output_tokens=100),
             Step(text="It subtracts.", input_tokens=3000, output_tokens=200,
                  cached_tokens=1000)]
    db = tmp_path / "swarm.db"
    with FakeModel(OpenAIChat(), steps) as model:
        opencode_workspace(repo, model.url, '[prices."fake-model"]\ninput = 2.0\n'
                                            'output = 10.0\ncached = 0.5\n')
        done = sisyphus("agent", "opencode", "What does calc.add do?", "--workspace",
                        str(repo), "--db", str(db), "--name", "asker",
                        env=claude_env(agent_env, model), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    usage = [p["data"] for _, t, _, p in events_of(db)
             if t == "AGENT_OUTPUT" and p["kind"] == "usage"]
    assert len(usage) == 2  # one per model call: each its own step's share
    assert all(u["cost_is_estimate"] and u["priced_as"] == "fake-model" for u in usage)
    price = Price(input=2.0, output=10.0, cached=0.5)
    # (opencode adds a title call of its own: counted only if its step said so)
    assert [u["tokens_in"] for u in usage] == [1000, 3000]
    assert [u["tokens_cached"] for u in usage] == [0, 1000]
    expected = estimate(1000, 100, 0, price) + estimate(3000, 200, 1000, price)
    (row,) = cli_json("agents", "--db", str(db), "--json", env=agent_env, cwd=tmp_path)
    assert (row["tokens_in"], row["tokens_out"]) == (4000, 300)
    assert abs(row["cost_usd"] - expected) < 1e-6 and row["cost_is_estimate"] is True
    text = sisyphus("cost", "--db", str(db), env=agent_env, cwd=tmp_path).stdout
    assert f"~${expected:.4f}" in text and "estimated from the price table" in text


def test_a_model_with_no_price_is_counted_unpriced(repo: Path, tmp_path: Path,
                                                   agent_env: dict[str, str]) -> None:
    db = tmp_path / "swarm.db"
    with FakeModel(OpenAIChat(), [Step(text="Hello.")]) as model:
        opencode_workspace(repo, model.url, '[prices."gpt-5"]\ninput = 1.25\noutput = 10\n')
        done = sisyphus("agent", "opencode", "Say hello.", "--workspace", str(repo),
                        "--db", str(db), "--name", "asker",
                        env=claude_env(agent_env, model), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    spent = cli_json("cost", "--db", str(db), "--json", env=agent_env, cwd=tmp_path)
    assert spent["run"]["tokens_in"] > 0 and spent["run"]["cost_usd"] == 0
    assert spent["run"]["cost_is_estimate"] is True and spent["run"]["unpriced"] is True
    text = sisyphus("cost", "--db", str(db), env=agent_env, cwd=tmp_path).stdout
    assert "~$0.0000" in text and '[prices."MODEL"]' in text


class Folded:
    """An agent's events folded as a turn appends them (usage accounted with
    ``prices``): call it with each event; ``ledger`` is the fold."""

    def __init__(self, backend: str, model: str | None, prices: dict[str, Price]) -> None:
        self.backend, self.model, self.prices = backend, model, prices
        self.ledger = Ledger()
        self.offset = 0

    def __call__(self, event: AgentEvent) -> None:
        self.offset += 1
        data = account(self.backend, event.data, model=self.model, prices=self.prices) \
            if event.kind == "usage" else event.data
        self.ledger.apply(Event(offset=self.offset, type="AGENT_OUTPUT", actor="coder",
                                to=None, ts=1.0, key=None, payload={
                                    "agent": "coder", "message": 1, "sequence": self.offset,
                                    "kind": event.kind, "text": event.text, "data": data}))


async def test_gemini_resumed_is_priced_by_the_model_it_names(
        workspace: Path, gemini_env: dict[str, str]) -> None:
    # No model asked for ("auto"): each turn is a routing call and the turn's own.
    fold = Folded("gemini", None, {"gemini-fake": Price(input=2.0, output=12.0)})
    with FakeModel(Gemini(), [Step(text="17.", input_tokens=1000, output_tokens=100)]) \
            as model:
        first = await run_agent(GeminiBackend(), gemini_request(
            model, workspace, gemini_env, model=None, prompt="Remember 17."), fold)
        second = await run_agent(GeminiBackend(), gemini_request(
            model, workspace, gemini_env, model=None, prompt="Which?",
            session=first.session), fold)
    assert first.ok and second.ok, (first.error, second.error)
    # Each turn's stats are its own calls (a resumed session's are not carried over).
    assert first.usage["input_tokens"] == 1000 + 10 and second.usage["input_tokens"] == 130
    view = fold.ledger.agents["coder"]
    assert (view.tokens_in, view.tokens_out) == (1010 + 130, 101 + 31)
    price = Price(input=2.0, output=12.0)
    assert view.cost_usd == pytest.approx(estimate(1140, 132, 0, price))
    assert view.cost_is_estimate


async def test_an_acp_agents_turn_is_counted_once(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "input.txt").write_text("hello acp\n")
    fold = Folded("acp", "acp-model", {"acp-model": Price(input=3.0, output=15.0,
                                                          cached=0.3)})
    result = await run_agent(backend("acp"), AgentRequest(
        prompt="uppercase input.txt into output.txt", workspace=ws,
        command=acp_command("edit", tmp_path), timeout_s=30, grace_s=1), fold)
    assert result.ok, result.error
    # Two usage events (the context's size, then the turn's tokens): counted once; its
    # cache reads are apart from its input tokens (120 + 20 read).
    view = fold.ledger.agents["coder"]
    assert (view.tokens_in, view.tokens_out, view.tokens_cached) == (140, 30, 20)
    assert view.cost_usd == pytest.approx(estimate(140, 30, 20, Price(
        input=3.0, output=15.0, cached=0.3))) and view.cost_is_estimate


def test_a_codex_thread_resumed_twice_is_counted_turn_by_turn(
        tmp_path: Path, agent_env: dict[str, str]) -> None:
    turns = [Step(text="first", input_tokens=1000, output_tokens=10, cached_tokens=100),
             Step(text="second", input_tokens=2000, output_tokens=20, cached_tokens=500),
             Step(text="third", input_tokens=4000, output_tokens=40, cached_tokens=1500)]
    prices = {"gpt-5": Price(input=1.25, output=10.0, cached=0.125)}
    # No model asked for: the one Codex's own config.toml sets prices the turns.
    fold = Folded("codex", None, prices)

    async def three_turns() -> str:
        session: str | None = None
        with FakeModel(OpenAIResponses(), turns) as model:
            env = configure_codex(agent_env, model.url)
            for prompt in ("FIRST", "SECOND", "THIRD"):
                result = await run_agent(CodexBackend(), codex_request(
                    tmp_path, env, prompt, session=session), fold)
                assert result.ok, result
                session = result.session
        assert session is not None
        return session

    session = asyncio.run(three_turns())
    # The CLI's own count is the whole thread's (each turn re-reads the history)...
    req = codex_request(tmp_path, configure_codex(agent_env, "http://127.0.0.1:9"))
    totals = thread_usage(codex_home(req), session)
    assert totals is not None and totals["input_tokens"] == 7000
    # ... and each usage event is its turn's share, so the sum is the thread's once.
    view = fold.ledger.agents["coder"]
    assert (view.tokens_in, view.tokens_out, view.tokens_cached) == (7000, 70, 2100)
    expected = sum(estimate(s.input_tokens, s.output_tokens, s.cached_tokens,
                            prices["gpt-5"]) for s in turns)
    assert abs(view.cost_usd - expected) < 1e-9 and view.cost_is_estimate
    assert not fold.ledger.spend().run.unpriced and CODEX_MODEL.startswith("gpt-5")
