"""Install the pinned coding-agent CLIs the backend tests run (tests/agents/npm: a
package.json and its lock) into a cached folder, once per lock: ``npm install`` there (``npm ci``
refuses a lock that lists only this platform's optional binaries), then
a marker. Prints the folder of their executables. Used by ``.ci/run`` and, when they
are not there yet, by the tests themselves (so ``uv run pytest`` alone sets them up).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "npm"
BINARIES = ("claude", "codex", "gemini", "opencode")


def cache_root() -> Path:
    """Where installs are kept: $SISYPHUS_CLI_CACHE, else the user's cache folder."""
    explicit = os.environ.get("SISYPHUS_CLI_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sisyphus-tui" / "agent-clis"


def install_dir() -> Path:
    """The folder for this lock's install (its hash names it)."""
    digest = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()[:16]
    return cache_root() / digest


def bin_dir() -> Path:
    """The CLIs' executables, installed first if they are not yet."""
    target = install_dir()
    marker = target / ".installed"
    if not marker.exists():
        _install(target)
    return target / "node_modules" / ".bin"


def _install(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: the agent CLI tests need node and npm")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed into place, so a cut-off install is never taken as done.
    work = Path(tempfile.mkdtemp(prefix=".installing-", dir=target.parent))
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(HERE / name, work / name)
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                            cwd=work, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(f"npm install failed ({result.returncode}): "
                         f"{result.stderr.strip()[-2000:]}")
    missing = [b for b in BINARIES if not (work / "node_modules" / ".bin" / b).exists()]
    if missing:
        shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(f"npm install installed no {', '.join(missing)}")
    (work / ".installed").write_text("ok\n")
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)


if __name__ == "__main__":
    print(bin_dir())
    sys.exit(0)
