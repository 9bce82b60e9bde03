"""What a workspace checkpoint costs, and a restore, on a 10,000-file workspace, against
plain git doing the same in a repository of the same files, measured in the same run.

Run from the project root::

    uv run python -m benchmarks.shadow            # full run (about a minute on 2 cores)
    uv run python -m benchmarks.shadow --quick    # 2,000 files, 2 rounds

1. The workspace: small source files (Python modules, tests, docs, configs of 0.3-4 KB)
   in nested packages, a .gitignore, and ignored build output. An identical copy is a
   plain git repository (the peer); every change below is made to both.
2. Snapshot: the first one (the shadow repository made, every file hashed) against
   ``git init && git add -A && git commit -q``; then a checkpoint after ~10 files
   changed (9 edited, 1 removed, 1 made) against ``git add -A && git commit -q``;
   then one with nothing changed. Rounds interleaved, the order alternating.
3. Restore after ~10 and ~1000 files changed (uncommitted, as an agent leaves them):
   ``Shadow.restore`` of the last checkpoint against ``git reset -q --hard && git clean
   -q -fd`` (the plain repository's way to put its work tree back). Each restore is
   checked: every file's hash as it was at the checkpoint.
4. A markdown summary table, ready for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.stream import load_average, out, verdict
from sisyphus_tui.shadow import Shadow

WORDS = ("repository", "item", "query", "params", "session", "cursor", "report", "audit",
         "price", "stock", "order", "customer", "invoice", "total", "row", "value")


def git_env() -> dict[str, str]:
    """The peer's git: the user's defaults, no system or global config (as ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env | {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
                  "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
                  "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=git_env(), check=True,
                   stdout=subprocess.DEVNULL)


def source(rng: random.Random, name: str) -> str:
    """A small, plausible Python module."""
    lines = [f'"""{name}: {" ".join(rng.choices(WORDS, k=6))}."""', "",
             "from __future__ import annotations", ""]
    for _ in range(rng.randint(1, 8)):
        fn = "_".join(rng.choices(WORDS, k=2))
        args = ", ".join(rng.sample(WORDS, rng.randint(1, 3)))
        lines += [f"def {fn}({args}):", f'    """Return the {rng.choice(WORDS)}."""']
        lines += [f"    {rng.choice(WORDS)} = {rng.choice(WORDS)} + {rng.randint(0, 99)}"
                  for _ in range(rng.randint(2, 10))]
        lines += [f"    return {rng.choice(WORDS)}", "", ""]
    return "\n".join(lines)


def build_workspace(root: Path, files: int, seed: int = 11) -> list[str]:
    """``files`` small files in nested folders (plus ignored build output); returns
    their paths."""
    rng = random.Random(seed)
    paths: list[str] = []
    package = 0
    while len(paths) < files:
        depth = rng.randint(1, 3)
        folder = Path(*[f"pkg{package}"] + [f"sub{rng.randint(0, 4)}" for _ in range(depth - 1)])
        package += 1
        for i in range(min(rng.randint(10, 40), files - len(paths))):
            kind = rng.random()
            name = (f"mod_{i}.py" if kind < 0.7 else f"test_{i}.py" if kind < 0.85
                    else f"notes_{i}.md" if kind < 0.95 else f"conf_{i}.toml")
            paths.append((folder / name).as_posix())
    for rel in paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source(rng, rel))
    (root / ".gitignore").write_text("*.log\nbuild/\n__pycache__/\n")
    (root / "build").mkdir()
    for i in range(50):
        (root / "build" / f"out{i}.o").write_bytes(os.urandom(256))
    return paths


def change(roots: Sequence[Path], paths: list[str], count: int, rng: random.Random,
           tag: str) -> None:
    """Change ``count`` files the same way in every root: edits, one made, one removed."""
    chosen = rng.sample(paths, count)
    for rel in chosen[:-1]:
        for root in roots:
            with open(root / rel, "a") as handle:
                handle.write(f"\n# {tag}\n")
    gone = chosen[-1]
    made = f"{Path(gone).parent.as_posix()}/new_{tag}.py"
    for root in roots:
        (root / gone).unlink()
        (root / made).write_text(f"# made in {tag}\n")
    paths.remove(gone)
    paths.append(made)


