"""Starting (or resuming) a run: the demo's workspace, its seeded precedents, the kernel
and the TASK_INIT, committed in one transaction so a crash never leaves half a start."""

from __future__ import annotations

import asyncio
import filecmp
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sisyphus_tui.conductor import parse_spec
from sisyphus_tui.errors import SisyphusError
from sisyphus_tui.ledger import LEDGER_FILE, TMP_SUFFIX
from sisyphus_tui.stream import open_store
from sisyphus_tui.stream.base import Event, EventStore
from sisyphus_tui.stream.lease import HostLease

KERNEL = "kernel"


class WorkspaceConflict(SisyphusError):
    """The workspace holds something that is not this run's."""


def _same_tree(left: Path, right: Path) -> bool:
    """Whether ``right`` holds exactly ``left``'s files, byte for byte (a symbolic link
    in ``right`` is never the sample's, and is not followed to compare)."""
    if any(entry.is_symlink() for entry in right.iterdir()):
        return False
    compare = filecmp.dircmp(left, right, ignore=[])
    if compare.left_only or compare.right_only or compare.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, compare.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(left / d, right / d) for d in compare.common_dirs)


def copy_sample(sample: Path, workspace: Path) -> None:
    """Copy the sample project into ``workspace`` (missing, empty, or already the sample).

    The copy is made beside it, in a new folder (a link planted at its name is never
    followed), and renamed into place, so a crash mid-copy never leaves half a sample
    that a restart would refuse. A workspace that is a symbolic link is refused: pass
    the folder it points to."""
    if workspace.is_symlink():
        raise WorkspaceConflict(f"workspace is a symbolic link: {workspace}; "
                                "pass the folder it points to")
    if workspace.exists():
        if not workspace.is_dir():
            raise WorkspaceConflict(f"workspace is not a directory: {workspace}")
        if any(workspace.iterdir()):
            if _same_tree(sample, workspace):
                return
            raise WorkspaceConflict(
                f"workspace {workspace} is not empty and this database has no run in it; "
                "choose an empty --workspace or the --db of its run")
    workspace.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{workspace.name}."
    for leftover in workspace.parent.glob(f"{glob.escape(prefix)}*{TMP_SUFFIX}"):
        if leftover.is_symlink() or not leftover.is_dir():
            leftover.unlink(missing_ok=True)  # the link goes, never what it points to
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=workspace.parent, prefix=prefix, suffix=TMP_SUFFIX))
    try:
        shutil.copytree(sample, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        os.replace(staging, workspace)  # replaces a missing or empty directory atomically
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


async def current_task(store: EventStore) -> Event | None:
    """The run's TASK_INIT, if the log has one: the one ``start_task`` wrote (key
    ``task``), else the first; a later one changes nothing, for the kernel too."""
    offset = await store.find_key("task")
    if offset is not None:
        found = await store.read_offsets([offset])
        if found:
            return found[0]
    page = await store.read(0, 1, types=["TASK_INIT"])
    return page.events[0] if page.events else None


def task_workspace(task: Event) -> Path | None:
    """Where the run in this log works (None if it does not say, or says nonsense)."""
    spec = task.payload.get("spec")
    where = spec.get("workspace") if isinstance(spec, dict) else None
    return Path(where) if isinstance(where, str) and where else None


async def start_task(store: EventStore, workspace: Path, goal: str, spec: dict[str, Any],
                     precedents: tuple[dict[str, Any], ...] = ()) -> int:
    """Spawn the kernel and hand it the TASK_INIT (with seeded precedents), atomically;
    ``workspace`` is an absolute path.

    Idempotent: the keys make a second call return the first TASK_INIT's offset."""
    full_spec = dict(spec) | {"workspace": str(workspace)}
    parse_spec(full_spec)  # refuse a bad spec before anything is written
    events: list[dict[str, Any]] = [
        {"type": "MEMORY_STORED", "actor": "memory-lane", "key": f"memory:seed:{i}",
         "payload": {"title": p["title"], "what": p.get("what", ""),
                     "outcome": p.get("outcome", ""), "tags": list(p.get("tags", [])),
                     "run": "seed"}}
        for i, p in enumerate(precedents)
    ]
    events += [
        {"type": "AGENT_SPAWNED", "actor": "swarm", "key": f"spawn:{KERNEL}",
         "payload": {"agent": KERNEL, "role": "kernel", "skill": None, "thinking": "off"}},
        {"type": "AGENT_REGISTERED", "actor": KERNEL, "key": f"agent:{KERNEL}",
         "payload": {"agent": KERNEL, "role": "kernel"}},
        {"type": "TASK_INIT", "actor": "human", "to": KERNEL, "key": "task",
         "payload": {"goal": goal, "spec": full_spec}},
    ]
    offsets = await store.append_many(events)
    return offsets[-1]


async def prepare_demo(store: EventStore, workspace: Path,
                       spec_override: dict[str, Any] | None = None) -> bool:
    """Make sure the log has the demo's run in ``workspace``; returns True if it was
    already there (a resume), False if it was started now."""
    task = await current_task(store)
    if task is not None:
        check_workspace(task, workspace)
        return True
    from sisyphus_tui.demo.script import load_script

    script = load_script()
    await asyncio.to_thread(copy_sample, script.sample_dir, workspace)
    spec = spec_override if spec_override is not None else script.spec
    await start_task(store, workspace, script.goal, spec, script.precedents)
    return False


def check_workspace(task: Event, workspace: Path) -> None:
    """Refuse to run a log's task in another workspace than its own."""
    own = task_workspace(task)
    if own is not None and own.resolve() != workspace.resolve():
        raise WorkspaceConflict(
            f"this database's run works in {own}, not {workspace.resolve()}; "
            f"pass --workspace {own} (or another --db)")


def load_spec_file(path: Path) -> dict[str, Any]:
    """A spec from a JSON file, validated (SpecError names the field)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SisyphusError(f"spec file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise SisyphusError(f"malformed JSON in spec file {path}: {exc}") from None
    parse_spec(data)
    if not isinstance(data, dict):
        raise SisyphusError(f"spec file {path} must hold a JSON object")
    return data


def ledger_path(workspace: Path) -> Path:
    """Where the live ledger is written."""
    return workspace / LEDGER_FILE


# The files SQLite keeps beside a database. Not the host lease's (-host): --fresh holds
# its lock while it works, and a lease file removed under a lock lets a process that had
# opened the old file lock it while another locks a new one: two hosts. It stays, empty.
DATABASE_SIDE_FILES = ("-wal", "-shm")


def database_files(db: Path) -> list[Path]:
    """The database at ``db`` and the files beside it that exist (a link counts: it
    is removed, never what it points to)."""
    paths = [db, *(db.with_name(db.name + suffix) for suffix in DATABASE_SIDE_FILES)]
    return [path for path in paths if os.path.lexists(path)]


def _is_demo_run(task: Event | None) -> bool:
    from sisyphus_tui.demo.script import GOAL

    return task is not None and task.payload.get("goal") == GOAL


def _demo_workspace(workspace: Path, task: Event | None) -> bool:
    """Whether ``workspace`` is the demo's, as ``prepare_demo`` knows it: the folder
    the log's demo run works in (the sample copied into it), or the untouched sample."""
    from sisyphus_tui.demo.script import SAMPLE_DIR

    own = task_workspace(task) if task is not None else None
    if _is_demo_run(task) and own is not None and own.resolve() == workspace.resolve():
        return (workspace / "tools" / "check_sql.py").is_file()
    return _same_tree(SAMPLE_DIR, workspace)


def _what_fresh_removes(db: Path, workspace: Path, task: Event | None) -> list[Path]:
    """What ``--fresh`` removes: the workspace (if it is the demo's and not empty), then
    the database's files; WorkspaceConflict for a folder that is not the demo's."""
    own = task_workspace(task) if task is not None else None
    if own is not None and own.resolve() != workspace.resolve():
        raise WorkspaceConflict(
            f"--fresh: this database's demo works in {own}, not {workspace}; "
            f"pass --workspace {own} to start that one over")
    if workspace.is_symlink() or (workspace.exists() and not workspace.is_dir()):
        raise WorkspaceConflict(f"--fresh: {workspace} is not a folder the demo made: "
                                "not removing it; choose another --workspace")
    doomed = []
    if workspace.is_dir() and any(workspace.iterdir()):
        if not _demo_workspace(workspace, task):
            raise WorkspaceConflict(
                f"--fresh: {workspace} is not the demo's workspace (neither the folder "
                "this database's demo works in nor the untouched sample): not removing "
                "it; choose another --workspace, or remove it yourself")
        if Path.cwd().resolve().is_relative_to(workspace.resolve()):
            raise WorkspaceConflict(f"--fresh: the current folder is in {workspace}: "
                                    "not removing it; run the demo from another folder")
        doomed.append(workspace)
    return doomed + database_files(db)


def _remove(paths: list[Path]) -> None:
    try:
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    except OSError as exc:
        raise SisyphusError(f"--fresh: cannot remove {exc.filename}: "
                            f"{exc.strerror or exc}") from None


async def start_over(db: Path, workspace: Path, say: Callable[[str], None]) -> None:
    """``sisyphus demo --fresh``: remove the demo's workspace and its database (its -wal
    and -shm files too; the host lease's stays), after saying so. Refused
    (WorkspaceConflict or HostBusy, nothing removed) while another process hosts the
    swarm, or when the database holds another run or the folder is not the demo's
    workspace."""
    exists = await asyncio.to_thread(os.path.lexists, db)
    # Held while the files go: no host starts on the log being removed.
    lease = await HostLease.acquire(db) if exists else None
    try:
        task = None
        if lease is not None:
            async with await open_store(db, create=False) as store:
                task, head = await current_task(store), await store.head()
            if (task is None and head > 0) or (task is not None and not _is_demo_run(task)):
                raise WorkspaceConflict(
                    f"--fresh: {db} holds another run than the demo: not removing it; "
                    "give the demo another --db")
        doomed = await asyncio.to_thread(_what_fresh_removes, db, workspace, task)
        say("starting the demo over: " + (
            f"removing {', '.join(map(str, doomed))}" if doomed else "nothing to remove"))
        # The workspace first: if that fails half way, the database still says it is the
        # demo's, so the same command finishes the job.
        await asyncio.to_thread(_remove, doomed)
    finally:
        if lease is not None:
            lease.release()
