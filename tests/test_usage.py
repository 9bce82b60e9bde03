"""Tokens and cost: a backend's usage event accounted for its turn (each backend's sense
of its tokens, the price table's estimate and its marker), the ledger's fold of them on a
real log (every attempt of a turn counted, each output once, cumulative counts by their
growth, per agent, per role, the run), the Spend section of the ledger, and the host's
budget watch on a real store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.agents.config import BudgetConfig, Price, RunConfig
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import EventStore
from sisyphus_tui.usage import Usage, UsageFold, account, cost_text, estimate, price_of
from tests.conftest import run_cli

PRICES = {"gpt-5": Price(input=1.25, output=10.0, cached=0.125),
          "gpt-5-mini": Price(input=0.25, output=2.0, cached=0.025),
          "gemini-2.5-pro": Price(input=1.25, output=10.0, cached=0.31)}


def test_a_price_is_found_by_name_then_by_the_longest_prefix() -> None:
    assert price_of("gpt-5", PRICES) == ("gpt-5", PRICES["gpt-5"])
    assert price_of("gpt-5-mini-2026-01", PRICES) == ("gpt-5-mini", PRICES["gpt-5-mini"])
    assert price_of("gpt-5.5", PRICES) == ("gpt-5", PRICES["gpt-5"])
    assert price_of("openai/gpt-5-mini", PRICES) == ("gpt-5-mini", PRICES["gpt-5-mini"])
    assert price_of("claude-sonnet-4", PRICES) is None
    assert price_of(None, PRICES) is None and price_of("gpt-5", {}) is None


def test_an_estimate_prices_cached_input_at_its_own_rate() -> None:
    # 1M in of which 400k cached, 100k out: 600k * 1.25 + 400k * 0.125 + 100k * 10.
    assert estimate(1_000_000, 100_000, 400_000, PRICES["gpt-5"]) == pytest.approx(1.8)


def test_each_backend_is_read_in_its_own_sense() -> None:
    claude = account("claude", {"input_tokens": 10, "output_tokens": 5, "cached_tokens": 900,
                                "cache_creation_tokens": 90, "cost_usd": 0.02})
    assert (claude["tokens_in"], claude["tokens_cached"]) == (1000, 900)
    assert claude["cost_usd"] == 0.02 and claude["cost_is_estimate"] is False
    codex = account("codex", {"input_tokens": 1000, "cached_tokens": 400, "output_tokens": 50,
                              "reasoning_tokens": 20, "scope": "turn"},
                    model="gpt-5.5", prices=PRICES)
    assert (codex["tokens_in"], codex["tokens_out"], codex["tokens_cached"]) == (1000, 50, 400)
    assert codex["cost_is_estimate"] is True and codex["priced_as"] == "gpt-5"
    assert codex["cost_usd"] == pytest.approx(estimate(1000, 50, 400, PRICES["gpt-5"]))
    assert "cumulative" not in codex and "unpriced" not in codex
    assert codex["input_tokens"] == 1000 and codex["scope"] == "turn"  # its own kept
    opencode = account("opencode", {"input_tokens": 150, "output_tokens": 40,
                                    "reasoning_tokens": 10, "cached_tokens": 50,
                                    "cache_write_tokens": 0, "cost_usd": 0.0})
    # A cost of 0 for tokens spent is no cost given: estimated (here: no price).
    assert (opencode["tokens_in"], opencode["tokens_out"]) == (200, 50)
    assert opencode["cost_is_estimate"] is True and opencode["unpriced"] is True
    assert opencode["cost_usd"] == 0.0


def test_gemini_is_priced_per_model_it_used() -> None:
    data = {"input_tokens": 1010, "output_tokens": 201, "cached_tokens": 0,
            "total_tokens": 1311, "models": {
                "gemini-2.5-pro": {"input_tokens": 1000, "output_tokens": 200, "cached": 0,
                                   "total_tokens": 1300},
                "gemini-2.5-flash-lite": {"input_tokens": 10, "output_tokens": 1,
                                          "total_tokens": 11}}}
    priced = account("gemini", data, model=None, prices=PRICES)
    # Its thoughts (in the total, not in output_tokens) are billed as output.
    assert priced["tokens_out"] == 301
    assert priced["cost_usd"] == pytest.approx(estimate(1000, 300, 0,
                                                        PRICES["gemini-2.5-pro"]))
    assert priced["priced_as"] == "gemini-2.5-pro" and priced["unpriced"] is True


def test_acp_cost_is_the_sessions_so_far() -> None:
    update = account("acp", {"context_used": 5000, "context_size": 200000,
                             "cost_usd": 0.10, "cost": 0.10, "currency": "USD"})
    assert update["cumulative"] == ["cost_usd"] and update["tokens_in"] == 0
    nothing = account("acp", {"context_used": 10, "context_size": 100})
    assert nothing["cost_usd"] == 0 and nothing["cost_is_estimate"] is False
    fold = UsageFold()
    fold.add(update, "s1")
    fold.add(account("acp", {"input_tokens": 100, "output_tokens": 10, "cached_tokens": 0,
                             "cost_usd": 0.10}), "s1")  # (the turn's end repeats it)
    fold.add(account("acp", {"cost_usd": 0.25}), "s1")  # the next turn: 0.15 more
    fold.add(account("acp", {"cost_usd": 0.05}), "s2")  # another session starts at 0
    assert fold.total.cost_usd == pytest.approx(0.30)
    assert fold.total.tokens_in == 100


def test_codex_thread_totals_count_by_their_growth() -> None:
    fold = UsageFold()
    fold.add(account("codex", {"input_tokens": 1000, "output_tokens": 10, "scope": "turn"},
                     model="gpt-5", prices=PRICES), "thread-1")
    # A resume whose baseline could not be read: the thread's totals.
    thread = account("codex", {"input_tokens": 3000, "output_tokens": 30, "scope": "thread"},
                     model="gpt-5", prices=PRICES)
    assert thread["cumulative"] == ["tokens_in", "tokens_out", "tokens_cached", "cost_usd"]
    share = fold.add(thread, "thread-1")
    assert (share.tokens_in, share.tokens_out) == (2000, 20)
    assert fold.total.cost_usd == pytest.approx(estimate(3000, 30, 0, PRICES["gpt-5"]))


def output(agent: str, message: int, sequence: int, kind: str,
           data: dict[str, Any]) -> dict[str, Any]:
    """An AGENT_OUTPUT as Turn.output appends it: its payload and key."""
    return {"type": "AGENT_OUTPUT", "actor": agent, "key": f"output:{agent}:{message}:"
            f"{sequence}", "payload": {"agent": agent, "message": message,
                                       "sequence": sequence, "kind": kind, "data": data}}


async def folded(store: EventStore) -> Ledger:
    ledger = Ledger()
    for event in (await store.read(0, 10_000)).events:
        assert ledger.apply(event) is None
    return ledger


def spawned(agent: str, role: str, brain: str) -> dict[str, Any]:
    return {"type": "AGENT_SPAWNED", "actor": "swarm", "key": f"spawn:{agent}",
            "payload": {"agent": agent, "role": role, "brain": brain}}


async def test_every_attempt_of_a_turn_is_counted_each_output_once(store: EventStore) -> None:
    claude = {"input_tokens": 100, "output_tokens": 10, "cached_tokens": 0,
              "cost_usd": 0.01}
    codex = {"input_tokens": 2000, "output_tokens": 20, "cached_tokens": 1000,
             "scope": "turn"}
    await store.append_many([spawned("planner", "planner", "claude"),
                             spawned("executor", "executor", "codex"),
                             spawned("r1", "researcher", "claude")])
    first = output("executor", 7, 0, "usage", account("codex", codex, model="gpt-5",
                                                      prices=PRICES))
    await store.append_many([
        output("planner", 3, 0, "usage", account("claude", claude)),
        first,
        # The host was killed mid-turn; the turn done again numbers on after it.
        output("executor", 7, 1, "usage", account("codex", codex, model="gpt-5",
                                                  prices=PRICES)),
        output("r1", 9, 0, "usage", account("claude", claude)),
        output("r1", 9, 1, "text", {})])
    await store.append_many([first])  # an append retried after a fault: written once
    ledger = await folded(store)
    spend = ledger.spend()
    one_codex = estimate(2000, 20, 1000, PRICES["gpt-5"])
    assert spend.agents["executor"] == Usage(4000, 40, 2000, 2 * one_codex, True)
    assert spend.agents["planner"] == Usage(100, 10, 0, 0.01)
    assert spend.roles == {"executor": spend.agents["executor"],
                           "planner": spend.agents["planner"],
                           "researcher": spend.agents["r1"]}
    assert spend.run.cost_usd == pytest.approx(2 * one_codex + 0.02)
    assert spend.run.cost_is_estimate is True
    view = ledger.agents["executor"]
    assert (view.tokens_in, view.tokens_out, view.tokens_cached) == (4000, 40, 2000)
    assert view.cost_usd == pytest.approx(2 * one_codex) and view.cost_is_estimate
    assert not ledger.agents["planner"].cost_is_estimate
    assert cost_text(spend.agents["planner"]) == "$0.0100"
    assert cost_text(spend.run) == f"~${2 * one_codex + 0.02:.4f}"


async def test_nonsense_in_a_usage_output_counts_as_nothing(store: EventStore) -> None:
    await store.append("AGENT_OUTPUT", {"agent": "a", "message": 1, "sequence": 0,
                                        "kind": "usage", "data": {"cost_usd": "lots",
                                                                  "tokens_in": [1]}})
    ledger = await folded(store)
    assert ledger.spend().run == Usage()  # nonsense counted as nothing, never a crash


async def test_the_ledger_shows_spend_only_once_something_was_spent(
        store: EventStore, tmp_path: Path) -> None:
    await store.append("TASK_INIT", {"goal": "g", "spec": {}})
    await store.append_many([spawned("planner", "planner", "claude")])
    quiet = (await folded(store)).render()
    assert "## Spend" not in quiet
    await store.append_many([output("planner", 2, 0, "usage", account(
        "opencode", {"input_tokens": 1500, "output_tokens": 40, "cost_usd": 0}))])
    ledger = await folded(store)
    text = ledger.render()
    assert "## Spend" in text
    assert "| planner | planner | 1.5k | 40 | 0 | \\~$0.0000 |" in text
    assert "some models have no price there" in text
    # A rebuild from offset 0 by another process gives the same bytes.
    rebuilt = run_cli("ledger", db=tmp_path / "swarm.db")
    assert rebuilt.returncode == 0 and rebuilt.stdout == text


async def test_the_host_warns_pauses_and_goes_on_past_a_limit(store: EventStore,
                                                              tmp_path: Path) -> None:
    swarm = Swarm(store, tmp_path, config=RunConfig(budget=BudgetConfig(
        run_usd=1.0, agent_usd=0.5)))
    await store.append_many([spawned("planner", "planner", "claude"),
                             spawned("executor", "executor", "claude")])

    async def spend(agent: str, sequence: int, usd: float) -> None:
        await store.append_many([output(agent, 1, sequence, "usage", account(
            "claude", {"input_tokens": 1, "output_tokens": 1, "cost_usd": usd}))])
        swarm.ledger = await folded(store)
        await swarm._watch_budget()

    async def said() -> list[tuple[str, dict[str, Any]]]:
        return [(e.type, e.payload) for e in (await store.read(0, 1000)).events
                if e.type in ("BUDGET", "CONTROL")]

    await spend("planner", 0, 0.30)
    assert await said() == []
    await spend("planner", 1, 0.12)  # 0.42 of the agent's 0.5: 84%
    assert [(t, p["level"], p["agent"]) for t, p in await said()] == [
        ("BUDGET", "warn", "planner")]
    await spend("executor", 0, 0.40)  # the run: 0.82 of 1.0; the executor: 80%
    await spend("planner", 2, 0.10)  # the planner: 0.52, over its own budget
    events = await said()
    assert [(t, p.get("level") or p["action"], p.get("agent")) for t, p in events] == [
        ("BUDGET", "warn", "planner"), ("BUDGET", "warn", None),
        ("BUDGET", "warn", "executor"), ("BUDGET", "exceeded", "planner"),
        ("CONTROL", "pause", None)]
    assert "planner's budget is spent ($0.5200 of $0.5)" in events[-1][1]["reason"]
    assert not swarm._running.is_set()  # paused at once
    # Unpaused (past that limit): more spend never pauses for the same limit again.
    swarm._running.set()
    await spend("planner", 3, 0.01)
    assert len(await said()) == len(events) and swarm._running.is_set()
    # A new host (nothing in memory) says nothing twice either.
    again = Swarm(store, tmp_path, config=swarm.config)
    again.ledger = swarm.ledger
    await again._watch_budget()
    assert len(await said()) == len(events)
    # The budget raised in the config: watched afresh at its new limit.
    (tmp_path / ".sisyphus").mkdir()
    (tmp_path / ".sisyphus" / "config.toml").write_text("[budget]\nagent_usd = 0.6\n")
    assert await swarm._reread_budget() is True
    assert swarm.config.budget == BudgetConfig(agent_usd=0.6)
    await swarm._watch_budget()
    assert [(p["level"], p["limit_usd"]) for t, p in (await said())[len(events):]] == [
        ("warn", 0.6)]
