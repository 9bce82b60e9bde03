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


async def installed(name: str, env: dict[str, str] | None = None) -> tuple[str | None, str]:
    """Where backend ``name``'s CLI is and what version it says it is: (path, version),
    or (None, why not)."""
    import os
    import shutil
    from pathlib import Path

    from sisyphus_tui.process import run_process

    made = backend(name)
    if not made.binary:
        return None, "runs the command given to it (--command or config: command)"
    environ = env if env is not None else dict(os.environ)
    path = shutil.which(made.binary, path=environ.get("PATH", ""))
    if path is None:
        return None, f"not installed: no {made.binary!r} on PATH (install {made.package})"
    result = await run_process([path, *made.version_argv()], Path.cwd(), timeout_s=20,
                               env=environ, tail_chars=500)
    lines = [line.strip() for line in result.output_tail.splitlines() if line.strip()]
    if not result.ok:
        return path, f"installed, but `{made.binary} --version` failed: " + (
            lines[-1][:200] if lines else f"exit {result.exit_code}")
    return path, lines[-1][:100] if lines else "?"
