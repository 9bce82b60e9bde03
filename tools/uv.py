"""Run uv, from any Python 3.11+ with only its standard library: `python3 tools/uv.py ARGS`.

A stock Debian or Ubuntu Python refuses `pip install` (PEP 668) and may have neither pip nor
venv, so this script needs neither: it runs the `uv` on PATH if there is one, else the pinned
uv below, fetched once from the package index into a per-user cache and checked against the
sha256 committed here (so any mirror is as safe as PyPI).

Index: $UV_DEFAULT_INDEX, else $UV_INDEX_URL, else $PIP_INDEX_URL, else PyPI (a simple index,
PEP 503; pip.conf is not read). Cache: $XDG_CACHE_HOME/sisyphus-tui/uv-VERSION/ (default
~/.cache/...). A failed download is one line on stderr and exit 1.

`run` and `sync` are also told to compile the dependencies' bytecode, but only when they may
install something (see `bytecode_flag`): uv compiles the whole site-packages on every run it
is told to, even when nothing changed.
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

VERSION = "0.13.9"
# The sha256 of each wheel of uv VERSION, by its platform tag (from PyPI's simple index).
WHEELS = {
    "linux_armv6l": "56ec37616c00220032fc7b8c9d0ef51367fd0d70d9cd6ddd841660f949f84fed",
    "macosx_10_12_x86_64": "c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5",
    "macosx_11_0_arm64": "66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63",
    "manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64":
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    "manylinux_2_17_armv7l.manylinux2014_armv7l.musllinux_1_1_armv7l":
        "7ec1e1dd9b6cb335c301afdf877989df384227313981850755a59561f75e4ab8",
    "manylinux_2_17_armv7l.manylinux2014_armv7l":
        "16963d19594e18d746a70c7fce82237bde4f2cac4cfcf0ca2b84796fe9d0c6e9",
    "manylinux_2_17_i686.manylinux2014_i686":
        "db5c8df7145c21ffea9c0f74e38823bac3af60cbadf0e26b8633f08627b17bab",
    "manylinux_2_17_ppc64le.manylinux2014_ppc64le":
        "c5dbdb7c8737cd183a9dce95b39cfd1f3d54ec2a27a1bb58f160293f9ba2c805",
    "manylinux_2_17_s390x.manylinux2014_s390x":
        "a6e845f387e4ed55bb59342957a9179e24a631fcc7668bda3426ae1cef8ed4b9",
    "manylinux_2_17_x86_64.manylinux2014_x86_64":
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    "manylinux_2_31_riscv64.musllinux_1_1_riscv64":
        "6d5114bba238adddacb32fb11904f2b3ff4e988f8e9ff0d8d3b5e9822cf836b8",
    "manylinux_2_31_riscv64": "6b0c7b9f47a5d011939d61e324d3fe18a8bc155d8dd53add738709a92f290a7c",
    "musllinux_1_1_i686": "a2ee66fe8b6608e1482ab1bde5799da04705c1cb40324c7f66054ecf46ae6e40",
    "musllinux_1_1_x86_64": "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25",
    "win32": "3eeeb51a267a2144640fcd8f38d4a2f63439b39bc47445fd84727c3fc462c843",
    "win_amd64": "6a44b2ed8111d2f60d2b92627c5dccda3f7ed7570b18ce115e569cd68c28246b",
    "win_arm64": "eeb92051c2123b9730c46b04cc843cfa4bc7d7b0aec56df431a2215ef4cb0273",
}
PYPI = "https://pypi.org/simple/"
PROJECT = Path(__file__).resolve().parent.parent


class BootstrapError(Exception):
    """Why uv could not be had: said in one line."""


def platform_tag(system: str, machine: str, libc: str) -> str:
    """The platform tag of the uv wheel that runs here (libc: 'glibc', or '' for musl)."""
    machine = {"amd64": "x86_64", "i386": "i686", "i586": "i686", "arm64": "aarch64"}.get(
        machine.lower(), machine.lower()) if system == "linux" else machine.lower()
    aarch64 = "manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64"
    # Linux: (the glibc wheel, the musl wheel).
    linux = {
        "x86_64": ("manylinux_2_17_x86_64.manylinux2014_x86_64", "musllinux_1_1_x86_64"),
        "i686": ("manylinux_2_17_i686.manylinux2014_i686", "musllinux_1_1_i686"),
        "aarch64": (aarch64, aarch64),
        "armv7l": ("manylinux_2_17_armv7l.manylinux2014_armv7l",
                   "manylinux_2_17_armv7l.manylinux2014_armv7l.musllinux_1_1_armv7l"),
        "riscv64": ("manylinux_2_31_riscv64", "manylinux_2_31_riscv64.musllinux_1_1_riscv64"),
        "ppc64le": ("manylinux_2_17_ppc64le.manylinux2014_ppc64le",) * 2,
        "s390x": ("manylinux_2_17_s390x.manylinux2014_s390x",) * 2,
        "armv6l": ("linux_armv6l",) * 2,
    }
    other = {
        ("darwin", "x86_64"): "macosx_10_12_x86_64",
        ("darwin", "arm64"): "macosx_11_0_arm64",
        ("win32", "amd64"): "win_amd64",
        ("win32", "arm64"): "win_arm64",
        ("win32", "x86"): "win32",
    }
    if system == "linux" and machine in linux:
        return linux[machine][0 if libc == "glibc" else 1]
    if (system, machine) in other:
        return other[system, machine]
    raise BootstrapError(f"no uv {VERSION} wheel for {system} on {machine}: install uv "
                         "yourself (https://docs.astral.sh/uv/) and run this again")


def index_url(environ: os._Environ[str] | dict[str, str]) -> str:
    """The simple index to fetch uv from: uv's own setting, then pip's, then PyPI."""
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if environ.get(name, "").strip():
            return environ[name].strip().rstrip("/") + "/"
    return PYPI


def cache_dir(environ: os._Environ[str] | dict[str, str]) -> Path:
    """Where the fetched uv is kept, one folder per version."""
    if sys.platform == "win32" and environ.get("LOCALAPPDATA"):
        base = Path(environ["LOCALAPPDATA"])
    else:
        base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sisyphus-tui" / f"uv-{VERSION}"


class _Links(html.parser.HTMLParser):
    """The href of each <a> on a simple index page (PEP 503)."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise BootstrapError(f"could not fetch {url}: {reason}") from None


