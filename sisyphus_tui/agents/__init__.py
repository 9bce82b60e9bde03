"""Coding-agent backends, by name: ``backend("claude")``. Each is one small module (see
``agents/base.py`` for the contract and ``agents/runner.py`` for the run)."""

from __future__ import annotations

import importlib

from sisyphus_tui.agents.base import AgentEvent, AgentRequest, AgentUnavailable, Backend
from sisyphus_tui.errors import SisyphusError

__all__ = ["BACKENDS", "AgentEvent", "AgentRequest", "AgentUnavailable", "Backend",
           "backend"]

# name -> "module:class", imported when first used (a backend costs nothing until then)
BACKENDS: dict[str, str] = {
    "claude": "sisyphus_tui.agents.claude:ClaudeBackend",
    "codex": "sisyphus_tui.agents.codex:CodexBackend",
    "gemini": "sisyphus_tui.agents.gemini:GeminiBackend",
    "opencode": "sisyphus_tui.agents.opencode:OpencodeBackend",
    "acp": "sisyphus_tui.agents.acp:AcpBackend",
}


def backend(name: str) -> Backend:
    """A backend by name (SisyphusError naming the known ones if there is none)."""
    target = BACKENDS.get(name)
    if target is None:
        raise SisyphusError(f"unknown agent backend {name!r} "
                            f"(available: {', '.join(BACKENDS)})")
    module, _, cls = target.partition(":")
    made: Backend = getattr(importlib.import_module(module), cls)()
    return made
