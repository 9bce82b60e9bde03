"""Fixtures of the backend tests: the real CLIs (installed once, pinned, into a cached
folder) and, for each test, a home of its own with telemetry and updates off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agents.install import bin_dir


@pytest.fixture(scope="session")
def cli_bin() -> Path:
    """The folder of the pinned agent CLIs' executables (installed if missing)."""
    return bin_dir()


@pytest.fixture
def agent_env(tmp_path: Path, cli_bin: Path) -> dict[str, str]:
    """The environment an agent CLI runs in for one test: its own HOME, XDG folders and
    TMPDIR under the test's folder, the pinned CLIs first on PATH, no telemetry, no
    update checks, no network but 127.0.0.1."""
    home = tmp_path / "home"
    for sub in ("", ".config", ".cache", ".local/share", ".local/state", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "TMPDIR": str(home / "tmp"),
        "PATH": f"{cli_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "GEMINI_CLI_NO_RELAUNCH": "true",
        "CODEX_HOME": str(home / ".codex"),
    }
