"""Workspace checkpoints in the shadow repository: snapshot, changes and restore on real
workspaces with the real git, the user's own git state never touched, ignored files
never taken or removed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pty
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.agents.config import agent_folder
from sisyphus_tui.faults import is_passing
from sisyphus_tui.shadow import REF, GitMissing, Shadow, ShadowError, UnknownCommit
from sisyphus_tui.stream import open_store
from tests.conftest import run_cli
from tests.swarm.conftest import Reference, run_demo


def git(repo: Path, *args: str) -> str:
    """The user's git, in the user's repository (as a person would run it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x", "GIT_COMMITTER_NAME": "u",
            "GIT_COMMITTER_EMAIL": "u@x", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            # (a status of the user's own would refresh its index: only we are watched)
            "GIT_OPTIONAL_LOCKS": "0"}
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, env=env, check=True)
    return done.stdout.decode("utf-8", "surrogateescape")


def repository_with(folder: Path, name: str, text: str) -> Path:
    """A new git repository in ``folder`` with one file committed."""
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / name).write_text(text)
    git(folder, "add", name)
    git(folder, "commit", "-qm", name)
    return folder


def files_of(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every file and link under ``root`` but .sisyphus and .git: kind+mode, content."""
    found: dict[str, tuple[str, bytes]] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".sisyphus", ".git")
                   and not os.path.islink(os.path.join(folder, d))]
        for name in names + [d for d in os.listdir(folder)
                             if os.path.islink(os.path.join(folder, d))
                             and os.path.isdir(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = ("link", os.fsencode(os.readlink(path)))
            else:
                mode = "exec" if os.stat(path).st_mode & 0o100 else "file"
                found[rel] = (mode, Path(path).read_bytes())
    return found


def shadow_git(shadow: Shadow, *args: str) -> str:
    """Read the shadow repository (as a person inspecting it would)."""
    return subprocess.run(["git", "--git-dir", str(shadow.git_dir), *args],
                          capture_output=True, check=True).stdout.decode("utf-8",
                                                                         "surrogateescape")


def tree_paths(shadow: Shadow, sha: str) -> set[str]:
    """The paths a shadow commit holds."""
    out = shadow_git(shadow, "ls-tree", "-r", "-z", "--name-only", sha)
    return {p for p in out.split("\0") if p}


def user_state(repo: Path) -> dict[str, object]:
    """Everything of the user's repository a checkpoint must leave as it was."""
    dot = repo / ".git"
    return {
        "status": git(repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
        "stash": git(repo, "stash", "list"),
        "branches": git(repo, "branch", "-a", "-v"),
        "index": hashlib.sha256((dot / "index").read_bytes()).hexdigest(),
        "HEAD": (dot / "HEAD").read_bytes(),
        "config": (dot / "config").read_bytes(),
        "refs": git(repo, "for-each-ref"),
        "files": sorted(str(p.relative_to(dot)) for p in dot.rglob("*")),
    }


def make_sample(ws: Path) -> None:
    """A small workspace with the awkward kinds of file."""
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    (ws / "with space.txt").write_text("spaces\n")
    (ws / "line\nbreak.txt").write_text("newline in the name\n")
    (ws / os.fsdecode(b"latin-\xe9.txt")).write_bytes(b"not utf-8 name\n")
    (ws / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
    (ws / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(ws / "run.sh", 0o755)
    os.symlink("src/pkg/mod.py", ws / "link.py")
    os.symlink("src", ws / "srclink")


async def test_restore_puts_back_contents_modes_links_and_deletions(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    make_sample(ws)
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    before = files_of(ws)
    assert tree_paths(shadow, first) == set(before)
    assert await shadow.changes(first) == []

    (ws / "src" / "pkg" / "mod.py").write_text("def f():\n    return 2\n")
    (ws / "with space.txt").unlink()
    os.chmod(ws / "run.sh", 0o644)
    (ws / "link.py").unlink()
    (ws / "link.py").write_text("a file now\n")
    (ws / "srclink").unlink()
    (ws / "new" / "deep").mkdir(parents=True)
    (ws / "new" / "deep" / "made.py").write_text("x = 1\n")
    (ws / os.fsdecode(b"latin-\xe9.txt")).write_bytes(b"changed\n")

    expected = [("M", os.fsdecode(b"latin-\xe9.txt")), ("M", "link.py"),
                ("D", "new/deep/made.py"), ("M", "run.sh"), ("M", "src/pkg/mod.py"),
                ("A", "srclink"), ("A", "with space.txt")]
    assert await shadow.changes(first) == sorted(expected, key=lambda c: c[1])
    assert await shadow.restore(first) == sorted(expected, key=lambda c: c[1])
    assert files_of(ws) == before
    assert not (ws / "new").exists()  # the folders a deletion emptied go too
    assert await shadow.changes(first) == []
    assert await shadow.restore(first) == []


async def test_restore_can_be_undone_and_commits_are_chained(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    shadow = Shadow(ws)
    assert await shadow.latest() is None
    empty = await shadow.snapshot("empty")  # an empty workspace is a checkpoint too
    assert tree_paths(shadow, empty) == set()
    (ws / "a.txt").write_text("a\n")
    second = await shadow.snapshot("agent@7")
    assert await shadow.latest() == second
    log = shadow_git(shadow, "log", "--format=%H %s", REF)
    assert log.splitlines() == [f"{second} agent@7", f"{empty} empty"]
    assert await shadow.restore(empty) == [("D", "a.txt")]
    assert not (ws / "a.txt").exists()
    undo = await shadow.latest()  # the workspace just before the restore
    assert undo not in (empty, second)
    assert undo is not None and await shadow.restore(undo) == [("A", "a.txt")]
    assert (ws / "a.txt").read_text() == "a\n"


async def test_the_users_repository_is_never_touched(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "repo"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main")
    make_sample(ws)
    (ws / ".gitignore").write_text("*.log\n")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "one")
    git(ws, "branch", "feature")
    (ws / "src" / "pkg" / "mod.py").write_text("stashed\n")
    git(ws, "stash", "-q")
    (ws / "staged.py").write_text("staged\n")
    git(ws, "add", "staged.py")  # a dirty index
    (ws / "with space.txt").write_text("unstaged change\n")
    (ws / "untracked.py").write_text("u\n")
    # A caller inside a git hook or editor may carry GIT_DIR and GIT_INDEX_FILE of the
    # user's repository: the shadow must not follow them.
    monkeypatch.setenv("GIT_DIR", str(ws / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(ws / ".git" / "index"))
    monkeypatch.setenv("GIT_WORK_TREE", str(ws))
    agent_folder(ws, "executor")  # the swarm's folder, as every run has it (and its
    # .gitignore, which the user's git lists as the one new file there)
    before = user_state(ws)
    assert "stash@{0}" in before["stash"]  # type: ignore[operator]

    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    assert user_state(ws) == before
    assert ".git/HEAD" not in tree_paths(shadow, first)
    assert {"staged.py", "untracked.py", ".gitignore"} <= tree_paths(shadow, first)
    (ws / "staged.py").write_text("the agent changed it\n")
    (ws / "agent.py").write_text("made by the agent\n")
    changed = await shadow.changes(first)
    assert changed == [("D", "agent.py"), ("M", "staged.py")]
    during = user_state(ws)
    assert await shadow.restore(first) == changed
    assert during != before  # (the user's git sees the agent's edits...)
    assert user_state(ws) == before  # (... and after the restore, all as it was)
    assert not any(".sisyphus" in str(p) for p in tree_paths(shadow, first))


async def test_ignored_files_are_never_taken_nor_removed(tmp_path: Path) -> None:
    ws = tmp_path / "repo"
    ws.mkdir()
    git(ws, "init", "-q")
    (ws / ".gitignore").write_text("*.log\nbuild/\n")
    (ws / "sub").mkdir()
    (ws / "sub" / ".gitignore").write_text("local.cfg\n")
    (ws / ".git" / "info").mkdir(exist_ok=True)
    (ws / ".git" / "info" / "exclude").write_text("secret.env\n")
    (ws / "keep.py").write_text("k\n")
    (ws / "old.log").write_text("old log\n")
    (ws / "sub" / "local.cfg").write_text("mine\n")
    (ws / "secret.env").write_text("TOKEN=1\n")
    (ws / "build").mkdir()
    (ws / "build" / "out.o").write_bytes(b"\0obj")
    (ws / "node_modules" / "x").mkdir(parents=True)
    (ws / "node_modules" / "x" / "i.js").write_text("1\n")
    (ws / "SISYPHUS_LEDGER.md").write_text("# the swarm's own\n")
    (ws / "other").mkdir()
    (ws / "other" / ".gitignore").write_text("!node_modules/\n!.sisyphus/\n")
    (ws / "other" / "node_modules").mkdir()
    (ws / "other" / "node_modules" / "dep.js").write_text("d\n")
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    assert tree_paths(shadow, first) == {".gitignore", "keep.py", "sub/.gitignore",
                                         "other/.gitignore"}

    (ws / "old.log").write_text("grown\n")
    (ws / "new.log").write_text("new log\n")
    (ws / "build" / "out2.o").write_bytes(b"more")
    (ws / "secret.env").write_text("TOKEN=2\n")
    (ws / "sub" / "local.cfg").unlink()
    (ws / "made.py").write_text("m\n")
    assert await shadow.changes(first) == [("D", "made.py")]
    assert await shadow.restore(first) == [("D", "made.py")]
    assert (ws / "old.log").read_text() == "grown\n"
    assert (ws / "new.log").read_text() == "new log\n"
    assert (ws / "build" / "out2.o").read_bytes() == b"more"
    assert (ws / "secret.env").read_text() == "TOKEN=2\n"
    assert not (ws / "sub" / "local.cfg").exists()  # an ignored file is not made again
    assert (ws / "node_modules" / "x" / "i.js").exists()


async def test_a_workspace_inside_a_repository_keeps_what_that_repository_ignores(
        tmp_path: Path) -> None:
    outer = repository_with(tmp_path / "outer", "README", "r\n")
    (outer / ".gitignore").write_text("build/\n*.secret\n/ws/local.cfg\n")
    ws = outer / "ws"
    (ws / "build").mkdir(parents=True)
    (ws / "build" / "x.o").write_bytes(b"\0obj")
    (ws / "key.secret").write_text("TOKEN=1\n")
    (ws / "local.cfg").write_text("mine\n")
    (ws / "keep.py").write_text("k\n")
    before = user_state(outer)
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    assert tree_paths(shadow, first) == {"keep.py"}  # the secret never copied
    (ws / "key.secret").write_text("TOKEN=2\n")
    (ws / "build" / "y.o").write_bytes(b"more")
    (ws / "keep.py").write_text("changed\n")
    assert await shadow.changes(first) == [("M", "keep.py")]
    assert await shadow.restore(first) == [("M", "keep.py")]
    assert (ws / "key.secret").read_text() == "TOKEN=2\n"  # never touched by a restore
    assert (ws / "build" / "y.o").read_bytes() == b"more"
    assert (ws / "keep.py").read_text() == "k\n"
    after = user_state(outer)
    # (the swarm's folder says what of it a team shares: its .gitignore, the one new file)
    after["status"] = str(after["status"]).replace("? ws/.sisyphus/.gitignore\n", "")
    assert after == before


async def test_the_users_global_excludes_file_is_honoured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    (config / "git").mkdir(parents=True)
    (config / "git" / "ignore").write_text("*.swp\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("a\n")
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    (ws / ".a.py.swp").write_bytes(b"editor state")  # an editor's, made since: kept
    assert tree_paths(shadow, first) == {"a.py"}
    assert await shadow.restore(first) == []
    assert (ws / ".a.py.swp").exists()


async def test_a_file_ignored_since_is_dropped_and_left_alone(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("v1\n")
    shadow = Shadow(ws)
    first = await shadow.snapshot("tracked")
    (ws / ".gitignore").write_text("notes.txt\n")
    second = await shadow.snapshot("now ignored")
    assert tree_paths(shadow, second) == {".gitignore"}
    (ws / "notes.txt").write_text("v2, ignored\n")
    (ws / ".gitignore").write_text("notes.txt\n# edited\n")
    assert await shadow.restore(second) == [("M", ".gitignore")]
    assert (ws / "notes.txt").read_text() == "v2, ignored\n"
    # Going back to when it was tracked would overwrite the ignored file: refused,
    # in one line, before anything changed.
    assert await shadow.changes(first) == [("D", ".gitignore"), ("A", "notes.txt")]
    with pytest.raises(ShadowError, match="would be overwritten by checkout: notes.txt$"):
        await shadow.restore(first)
    assert (ws / "notes.txt").read_text() == "v2, ignored\n"
    assert (ws / ".gitignore").read_text() == "notes.txt\n"
    # ... and so would one that removes a folder holding an ignored file.
    (ws / "notes.txt").unlink()
    (ws / ".gitignore").write_text("*.o\n")
    (ws / "notes.txt").mkdir()
    (ws / "notes.txt" / "kept.o").write_text("ignored, inside\n")
    (ws / "notes.txt" / "tracked.py").write_text("t\n")
    await shadow.snapshot("a folder now")
    with pytest.raises(ShadowError, match="would lose untracked files in them: notes.txt$"):
        await shadow.restore(first)
    assert (ws / "notes.txt" / "kept.o").read_text() == "ignored, inside\n"
    assert (ws / "notes.txt" / "tracked.py").exists()


async def test_gitattributes_do_not_convert_what_is_restored(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".gitattributes").write_text("* text eol=crlf\n*.bin filter=lfs\n*.id ident\n")
    (ws / "lf.txt").write_bytes(b"a\nb\n")
    (ws / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    (ws / "x.bin").write_bytes(bytes(range(256)))
    (ws / "v.id").write_bytes(b"$Id$\n")
    before = files_of(ws)
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    for name in ("lf.txt", "crlf.txt", "x.bin", "v.id"):
        (ws / name).unlink()
    assert len(await shadow.restore(first)) == 4
    assert files_of(ws) == before


async def test_nested_repositories_are_their_own(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "top.py").write_text("t\n")
    committed = repository_with(ws / "vendored", "lib.py", "lib\n")
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    assert tree_paths(shadow, first) == {"top.py"}
    later = ws / "cloned"  # a repository made after the checkpoint, with no commit yet
    later.mkdir()
    git(later, "init", "-q")
    (later / "work.py").write_text("w\n")
    (committed / "lib.py").write_text("lib edited\n")
    # One with a commit, made since, with an awkward name.
    odd = repository_with(ws / "also [a] repo*", "o.py", "o\n")
    os.mkfifo(ws / "a-fifo")  # not content: never taken
    second = await shadow.snapshot("second")  # (git add -A fails on such a folder)
    assert tree_paths(shadow, second) == {"top.py"}
    assert "160000" not in shadow_git(shadow, "ls-tree", "-r", second)
    assert await shadow.restore(first) == []
    assert (later / "work.py").read_text() == "w\n"
    assert (committed / "lib.py").read_text() == "lib edited\n"
    assert (odd / "o.py").read_text() == "o\n"
    # A folder that stops being a repository is a folder again, taken like any other.
    shutil.rmtree(later / ".git")
    third = await shadow.snapshot("third")
    assert tree_paths(shadow, third) == {"top.py", "cloned/work.py"}
    assert await shadow.restore(first) == [("D", "cloned/work.py")]
    assert (odd / "o.py").exists() and (committed / "lib.py").exists()


async def test_a_submodule_is_its_own(tmp_path: Path) -> None:
    upstream = repository_with(tmp_path / "upstream", "lib.py", "lib\n")
    ws = tmp_path / "repo"
    ws.mkdir()
    git(ws, "init", "-q")
    (ws / "app.py").write_text("app\n")
    git(ws, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(upstream),
        "vendor/lib")
    git(ws, "commit", "-qam", "with a submodule")
    assert (ws / "vendor" / "lib" / ".git").is_file()  # (a gitdir: file)
    agent_folder(ws, "executor")
    before = user_state(ws)
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    assert tree_paths(shadow, first) == {"app.py", ".gitmodules"}
    (ws / "vendor" / "lib" / "lib.py").write_text("edited in the submodule\n")
    (ws / "app.py").write_text("edited\n")
    assert await shadow.restore(first) == [("M", "app.py")]
    assert (ws / "vendor" / "lib" / "lib.py").read_text() == "edited in the submodule\n"
    (ws / "vendor" / "lib" / "lib.py").write_text("lib\n")
    assert user_state(ws) == before


async def test_a_big_file_and_many_snapshots_at_once(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    big = os.urandom(1 << 20) * 24  # 24 MiB
    (ws / "big.bin").write_bytes(big)
    shadow = Shadow(ws)
    shas = await asyncio.gather(*(shadow.snapshot(f"s{i}") for i in range(6)))
    assert len(set(shas)) == 6  # each its own commit, one chain (the lock serialises)
    count = shadow_git(shadow, "rev-list", "--count", REF)
    assert count.strip() == "6"
    (ws / "big.bin").write_bytes(b"small now")
    assert await shadow.restore(shas[0]) == [("M", "big.bin")]
    assert (ws / "big.bin").read_bytes() == big


async def test_a_killed_snapshot_leaves_nothing_in_the_way(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a").write_text("a\n")
    shadow = Shadow(ws)
    first = await shadow.snapshot("first")
    # What git leaves when the process calling it is killed with SIGKILL mid-call.
    (shadow.git_dir / "index.lock").write_bytes(b"")
    (shadow.git_dir / (REF + ".lock")).write_text("0" * 40 + "\n")
    (ws / "a").write_text("b\n")
    second = await shadow.snapshot("second")
    assert second != first and await shadow.latest() == second
    # ... and a shadow repository half made is made again.
    (ws / ".sisyphus" / "shadow.git" / "HEAD").unlink()
    assert await Shadow(ws).snapshot("again")


async def test_unknown_commits_and_missing_git_are_one_line_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a").write_text("a\n")
    shadow = Shadow(ws)
    await shadow.snapshot("first")
    for bad in ("0" * 40, "deadbeef", "--all", "HEAD", "", "a" * 65):
        with pytest.raises(UnknownCommit) as caught:
            await shadow.restore(bad)
        assert "\n" not in str(caught.value) and not is_passing(caught.value)
        with pytest.raises(UnknownCommit):
            await shadow.changes(bad)
    assert (ws / "a").read_text() == "a\n"
    with pytest.raises(ShadowError, match="workspace not found"):
        await Shadow(tmp_path / "nowhere").snapshot("x")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / ".sisyphus").write_text("a file where the swarm's folder goes")
    with pytest.raises(ShadowError, match="^shadow repository .*: File exists") as caught:
        await Shadow(blocked).snapshot("x")
    assert not is_passing(caught.value)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(GitMissing, match="git is not installed"):
        await shadow.snapshot("no git")


async def test_a_passing_git_fault_says_it_passes(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    shadow = Shadow(ws)
    await shadow.snapshot("first")
    # Another git holding the shadow's index (not one of ours: those are cleared under
    # the lock), then a git that fails for good.
    real = shutil.which("git")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    for text, passing in (("fatal: Unable to create '/x/index.lock': File exists.", True),
                          ("fatal: bad object\nsecond line", False)):
        fake.write_text(f"#!/bin/sh\ncase \"$*\" in *' add '*) printf '{text}\\n' >&2; "
                        f"exit 128;; esac\nexec {real} \"$@\"\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        with pytest.raises(ShadowError) as caught:
            await shadow.snapshot("blocked")
        assert is_passing(caught.value) is passing
        assert "\n" not in str(caught.value) and str(caught.value).startswith("shadow git add")


# -- the CLI, on the log of a real scripted demo run --------------------------------


Demo = Reference


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """One demo run to its end, of this module's own: its tests restore the workspace,
    which the swarm tests' shared reference run must never see."""
    root = tmp_path_factory.mktemp("demo")
    done = run_demo(root / "swarm.db", root / "workspace")
    assert done.returncode == 0, done.stdout + done.stderr
    return Demo(root / "swarm.db", root / "workspace", done)


def checkpoints_in(db: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """Every CHECKPOINT in the log: offset, actor, payload."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT offset, actor, payload FROM events WHERE type = "
                            "'CHECKPOINT' ORDER BY offset").fetchall()
    return [(offset, actor, json.loads(payload)) for offset, actor, payload in rows]


def edits_in(db: Path) -> list[tuple[int, str, str | None, str | None]]:
    """Every FILE_EDIT: offset, path, hash before, hash after."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT offset, json_extract(payload, '$.path'), "
                            "json_extract(payload, '$.before_sha256'), "
                            "json_extract(payload, '$.after_sha256') FROM events "
                            "WHERE type = 'FILE_EDIT' ORDER BY offset").fetchall()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def sha_of(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def executor_checkpoints(demo: Demo) -> list[tuple[int, dict[str, Any]]]:
    return [(offset, payload) for offset, actor, payload in checkpoints_in(demo.db)
            if actor == "executor"]


def test_acting_checkpoints_carry_the_workspace(demo: Demo) -> None:
    every = checkpoints_in(demo.db)
    acting = [payload for _, actor, payload in every if actor == "executor"]
    assert len(acting) >= 8
    assert all(re.fullmatch(r"[0-9a-f]{40}", p.get("workspace") or "") for p in acting)
    assert len({p["workspace"] for p in acting}) == len(acting)
    # The roles that only think (kernel, planner, validator, researcher) carry none.
    assert {actor for _, actor, p in every if p.get("workspace")} == {"executor"}
    listed = run_cli("checkpoints", "--json", db=demo.db)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["offset"] for r in rows] == [o for o, _ in executor_checkpoints(demo)]
    assert [r["workspace"] for r in rows] == [p["workspace"] for p in acting]
    assert rows[-1]["differs"] == 0 and rows[0]["differs"] > 0  # the run's end is now
    assert {r["agent"] for r in rows} == {"executor"}
    text = run_cli("checkpoints", db=demo.db)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"workspace: {demo.workspace}"
    assert lines[1].split() == ["OFFSET", "TIME", "AGENT", "STEP", "COMMIT", "DIFFERS"]
    assert lines[-1].split()[2:] == ["executor", str(rows[-1]["step"]),
                                     rows[-1]["workspace"][:12], "0", "files"]
    assert len(lines) == 2 + len(rows)


def test_restore_refusals_change_nothing(demo: Demo, tmp_path: Path) -> None:
    first = executor_checkpoints(demo)[0][0]
    before = files_of(demo.workspace)
    # Not a tty and no --yes: says what it would change, restores nothing.
    asked = run_cli("restore", str(first), db=demo.db, stdin=subprocess.DEVNULL)
    assert asked.returncode == 2
    assert asked.stderr == "sisyphus: nothing changed: add --yes to restore (no terminal " \
                           "to ask)\n"
    said = asked.stdout.splitlines()
    assert said[0].startswith(f"restoring checkpoint {first} (executor, ")
    assert said[1:] and all(re.fullmatch(r"[AMD] \S.*", line) for line in said[1:])
    kernel = next(o for o, actor, _ in checkpoints_in(demo.db) if actor == "kernel")
    for offset in (str(kernel), "1", "99999999"):
        refused = run_cli("restore", offset, "--yes", db=demo.db)
        assert refused.returncode == 2
        assert refused.stderr == (f"sisyphus: error: event {offset} is not a checkpoint "
                                  "with a workspace commit (`sisyphus checkpoints` lists "
                                  "them)\n")
    elsewhere = run_cli("restore", str(first), "--yes", "--workspace", str(tmp_path),
                        db=demo.db)
    assert elsewhere.returncode == 2 and elsewhere.stderr.count("\n") == 1
    assert "not " + str(tmp_path) in elsewhere.stderr
    for bad in ("-1", "x"):
        assert run_cli("restore", bad, db=demo.db).returncode == 2
    assert files_of(demo.workspace) == before

    async def hosted() -> subprocess.CompletedProcess[str]:
        store = await open_store(demo.db)
        try:
            lease = await store.host_lease()  # a host runs the swarm
            try:
                return await asyncio.to_thread(run_cli, "restore", str(first), "--yes",
                                               db=demo.db)
            finally:
                lease.release()
        finally:
            await store.close()

    busy = asyncio.run(hosted())
    assert busy.returncode == 2 and busy.stdout == ""
    assert re.fullmatch(r"sisyphus: error: a host runs this swarm \(.*\): its agents work "
                        r"in the workspace; stop it before restoring\n", busy.stderr)
    assert files_of(demo.workspace) == before


def test_restore_brings_back_the_first_executor_checkpoint(demo: Demo) -> None:
    (offset, payload), *_ = executor_checkpoints(demo)
    end = files_of(demo.workspace)
    odd = "\x1b[31mred[b]x\nname.py"  # made since: it goes, named literally
    (demo.workspace / odd).write_text("x\n")
    done = run_cli("restore", str(offset), "--yes", db=demo.db)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert "D \\x1b[31mred[b]x\\x0aname.py" in done.stdout.splitlines()
    assert not (demo.workspace / odd).exists()
    assert done.stdout.splitlines()[-1].startswith(f"restored checkpoint {offset} ")
    # Every file is as the log says that step left it: the last edit before the
    # checkpoint, or, for a file edited only later, as it was before that edit.
    edits = edits_in(demo.db)
    for path in {path for _, path, _, _ in edits}:
        mine = [e for e in edits if e[1] == path]
        earlier = [e for e in mine if e[0] < offset]
        want = earlier[-1][3] if earlier else mine[0][2]
        assert sha_of(demo.workspace / path) == want, path
    assert any(e[0] < offset for e in edits) and any(e[0] > offset for e in edits)
    rows = [json.loads(line) for line in
            run_cli("checkpoints", "--json", db=demo.db).stdout.splitlines()]
    assert rows[0]["differs"] == 0 and rows[-1]["differs"] > 0
    assert payload["workspace"] == rows[0]["workspace"]

    # At a terminal it asks: anything but y leaves the workspace as it is.
    last = executor_checkpoints(demo)[-1][0]
    restored = files_of(demo.workspace)
    assert at_terminal(demo, str(last), "n\n").returncode == 1
    assert files_of(demo.workspace) == restored
    yes = at_terminal(demo, str(last), "y\n")
    assert yes.returncode == 0, yes.stderr
    assert "? [y/N] " in yes.stderr
    assert files_of(demo.workspace) == end  # the run's end, back again
    again = run_cli("restore", str(last), db=demo.db)
    assert again.returncode == 0 and "nothing to restore" in again.stdout


def at_terminal(demo: Demo, offset: str, typed: str) -> subprocess.CompletedProcess[str]:
    """``sisyphus restore OFFSET`` with a terminal as its stdin, ``typed`` typed there."""
    leader, follower = pty.openpty()
    try:
        os.write(leader, typed.encode())
        return run_cli("restore", offset, db=demo.db, stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)


def test_checkpoints_of_a_log_without_them_or_with_an_unknown_commit(tmp_path: Path) -> None:
    db, ws = tmp_path / "swarm.db", tmp_path / "ws"
    ws.mkdir()
    assert run_cli("init", db=db).returncode == 0
    empty = run_cli("checkpoints", "--workspace", str(ws), db=db)
    assert empty.returncode == 0, empty.stderr
    assert "no workspace checkpoints" in empty.stdout
    payload = {"agent": "executor", "cursor": 0, "step": 1, "state": {},
               "workspace": "ab" * 20}
    emitted = run_cli("emit", "CHECKPOINT", "--payload", json.dumps(payload),
                      "--actor", "executor", db=db)
    assert emitted.returncode == 0, emitted.stderr
    offset = emitted.stdout.strip()
    listed = run_cli("checkpoints", "--workspace", str(ws), "--json", db=db)
    assert [json.loads(line)["differs"] for line in listed.stdout.splitlines()] == [None]
    text = run_cli("checkpoints", "--workspace", str(ws), db=db)
    assert text.stdout.splitlines()[-1].endswith("unknown commit")
    refused = run_cli("restore", offset, "--yes", "--workspace", str(ws), db=db)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "no checkpoints in" in refused.stderr
    assert not (ws / ".sisyphus").exists()  # reading never makes a shadow repository
    (ws / "a").write_text("a\n")
    asyncio.run(Shadow(ws).snapshot("one"))
    unknown = run_cli("restore", offset, "--yes", "--workspace", str(ws), db=db)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(f"sisyphus: error: unknown checkpoint commit: {'ab' * 20}")
    assert (ws / "a").read_text() == "a\n"


def test_a_demo_without_git_goes_on_without_workspace_commits(tmp_path: Path) -> None:
    db, ws = tmp_path / "swarm.db", tmp_path / "ws"
    argv = [sys.executable, "-m", "sisyphus_tui", "demo", "--headless", "--speed", "0",
            "--db", str(db), "--workspace", str(ws)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PATH": str(tmp_path / "no-bin")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ("sisyphus: executor: no workspace checkpoints: git is not "
                           "installed (workspace checkpoints need it)\n")  # said once
    every = checkpoints_in(db)
    assert any(actor == "executor" for _, actor, _ in every)
    assert not any(payload.get("workspace") for _, _, payload in every)
    assert "no workspace checkpoints" in run_cli("checkpoints", db=db).stdout
