"""What a coding agent changed, seen from the files: regular files by content, links by
target (never followed), the swarm's own config and skills watched too, caches and the
log's folder left out; a big repository re-hashed only where it changed; and a turn done
again after a crash still sees what its first attempt changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sisyphus_tui.actors.base import Turn, workspace_hashes
from sisyphus_tui.actors.executor import Executor
from sisyphus_tui.brains.scripted import ScriptedBrain
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store


def test_the_snapshot_sees_what_an_agent_can_change(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("a = 1\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "pytest.py").write_text("")
    (tmp_path / ".sisyphus" / "skills").mkdir(parents=True)
    (tmp_path / ".sisyphus" / "swarm.db").write_text("log")
    before = workspace_hashes(tmp_path)
    assert set(before) == {"pkg/a.py"}
    (tmp_path / "pkg" / "a.py").write_text("a = 2\n")  # same size, new content
    os.symlink("/etc/passwd", tmp_path / "link.py")
    os.symlink("/etc", tmp_path / "etc_dir")
    (tmp_path / ".sisyphus" / "config.toml").write_text("[brain]\nallow = ['*']\n")
    (tmp_path / ".sisyphus" / "skills" / "evil.md").write_text("---\n")
    (tmp_path / ".venv" / "lib" / "pytest.py").write_text("x")  # a cache: left out
    (tmp_path / "SISYPHUS_LEDGER.md").write_text("the swarm's own")
    after = workspace_hashes(tmp_path)
    assert set(after) == {"pkg/a.py", "link.py", "etc_dir", ".sisyphus/config.toml",
                          ".sisyphus/skills/evil.md"}
    assert after["pkg/a.py"] != before["pkg/a.py"]
    # A file swapped for a link is a change, not a deletion.
    (tmp_path / "pkg" / "a.py").unlink()
    os.symlink("/etc/hostname", tmp_path / "pkg" / "a.py")
    swapped = workspace_hashes(tmp_path)
    assert "pkg/a.py" in swapped and swapped["pkg/a.py"] != after["pkg/a.py"]


async def test_a_redone_turn_still_records_the_first_attempts_edit(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    async with await open_store(tmp_path / "swarm.db") as store:
        swarm = Swarm(store, workspace, write_ledger=False)
        executor = Executor(swarm, "executor", ScriptedBrain())
        await store.append("x.n", {})
        (message,) = (await store.read()).events
        first = Turn(executor, message)
        before = await first.snapshot_before()
        (workspace / "calc.py").write_text("def add(a, b):\n    return a + b\n")  # the agent
        # The host dies here, before the turn commits; the next one does it again.
        again = Turn(executor, message)
        assert await again.snapshot_before() == before
        assert await again.observe(await again.snapshot_before(), step=1) == ["calc.py"]
        (edit,) = [json.loads(e.payload_json) for e in again.outputs if e.type == "FILE_EDIT"]
        assert edit["before_sha256"] == before["calc.py"]
        assert edit["how"] == "observed" and edit["step"] == 1
        # The next message's turn starts from the workspace as it is now.
        await store.append("x.n", {})
        later = (await store.read(message.offset + 1)).events[0]
        fresh = await Turn(executor, later).snapshot_before()
        assert fresh["calc.py"] != before["calc.py"]
        kept = sorted(p.name for p in (workspace / ".sisyphus" / "agents" / "executor")
                      .iterdir())
        assert kept == [f"before-{later.offset}.json"]
        # None of the swarm's own files is committed by accident.
        ignore = (workspace / ".sisyphus" / ".gitignore").read_text()
        assert "\n*\n" in ignore and "!config.toml" in ignore
