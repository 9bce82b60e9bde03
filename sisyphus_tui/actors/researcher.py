"""The researcher: searches the workspace and memory-lane and reports its findings to
whoever asked (a task's parent, or the sender of a ``research`` message)."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from pathlib import Path
from typing import Any

from sisyphus_tui.actors.base import SisyphusActor, Turn, message_kind
from sisyphus_tui.stream.base import Event

MAX_HITS = 40
SKIP_DIRS = {".git", ".sisyphus", "__pycache__", ".pytest_cache", ".venv", "node_modules"}
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".ini", ".cfg", ".json", ".yaml", ".yml",
                 ".sql"}


def search_workspace(root: Path, query: str) -> list[dict[str, Any]]:
    """Lines of the workspace's text files that hold every word of ``query`` (or, if
    none does, any of its longer words), in path and line order.

    Only regular files are read: a symbolic link (to a file or a folder, in the
    workspace or out of it) is skipped, so nothing outside the workspace is searched."""
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 2]
    if not words:
        return []
    all_hits: list[dict[str, Any]] = []
    any_hits: list[dict[str, Any]] = []
    for path in sorted(_text_files(root)):
        text = _read_text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            low = line.lower()
            found = [w for w in words if w in low]
            hit = {"path": str(path.relative_to(root)), "line": number, "text": line.strip()[:200]}
            if len(found) == len(words):
                all_hits.append(hit)
            elif found and any(len(w) > 4 for w in found):
                any_hits.append(hit)
    return (all_hits or any_hits)[:MAX_HITS]


def _text_files(root: Path) -> list[Path]:
    """The regular text files under ``root``; os.walk never follows a folder link."""
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in names:
            path = Path(folder, name)
            if path.suffix not in TEXT_SUFFIXES:
                continue
            try:
                if stat.S_ISREG(path.lstat().st_mode):
                    files.append(path)
            except OSError:
                continue  # gone since it was listed
    return files


def _read_text(path: Path) -> str | None:
    """A regular file's text, or None (not UTF-8, gone, or swapped for a link or a pipe
    since it was listed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            return None


class Researcher(SisyphusActor):
    """Answers a question with file:line findings and precedents."""

    role = "researcher"

    async def on_message(self, turn: Turn, message: Event) -> None:
        kind = message_kind(message)
        if kind not in ("task", "research"):
            return
        query = str(message.payload.get("text", ""))
        turn.status("working", f"researching: {query[:60]}")
        await turn.pace()
        files = await asyncio.to_thread(search_workspace, turn.swarm.workspace, query)
        precedents = await turn.swarm.memory_find(query)
        findings = {"query": query, "files": files,
                    "precedents": [{k: p[k] for k in ("id", "title", "outcome")}
                                   for p in precedents]}
        decision = await turn.think("task", prompt=query, findings=findings)
        turn.status("done" if kind == "task" else "idle",
                    f"{len(files)} lines, {len(precedents)} precedents")
        await self.finish_task(turn, message, decision["text"], {"findings": findings})
