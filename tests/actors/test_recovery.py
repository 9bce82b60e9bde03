"""A turn's record (TurnLog) on a real log and workspace: a run's TURN_STARTED before the
agent runs, the attempt a killed host left in doubt found by the next handling of the
message, the workspace rolled back to the shadow commit it started from (half an
attempt's files gone, the redo's "before" the workspace as it is back), the next
attempt numbered on; a shadow that is gone leaves the redo to go on without a
rollback; a new session's primer bounded. (The whole story on the real claude CLI:
tests/agents/test_recovery.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

from sisyphus_tui.actors.base import Turn, workspace_hashes
from sisyphus_tui.actors.executor import Executor
from sisyphus_tui.actors.recovery import PRIMER_INBOX, PRIMER_MESSAGE_CHARS
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store
from sisyphus_tui.stream.base import Event, EventStore

BEFORE = "def add(a, b):\n    return a - b\n"


def _workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "calc.py").write_text(BEFORE)
    return workspace


async def _executor(store: EventStore, workspace: Path,
                    said: list[str]) -> tuple[Executor, Event]:
    swarm = Swarm(store, workspace, write_ledger=False, on_fault=said.append)
    executor = Executor(swarm, "executor", ScriptedBrain())
    offset = await store.append("MESSAGE", {"kind": "green", "text": "step 1: make it pass",
                                            "data": {"step": 1}}, actor="executor",
                                to="executor")
    (message,) = (await store.read(offset)).events
    return executor, message


async def _turns(store: EventStore) -> list[dict[str, object]]:
    return [dict(e.payload) for e in (await store.read(types=["TURN_STARTED"])).events]


async def test_an_attempt_in_doubt_is_rolled_back_and_the_turn_redone(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    said: list[str] = []
    async with await open_store(tmp_path / "swarm.db") as store:
        executor, message = await _executor(store, workspace, said)
        first = Turn(executor, message)
        assert await first.record.interrupted() is None
        assert await first.record.roll_back() is False  # nothing in doubt
        before = await first.snapshot_before()
        await first.record.begin("claude", "m1", "the prompt", "s-1", edits=True)
        (one,) = await _turns(store)
        assert (one["attempt"], one["recovering"], one["session"]) == (1, False, "s-1")
        assert isinstance(one["workspace"], str) and len(one["workspace"]) >= 40
        # The agent's half an attempt; then the host is killed (nothing committed).
        (workspace / "calc.py").write_text("def add(a, b):\n    return a +")
        (workspace / "junk.txt").write_text("half")
        (workspace / "pkg").mkdir()
        (workspace / "pkg" / "new.py").write_text("x = 1\n")

        again = Turn(executor, message)
        assert await again.record.interrupted() == one
        assert await again.record.roll_back() is True
        assert await again.record.roll_back() is True  # (once: the second call says so)
        assert (workspace / "calc.py").read_text() == BEFORE
        assert not (workspace / "junk.txt").exists() and not (workspace / "pkg").exists()
        assert len(said) == 1 and "was in doubt" in said[0] and "rolled back" in said[0]
        # The redo's "before" is the workspace as it is back: its edits alone are seen.
        assert await again.snapshot_before() == before == workspace_hashes(workspace)
        await again.record.begin("claude", "m1", "the note and the prompt", "s-1", edits=True)
        assert await again.record.interrupted() is None  # begun: no longer a redo
        await again.record.begin("claude", "m1", "asked again", "s-1", edits=False)
        _, two, three = await _turns(store)
        assert (two["attempt"], two["recovering"], two["workspace"]) == (
            2, True, one["workspace"])  # exactly the tree the first attempt found
        assert two["prompt_sha256"] != one["prompt_sha256"]
        assert (three["attempt"], three["recovering"], three["workspace"]) == (3, False, None)
        # A later message is not in doubt: its turns are its own.
        offset = await store.append("MESSAGE", {"kind": "note", "text": "next"},
                                    actor="kernel", to="executor")
        (later,) = (await store.read(offset)).events
        assert await Turn(executor, later).record.interrupted() is None


async def test_a_shadow_that_is_gone_leaves_the_redo_without_a_rollback(
        tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    said: list[str] = []
    async with await open_store(tmp_path / "swarm.db") as store:
        executor, message = await _executor(store, workspace, said)
        first = Turn(executor, message)
        await first.snapshot_before()
        await first.record.begin("claude", None, "p", None, edits=True)
        (workspace / "calc.py").write_text("half")
        shutil.rmtree(workspace / ".sisyphus" / "shadow.git")  # (a person's cleanup)
        again = Turn(executor, message)
        assert await again.record.roll_back() is False
        assert (workspace / "calc.py").read_text() == "half"
        assert len(said) == 1 and "cannot be rolled back" in said[0]
        # The message goes on (it is not failed for ever): the redo sees the first
        # attempt's edit against the kept "before", and starts from a new snapshot.
        assert [p for p in await again.observe(await again.snapshot_before())] == ["calc.py"]
        await again.record.begin("claude", None, "p", None, edits=True)
        one, two = await _turns(store)
        assert two["attempt"] == 2 and two["recovering"] is True
        assert isinstance(two["workspace"], str) and two["workspace"] != one["workspace"]


async def test_the_primer_says_the_checkpoint_and_the_inbox_bounded(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    async with await open_store(tmp_path / "swarm.db") as store:
        executor, message = await _executor(store, workspace, [])
        await store.append("CHECKPOINT", {"agent": "executor", "cursor": 0, "step": 3,
                                          "state": {"step": 3, "big": "x" * 5000}},
                           actor="executor")
        for n in range(PRIMER_INBOX + 5):
            await store.append("MESSAGE", {"kind": "note", "text": f"n{n} " + "y" * 1000},
                               actor="kernel", to="executor")
        primer = await Turn(executor, message).record.primer()
    assert "your context was reset" in primer and "# Sisyphus ledger" in primer
    assert "step 3" in primer and '"step": 3' in primer and "x" * 5000 not in primer
    lines = [line for line in primer.splitlines() if line.startswith("- #")]
    assert len(lines) == PRIMER_INBOX
    assert lines[0].startswith(f"- #{message.offset} from executor, green (the one you are "
                               "handling now): step 1")
    assert all(len(line) < PRIMER_MESSAGE_CHARS + 80 for line in lines)
    assert "- [... more]" in primer and "n18 " in primer and "n19 " not in primer