def wheel_url(index: str, filename: str) -> str:
    """The address of `filename` on the index's page for uv."""
    page = index + "uv/"
    links = _Links()
    links.feed(_get(page).decode("utf-8", "replace"))
    for href in links.hrefs:
        url = urllib.parse.urljoin(page, href)
        if urllib.parse.unquote(urllib.parse.urlsplit(url).path).endswith("/" + filename):
            return url.split("#", 1)[0]
    raise BootstrapError(f"{page} does not list {filename}")


def fetch_uv(tag: str, index: str, cache: Path) -> Path:
    """Download the uv wheel for `tag`, check its sha256, unpack the uv binary into `cache`."""
    filename = f"uv-{VERSION}-py3-none-{tag}.whl"
    url = wheel_url(index, filename)
    print(f"tools/uv.py: uv is not on PATH: fetching {filename} from {index} into {cache}",
          file=sys.stderr)
    data = _get(url)
    digest = hashlib.sha256(data).hexdigest()
    if digest != WHEELS[tag]:
        raise BootstrapError(f"{url} has sha256 {digest}, not the pinned {WHEELS[tag]}")
    exe = "uv.exe" if tag.startswith("win") else "uv"
    member = f"uv-{VERSION}.data/scripts/{exe}"
    cache.mkdir(parents=True, exist_ok=True)
    # Unpacked beside its final name and renamed into place, so a second run started
    # meanwhile never executes half a binary.
    with tempfile.NamedTemporaryFile(dir=cache, prefix=".uv-", delete=False) as tmp:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                tmp.write(wheel.read(member))
        except (KeyError, zipfile.BadZipFile) as error:
            os.unlink(tmp.name)
            raise BootstrapError(f"{filename} has no {member}: {error}") from None
    os.chmod(tmp.name, 0o755)
    os.replace(tmp.name, cache / exe)
    return cache / exe


