"""The story a run tells: the headless demo's lines (the rejection by precedent, the
approval), a host picking up an interrupted run (RUN_RESUMED, once per place in the
log, in the output and the ledger's Recoveries), and control requests the swarm cannot
carry out answered on the record instead of dropped."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.ledger import LEDGER_FILE, Ledger
from sisyphus_tui.mail import SwarmMail
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import Event, EventStore, open_store
from tests.swarm.conftest import Reference
from tests.swarm.test_control import first

STORY_LINE = re.compile(r"^\d\d:\d\d:\d\d \[(\d+)\] ([\w.@-]+): (.+)$")


def test_the_headless_demo_tells_the_story(reference: Reference) -> None:
    lines = reference.result.stdout.splitlines()
    story = [m.groups() for m in map(STORY_LINE.match, lines) if m]
    said = {(actor, text.split(" - ")[0]) for _, actor, text in story}
    assert ("validator", "review of plan-1: needs_changes") in said
    assert ("validator", "review of plan-2: approve") in said
    assert ("kernel", "phase plan: the validator asked for changes") in said
    rejection = next(text for _, actor, text in story
                     if text.startswith("review of plan-1: needs_changes"))
    assert " - precedent #1 (" in rejection  # the rejection names its precedent
    steps = [text for _, actor, text in story if actor == "executor"
             and re.fullmatch(r"step \d: tests pass in \d+\.\d\ds \(\d+ passed in .*\)", text)]
    assert len(steps) == 4
    # One line per event, in offset order, none of the bookkeeping.
    offsets = [int(offset) for offset, _, _ in story]
    assert offsets == sorted(offsets) and len(offsets) == len(set(offsets))
    assert not any(re.search(r"checkpoint|registered|STATUS_UPDATE", text)
                   for _, _, text in story)


class Idle:
    """An actor's handle that never runs it: a host that dies before its actors do
    anything."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        coroutine.close()

    def cancel(self) -> None:
        pass

    def done(self) -> bool:
        return True

    async def wait(self) -> None:
        pass


async def host_until(store: EventStore, workspace: Path, predicate: Any, start: int,
                     *, said_first: str | None = None, **options: Any) -> list[str]:
    """Host the swarm until an event matches ``predicate`` (and, with ``said_first``,
    it has said a line starting so), then kill it (a cancel: nothing more is written);
    returns what it said."""
    said: list[str] = []
    heard = asyncio.Event()

    def out(text: str) -> None:
        said.append(text)
        if said_first is not None and text.startswith(said_first):
            heard.set()

    running = asyncio.create_task(Swarm(store, workspace, out=out, **options).run())
    await first(store, predicate, start)
    if said_first is not None:
        await asyncio.wait_for(heard.wait(), 60)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    return said


async def events_of(store: EventStore, type_: str) -> list[Event]:
    return (await store.read(0, 10_000, types=[type_])).events


async def test_a_host_picking_up_an_interrupted_run_says_so_once(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        await host_until(store, workspace, lambda e: e.type == "TEST_PASS", 1)
        # (Through the one writer queue: a commit the killed host had queued lands first.)
        await SwarmMail(store).init("human", role="human")
        head = await store.head()

        def restarted(e: Event) -> bool:
            return e.type == "RUN_RESUMED"

        # A host that dies at once, twice: one record of the restart, at the same place.
        said = await host_until(store, workspace, restarted, head + 1, run_actor=Idle)
        again = await host_until(store, workspace, restarted, head + 1, run_actor=Idle,
                                 said_first="resuming at offset")
        (record,) = await events_of(store, "RUN_RESUMED")
        assert record.payload["at"] == head and record.payload["phase"] == "execute"
        done, total = record.payload["done"], record.payload["total"]
        assert total == 4 and 0 <= done < 4
        story = f"resumed at step {done + 1}/4 after an interruption"
        assert f"[{record.offset}] swarm: {story}" in said
        assert f"resuming at offset {head}: phase execute, {done}/4 steps done" in said
        assert f"resuming at offset {head}: phase execute, {done}/4 steps done" in again

        said = []
        final = await Swarm(store, workspace, out=said.append).run()
    assert final.phase == "done"
    assert final.last_interruption is not None
    assert final.last_interruption["offset"] == record.offset
    hosts = [r for r in final.recoveries if r["kind"] == "host"]
    assert len(hosts) == 1
    live = (workspace / LEDGER_FILE).read_text()
    recoveries = live.split("## Recoveries\n\n", 1)[1].split("\n## ", 1)[0]
    assert f"#{record.offset}: host: {story} (the log was at offset {head})" in recoveries
    # Its agents came back from their checkpoints: each resume is listed, as the log has it.
    async with await open_store(db) as store:
        resumes = await events_of(store, "RESUMED")
        rebuilt = Ledger()
        for event in (await store.read(0, 100_000)).events:
            rebuilt.apply(event)
    assert resumes and recoveries.count(": resumed from checkpoint @") == len(resumes)
    assert rebuilt.render() == live


async def test_requests_the_swarm_cannot_carry_out_are_answered(tmp_path: Path) -> None:
    db, workspace = tmp_path / "swarm.db", tmp_path / "ws"
    async with await open_store(db) as store:
        await prepare_demo(store, workspace)
        # Paused from the start: the kernel runs, waiting to handle its task.
        await store.append("CONTROL", {"action": "pause"}, actor="human", to="swarm")
        said: list[str] = []
        swarm = Swarm(store, workspace, out=said.append)
        running = asyncio.create_task(swarm.run())
        await first(store, lambda e: e.type == "AGENT_REGISTERED"
                    and e.payload["agent"] == "human")
        requests = [{"action": "resume", "agent": "kernel"},
                    {"action": "spawn", "agent": "kernel", "skill": "researcher"},
                    {"action": "wipe", "agent": "ghost"},
                    {"action": "resume", "agent": "human"}]
        offsets = [await store.append("CONTROL", r, actor="human", to="swarm")
                   for r in requests]
        answers = []
        for offset in offsets:
            answer = await first(store, lambda e, o=offset: e.type == "STATUS_UPDATE"
                                 and e.payload["detail"].startswith(f"control {o}:"), offset)
            assert answer.actor == "swarm" and answer.payload["state"] == "refused"
            answers.append(answer.payload["detail"].split(": ", 1)[1])
        await store.append("CONTROL", {"action": "stop"}, actor="human", to="swarm")
        await asyncio.wait_for(running, 60)
    assert answers == [
        "kernel is not wiped (it is paused): nothing to resume",
        "an agent named kernel already exists",
        "unknown agent 'ghost': no such agent in this run",
        "human is not an agent the swarm runs: nothing to resume",
    ]
    assert f"control request {offsets[0]} refused: kernel is not wiped" in " ".join(said)
    assert "researcher" not in {a.role for a in swarm.ledger.agents.values()}
