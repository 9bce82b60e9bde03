"""A turn's file tools on real files: they never write or read outside the workspace."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sisyphus_tui.actors.base import Turn, WorkspaceError
from sisyphus_tui.actors.executor import Executor
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store


@pytest.fixture
async def turn(tmp_path: Path) -> AsyncIterator[Turn]:
    """A turn of a real executor, in a real swarm over a real log and workspace."""
    (tmp_path / "workspace" / "inventory").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    async with await open_store(tmp_path / "swarm.db") as store:
        swarm = Swarm(store, tmp_path / "workspace", write_ledger=False)
        executor = Executor(swarm, "executor", ScriptedBrain())
        await store.append("x.n", {})
        (message,) = (await store.read()).events
        yield Turn(executor, message)


async def test_a_link_planted_at_the_temp_name_is_not_followed(
    turn: Turn, tmp_path: Path
) -> None:
    folder = tmp_path / "workspace" / "inventory"
    outside = tmp_path / "outside" / "x"
    planted = folder / ".repository.py.sisyphus-tmp"
    planted.symlink_to(outside)
    await turn.write_file("inventory/repository.py", "REPO = 1\n")
    target = folder / "repository.py"
    assert not target.is_symlink()
    assert target.read_text() == "REPO = 1\n"
    assert not outside.exists(), "the write went through the planted link"
    assert planted.is_symlink(), "someone else's link is left for start-up cleanup"
    assert sorted(os.listdir(folder)) == [".repository.py.sisyphus-tmp", "repository.py"]
    # The final path a link out of the workspace: refused, nothing written there.
    outside_y = tmp_path / "outside" / "y"
    outside_y.write_text("theirs\n")
    target.unlink()
    target.symlink_to(outside_y)
    with pytest.raises(WorkspaceError, match="path escapes the workspace: "
                                             "'inventory/repository.py'"):
        await turn.write_file("inventory/repository.py", "REPO = 2\n")
    assert outside_y.read_text() == "theirs\n"
    assert [e.type for e in turn.outputs] == ["FILE_EDIT"]


async def test_what_is_not_a_file_is_refused(turn: Turn, tmp_path: Path) -> None:
    for rel_path, message in (("inventory", "not a regular file: "),
                              ("", "path is the workspace itself, not a file: ''"),
                              (".", "path is the workspace itself")):
        with pytest.raises(WorkspaceError, match=message):
            await turn.write_file(rel_path, "x = 1\n")
    assert os.listdir(tmp_path / "workspace" / "inventory") == []
    beside = sorted(n for n in os.listdir(tmp_path) if not n.startswith("swarm.db"))
    assert beside == ["outside", "workspace"], "no temp file beside the workspace"
    assert turn.outputs == []
