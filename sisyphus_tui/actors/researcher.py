"""The researcher: searches the workspace and memory-lane and reports its findings to
whoever asked (a task's parent, or the sender of a ``research`` message)."""

from __future__ import annotations

import asyncio
import re
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
    none does, any of its longer words), in path and line order."""
    words = [w for w in re.findall(r"\w+", query.lower()) if len(w) > 2]
    if not words:
        return []
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix in TEXT_SUFFIXES
        and not SKIP_DIRS.intersection(p.relative_to(root).parts)
    )
    all_hits: list[dict[str, Any]] = []
    any_hits: list[dict[str, Any]] = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(lines, start=1):
            low = line.lower()
            found = [w for w in words if w in low]
            hit = {"path": str(path.relative_to(root)), "line": number, "text": line.strip()[:200]}
            if len(found) == len(words):
                all_hits.append(hit)
            elif found and any(len(w) > 4 for w in found):
                any_hits.append(hit)
    return (all_hits or any_hits)[:MAX_HITS]


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
