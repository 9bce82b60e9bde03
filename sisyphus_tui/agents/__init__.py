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


# The CLI versions the tests run (tests/agents/npm): an older one may lack a flag or an
# event the backend relies on, and doctor says so.
TESTED = {"claude": "2.1.197", "codex": "0.171.0", "gemini": "0.61.0",
          "opencode": "1.18.33"}


def version_tuple(text: str) -> tuple[int, ...] | None:
    """The first dotted version number in ``text`` (``codex-cli 0.171.0`` -> (0, 171, 0))."""
    import re

    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in found.groups() if part is not None) if found else None


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
    version = lines[-1][:100] if lines else "?"
    seen, tested = version_tuple(version), TESTED.get(name)
    if seen is not None and tested is not None and seen < (version_tuple(tested) or ()):
        version += f"; older than the tested {tested}: it may lack what sisyphus uses"
    return path, version
