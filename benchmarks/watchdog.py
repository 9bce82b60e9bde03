"""What the watchdog costs an agent's start: a coding agent's CLI runs under a watchdog
of its own (``sisyphus_tui/watchdog.py``: ``python -I -S``, the subreaper of all the
agent starts), so no process of it outlives a host killed with SIGKILL. Each figure is
measured against its peer in the same run, interleaved, on this machine.

Run from the project root::

    uv run python -m benchmarks.watchdog            # 40 runs of each (about 1 minute)
    uv run python -m benchmarks.watchdog --reps 10  # quicker

1. Start to the first line, and to the exit seen, of a tiny command (``sh -c 'echo
   up'``): (a) ``Child.start(..., die_with_parent=True)``, under the watchdog; (b) the
   peer, the start this replaced: ``asyncio.create_subprocess_exec`` in a new session
   with the parent-death signal set in the child before exec (``preexec_fn``), as
   ``Child.start`` did before the watchdog; (c) a plain start (no ``preexec_fn``: asyncio
   can then spawn without a Python callback in the child), the floor.
2. The same for a real agent CLI's start, ``claude --version`` (the pinned one; skipped
   if it is not installed), so the watchdog's share of an agent's start is seen.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sisyphus_tui.process import Child, _die_with_parent

Start = Callable[[list[str]], Awaitable[tuple[float, float]]]


async def _watched(argv: list[str]) -> tuple[float, float]:
    began = time.perf_counter()
    child = await Child.start(argv, Path.cwd(), die_with_parent=True)
    return await _timed(child, began)


async def _old_way(argv: list[str]) -> tuple[float, float]:
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True, preexec_fn=_die_with_parent)
    return await _timed(Child(proc, tuple(argv), 1 << 20), began)


async def _plain(argv: list[str]) -> tuple[float, float]:
    began = time.perf_counter()
    child = await Child.start(argv, Path.cwd(), die_with_parent=False)
    return await _timed(child, began)


async def _timed(child: Child, began: float) -> tuple[float, float]:
    """(first line, exit seen) in ms since ``began``."""
    lines = child.lines()
    await anext(lines)
    first = time.perf_counter()
    async for _ in lines:
        pass
    await child.exited()
    ended = time.perf_counter()
    await child.close()
    return (first - began) * 1000, (ended - began) * 1000


def _row(name: str, figures: list[tuple[float, float]], peer: list[tuple[float, float]]
         ) -> str:
    first = statistics.median(f for f, _ in figures)
    ended = statistics.median(e for _, e in figures)
    peer_first = statistics.median(f for f, _ in peer)
    peer_ended = statistics.median(e for _, e in peer)
    return (f"| {name} | {first:.1f} | {ended:.1f} | {first - peer_first:+.1f} "
            f"({first / peer_first:.2f}x) | {ended - peer_ended:+.1f} "
            f"({ended / peer_ended:.2f}x) |")


async def _measure(argv: list[str], reps: int) -> dict[str, list[tuple[float, float]]]:
    ways: dict[str, Start] = {"watchdog": _watched, "before (pdeathsig)": _old_way,
                              "plain": _plain}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for way in ways.values():  # (one warm-up each: the page cache, not the start)
        await way(argv)
    for rep in range(reps):
        order = list(ways)
        order = order[rep % len(order):] + order[:rep % len(order)]  # rotated
        for name in order:
            results[name].append(await ways[name](argv))
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    cases = [("sh -c 'echo up'", ["sh", "-c", "echo up"])]
    claude = shutil.which("claude") or _pinned("claude")
    if claude:
        cases.append(("claude --version", [claude, "--version"]))
    print("| command, start via | first line, ms (median) | exit seen, ms | first line "
          "vs before | exit vs before |")
    print("|---|---|---|---|---|")
    for label, argv in cases:
        results = await _measure(argv, args.reps)
        peer = results["before (pdeathsig)"]
        for name, figures in results.items():
            print(_row(f"`{label}`, {name}", figures, peer))
    print(f"load average at end: {os.getloadavg()}")


def _pinned(name: str) -> str | None:
    """The pinned CLI of the backend tests, if installed (tests/agents/install.py)."""
    try:
        from tests.agents.install import install_dir
    except ImportError:
        return None
    path = install_dir() / "node_modules" / ".bin" / name
    return str(path) if path.exists() else None


if __name__ == "__main__":
    asyncio.run(main())