def hashes(root: Path) -> dict[str, str]:
    """Every non-ignored file's hash (the workspace as a restore must leave it)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", ".sisyphus", "build")]
        for name in names:
            path = Path(folder, name)
            found[path.relative_to(root).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return found


@dataclass
class Pair:
    """Timings of ours and the peer for one figure, in ms."""

    ours: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)

    def row(self, figure: str) -> list[str]:
        o, p = statistics.median(self.ours), statistics.median(self.peer)
        spread = (f" ({min(self.ours):.1f}-{max(self.ours):.1f})"
                  if len(self.ours) > 1 else "")
        return [figure, f"{o:.1f} ms{spread}", f"{p:.1f} ms", f"{o / p:.2f}"]


def timed_snapshot(loop: asyncio.Runner, shadow: Shadow, label: str) -> tuple[float, str]:
    """Ours, as an actor awaits it (on one event loop, the git calls in a thread)."""
    start = time.perf_counter()
    sha = loop.run(shadow.snapshot(label))
    return (time.perf_counter() - start) * 1000, sha


def timed_git(repo: Path, *commands: Sequence[str]) -> float:
    start = time.perf_counter()
    for command in commands:
        git(repo, *command)
    return (time.perf_counter() - start) * 1000


COMMIT = (("add", "-A"), ("commit", "-q", "--allow-empty", "-m", "checkpoint"))


def run(loop: asyncio.Runner, files: int, rounds: int, big: int) -> int:
    """The whole benchmark; 1 if a restore was not exact."""
    out(f"load average at start: {load_average()}")
    version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    out(f"{version.strip()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    rng = random.Random(7)
    ok = True
    with tempfile.TemporaryDirectory(prefix="sisyphus-shadow-bench-") as tmp:
        ws, plain = Path(tmp, "workspace"), Path(tmp, "plain")
        ws.mkdir()
        paths = build_workspace(ws, files)
        shutil.copytree(ws, plain, symlinks=True)
        size = sum((ws / p).stat().st_size for p in paths)
        out(f"workspace: {len(paths):,} files, {size / 1e6:.1f} MB, "
            f"{len({str(Path(p).parent) for p in paths}):,} folders")
        shadow = Shadow(ws)
        first = Pair()
        ms, sha = timed_snapshot(loop, shadow, "first")
        first.ours.append(ms)
        first.peer.append(timed_git(plain, ("init", "-q"), *COMMIT))
        rows = [first.row(f"First snapshot of {len(paths):,} files vs git init + add -A + "
                          "commit")]
        out(" | ".join(rows[-1]))

        tens, idle = Pair(), Pair()
        for i in range(rounds):
            change((ws, plain), paths, 10, rng, f"r{i}")
            order = [0, 1] if i % 2 == 0 else [1, 0]
            for who in order:
                if who == 0:
                    ms, sha = timed_snapshot(loop, shadow, f"r{i}")
                    tens.ours.append(ms)
                else:
                    tens.peer.append(timed_git(plain, *COMMIT))
            ms, sha = timed_snapshot(loop, shadow, f"r{i} idle")
            idle.ours.append(ms)
            idle.peer.append(timed_git(plain, *COMMIT))
        rows.append(tens.row("Checkpoint after ~10 files changed vs git add -A + commit"))
        out(" | ".join(rows[-1]))
        rows.append(idle.row("Checkpoint with nothing changed vs git add -A + commit"))
        out(" | ".join(rows[-1]))

        for count in (10, big):
            pair = Pair()
            for i in range(rounds):
                want = hashes(ws)
                assert want == hashes(plain)
                change((ws, plain), paths, count, rng, f"x{count}-{i}")
                start = time.perf_counter()
                changed = loop.run(shadow.restore(sha))
                pair.ours.append((time.perf_counter() - start) * 1000)
                pair.peer.append(timed_git(plain, ("reset", "-q", "--hard"),
                                           ("clean", "-q", "-fd")))
                exact = hashes(ws) == want and hashes(plain) == want
                ok = ok and exact and len(changed) == count + 1
                # The restore put the files back: the names in the list are the old ones.
                paths[:] = [p for p in want if p != ".gitignore"]
            rows.append(pair.row(f"Restore after ~{count:,} files changed vs git reset --hard "
                                 "+ clean -fd"))
            out(" | ".join(rows[-1]))
        rows.append(["Restores exact (every file's hash as at the checkpoint)",
                     "yes" if ok else "NO", "", verdict(ok)])
    out(f"load average at end: {load_average()}")
    out()
    out("| Figure | Ours | Peer | Ours/peer |")
    out("|---|---:|---:|---:|")
    for row in rows:
        out("| " + " | ".join(row) + " |")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a restore was not exact."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shadow",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big", type=int, default=1000, help="files changed before the "
                        "second restore")
    parser.add_argument("--quick", action="store_true", help="2,000 files, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.rounds, args.big = 2000, 2, 200
    with asyncio.Runner() as loop:
        return run(loop, args.files, args.rounds, args.big)


if __name__ == "__main__":
    sys.exit(main())
