"""What runs: the processes the backend tests look for in /proc (an agent's CLI, what it
started, their process groups), to assert that nothing is left running."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def group_pids(workspace: Path) -> set[int]:
    """The processes running in ``workspace`` (the CLI and what it started), and every
    process in their process groups."""
    pids: set[int] = set()
    groups: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") == str(workspace):
                pids.add(int(entry))
                groups.add(os.getpgid(int(entry)))
        except OSError:
            continue
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) in groups:
                    pids.add(int(entry))
            except OSError:
                continue
    return pids
