"""tools/uv.py, the README's way in: the uv on PATH, else the pinned wheel fetched from a
simple index (a real HTTP server on 127.0.0.1 here) and checked against its committed
sha256; the bytecode compiled only when a run may install; a failed fetch is one line."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import io
import os
import platform
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "uv.py"
# A stand-in for the uv binary: says how it was called.
FAKE_UV = "#!/bin/sh\necho \"fake uv: $*\"\n"


def load(path: Path = SCRIPT) -> ModuleType:
    spec = importlib.util.spec_from_file_location("uv_bootstrap", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


uv = load()


def fake_wheel() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr(f"uv-{uv.VERSION}.data/scripts/uv", FAKE_UV)
        wheel.writestr(f"uv-{uv.VERSION}.dist-info/METADATA", "Name: uv\n")
    return buffer.getvalue()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A simple index (PEP 503) on 127.0.0.1 whose uv page lists a fake wheel for this
    machine's tag; yields the index URL and the wheel's bytes."""
    root = tmp_path / "index"
    tag = uv.platform_tag(sys.platform, platform.machine(), "glibc")
    filename = f"uv-{uv.VERSION}-py3-none-{tag}.whl"
    wheel = fake_wheel()
    (root / "files").mkdir(parents=True)
    (root / "files" / filename).write_bytes(wheel)
    (root / "simple" / "uv").mkdir(parents=True)
    digest = hashlib.sha256(wheel).hexdigest()
    (root / "simple" / "uv" / "index.html").write_text(
        f'<html><body><a href="../../files/other.whl">other.whl</a>'
        f'<a href="../../files/{filename}#sha256={digest}">{filename}</a></body></html>')
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", wheel
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def env_without_uv(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment with no uv on PATH and the cache in tmp_path."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and not (Path(p) / "uv").exists())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "PIP_INDEX"))} | {"PATH": path}
    return env | {"XDG_CACHE_HOME": str(tmp_path / "cache")} | extra


def run_script(args: list[str], env: dict[str, str], script: Path = SCRIPT
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_every_pinned_wheel_is_some_platform_s_and_nothing_else() -> None:
    platforms = [("linux", m, libc) for m in ("x86_64", "i686", "aarch64", "armv7l",
                                              "riscv64", "ppc64le", "s390x", "armv6l")
                 for libc in ("glibc", "")]
    platforms += [("darwin", "x86_64", ""), ("darwin", "arm64", ""), ("win32", "AMD64", ""),
                  ("win32", "ARM64", ""), ("win32", "x86", ""), ("linux", "AMD64", "glibc")]
    assert {uv.platform_tag(*p) for p in platforms} == set(uv.WHEELS)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in uv.WHEELS.values())
    assert uv.platform_tag("linux", "x86_64", "") == "musllinux_1_1_x86_64"
    with pytest.raises(uv.BootstrapError, match="no uv .* wheel for sunos5 on sparc: install"):
        uv.platform_tag("sunos5", "sparc", "")


def test_the_index_is_uv_s_setting_then_pip_s_then_pypi() -> None:
    assert uv.index_url({}) == "https://pypi.org/simple/"
    assert uv.index_url({"PIP_INDEX_URL": "https://m/pip"}) == "https://m/pip/"
    assert uv.index_url({"PIP_INDEX_URL": "https://m/pip", "UV_INDEX_URL": "https://m/uv/"}
                        ) == "https://m/uv/"
    assert uv.index_url({"UV_INDEX_URL": "https://m/uv", "UV_DEFAULT_INDEX": "https://m/d",
                         "PIP_INDEX_URL": " "}) == "https://m/d/"


def test_the_uv_on_path_is_the_one_run(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV)
    (bin_dir / "uv").chmod(0o755)
    env = env_without_uv(tmp_path)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done = run_script(["lock", "--check"], env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "fake uv: lock --check\n", "")
    assert not (tmp_path / "cache").exists()


def test_without_uv_the_pinned_wheel_is_fetched_checked_and_cached(
        tmp_path: Path, index: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    url, wheel = index
    tag = uv.platform_tag(sys.platform, platform.machine(), "glibc")
    # The pinned hash is the real wheel's: this index serves a stand-in with its own.
    monkeypatch.setitem(uv.WHEELS, tag, hashlib.sha256(wheel).hexdigest())
    env = env_without_uv(tmp_path, UV_DEFAULT_INDEX="http://127.0.0.1:9/simple/")
    cache = uv.cache_dir(env)
    assert cache == tmp_path / "cache" / "sisyphus-tui" / f"uv-{uv.VERSION}"
    exe = uv.fetch_uv(tag, url, cache)
    assert exe == cache / "uv"
    assert os.listdir(cache) == ["uv"]  # no temporary file left beside it
    ran = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10)
    assert ran.stdout == "fake uv: --version\n"
    # Then it is what runs, with no uv on PATH and no index at all.
    done = run_script(["--version"], env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "fake uv: --version\n", "")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(
        tmp_path: Path, index: tuple[str, bytes]) -> None:
    url, wheel = index
    done = run_script(["--version"], env_without_uv(tmp_path, UV_DEFAULT_INDEX=url))
    assert done.returncode == 1
    progress, error = done.stderr.splitlines()
    assert progress.startswith(f"tools/uv.py: uv is not on PATH: fetching uv-{uv.VERSION}-")
    assert error.startswith("tools/uv.py: http://127.0.0.1:")
    assert f"has sha256 {hashlib.sha256(wheel).hexdigest()}, not the pinned " in error
    assert done.stdout == ""
    assert not (tmp_path / "cache" / "sisyphus-tui" / f"uv-{uv.VERSION}").exists()


def test_an_index_that_cannot_be_reached_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = env_without_uv(tmp_path, UV_DEFAULT_INDEX="http://127.0.0.1:9/simple/")
    done = run_script(["run", "sisyphus", "demo"], env)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("tools/uv.py: could not fetch http://127.0.0.1:9/simple/uv/: "), line
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout with the script, a lock and no environment yet."""
    root = tmp_path / "checkout"
    (root / "tools").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "tools" / "uv.py")
    (root / "uv.lock").write_text("version = 1\n")
    return root


def make_venv(project: Path) -> None:
    venv = project / ".venv"
    if venv.exists():
        shutil.rmtree(venv)
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")


def test_bytecode_is_compiled_when_a_run_may_install_and_only_then(
        project: Path, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}

    def flag(*args: str) -> list[str]:
        result: list[str] = uv.bytecode_flag(list(args), env, project)
        return result

    compile_ = ["--compile-bytecode"]
    demo = ("run", "--no-dev", "sisyphus", "demo")
    assert flag(*demo) == compile_  # a new environment: uv creates and fills it
    make_venv(project)
    assert flag(*demo) == []  # the one that run made
    assert flag(*demo) == []
    assert flag("run", "pytest") == compile_  # the dev group joins
    assert flag("run", "pytest", "--no-dev") == []  # the command's own options are its own
    assert flag(*demo) == []  # the dev group stays (uv run is inexact)
    (project / "uv.lock").write_text("version = 2\n")
    assert flag("sync", "--locked") == compile_
    assert flag("run", "pytest") == []
    make_venv(project)  # recreated (another Python, say)
    os.utime(project / ".venv" / "pyvenv.cfg", ns=(1, 1))
    assert flag("run", "pytest") == compile_
    assert flag("run", "pytest") == []
    # Not a sync, or the user said: nothing added.
    (project / "uv.lock").write_text("version = 3\n")
    assert flag("lock") == flag("--version") == flag() == []
    assert flag("run", "--no-compile-bytecode", "pytest") == []
    assert flag("run", "--compile-bytecode", "pytest") == []
    assert uv.bytecode_flag(["run", "pytest"], env | {"UV_COMPILE_BYTECODE": "0"}, project) == []
    assert flag("run", "pytest") == compile_


def test_the_flag_goes_to_uv_right_after_the_subcommand(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "sisyphus-tui" / f"uv-{uv.VERSION}"
    cache.mkdir(parents=True)
    (cache / "uv").write_text(FAKE_UV)
    (cache / "uv").chmod(0o755)
    env = env_without_uv(tmp_path)
    script = project / "tools" / "uv.py"
    first = run_script(["run", "--no-dev", "sisyphus", "demo"], env, script)
    assert first.stdout == "fake uv: run --compile-bytecode --no-dev sisyphus demo\n"
    make_venv(project)
    again = run_script(["run", "--no-dev", "sisyphus", "demo"], env, script)
    assert again.stdout == "fake uv: run --no-dev sisyphus demo\n"