def find_uv(environ: os._Environ[str] | dict[str, str]) -> Path:
    """The uv to run: the one on PATH, else the cached pinned one (fetched if need be)."""
    on_path = shutil.which("uv")
    if on_path:
        return Path(on_path)
    cache = cache_dir(environ)
    exe = cache / ("uv.exe" if sys.platform == "win32" else "uv")
    if exe.is_file():
        return exe
    libc = platform.libc_ver()[0] if sys.platform == "linux" else ""
    tag = platform_tag(sys.platform, platform.machine(), libc)
    return fetch_uv(tag, index_url(environ), cache)


def _leading_options(args: list[str]) -> list[str]:
    """uv's own options of `run ARGS` / `sync ARGS`: those before the command it runs."""
    options = []
    for arg in args[1:]:
        if arg == "--" or not arg.startswith("-"):
            break
        options.append(arg)
    return options


def bytecode_flag(args: list[str], environ: os._Environ[str] | dict[str, str],
                  project: Path) -> list[str]:
    """`--compile-bytecode` when this `uv run`/`uv sync` may install packages, else nothing.

    Compiled dependencies are what make the first launch fast (and every launch where
    PYTHONDONTWRITEBYTECODE is set: ~0.7 s, not ~1.8 s); but uv told to compile walks the
    whole site-packages on every run (~0.1 s, and a "Bytecode compiled" line) even when it
    installed nothing. So compile when the environment is new or was recreated, when uv.lock
    changed since the last compile, or when the dev group is asked for after a `--no-dev`
    one; a note in the per-user cache remembers the last. The user's own choice (the flag or
    UV_COMPILE_BYTECODE) wins.
    """
    if not args or args[0] not in ("run", "sync") or "UV_COMPILE_BYTECODE" in environ:
        return []
    options = _leading_options(args)
    if "--compile-bytecode" in options or "--no-compile-bytecode" in options:
        return []
    venv = (project / environ.get("UV_PROJECT_ENVIRONMENT", ".venv")).resolve()
    lock = project / "uv.lock"
    lock_hash = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else "none"
    groups = "no-dev" if "--no-dev" in options else "dev"
    try:
        cfg = (venv / "pyvenv.cfg").stat()
        venv_id = f"{cfg.st_ino}-{cfg.st_mtime_ns}"
    except OSError:
        venv_id = "new"  # uv is about to create it
    # Kept outside the environment, which does not exist yet the first time.
    note = cache_dir(environ).parent / "bytecode" / hashlib.sha256(
        str(venv).encode()).hexdigest()[:16]
    try:
        last_hash, last_groups, last_id = note.read_text().split()
    except (OSError, ValueError):
        last_hash = last_groups = last_id = ""
    covered = last_hash == lock_hash and (last_groups == "dev" or groups == "no-dev")
    if covered and last_id == venv_id:
        return []
    if covered and last_id == "new" and venv_id != "new":
        # The run that compiled created the environment: remember which one it made.
        groups, flag = last_groups, []
    else:
        flag = ["--compile-bytecode"]
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(f"{lock_hash} {groups} {venv_id}\n")
    except OSError:
        pass  # nowhere to remember it: compile each time rather than never
    return flag


def main(args: list[str]) -> int:
    """Run uv with `args` (found or fetched), the dependencies' bytecode compiled if due."""
    try:
        uv = find_uv(os.environ)
    except BootstrapError as error:
        print(f"tools/uv.py: {error}", file=sys.stderr)
        return 1
    if args[:1] in (["run"], ["sync"]):
        args = [args[0], *bytecode_flag(args, os.environ, PROJECT), *args[1:]]
    if sys.platform == "win32":
        # Windows has no exec that keeps the console and exit code: wait for it instead.
        return subprocess.run([str(uv), *args]).returncode
    os.execv(uv, [str(uv), *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
