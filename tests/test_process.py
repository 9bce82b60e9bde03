"""The subprocess runner, on real processes: lines arrive as they are printed, a
timeout or a cancel ends the whole process group (grandchildren too), nothing is left
running after a command ends, a line is bounded, bad bytes are no crash."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from sisyphus_tui.process import run_process

PY = sys.executable


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) is gone too.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_gone(pid: int) -> None:
    for _ in range(500):
        if not alive(pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"process {pid} still runs")


SPAWNS_A_GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


async def test_lines_arrive_while_the_command_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = ("import os, time\nprint('one', flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\nprint('two')\n")
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "one":
            go.touch()  # the command waits for this: 'one' came before its end

    result = await run_process([PY, "-c", script], tmp_path, timeout_s=60, on_line=on_line)
    assert result.ok and seen == ["one", "two"]
    assert result.output_tail == "one\ntwo\n"


async def test_a_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    pids: list[int] = []
    result = await run_process([PY, "-c", SPAWNS_A_GRANDCHILD], tmp_path, timeout_s=1,
                               on_line=lambda line: pids.append(int(line)))
    assert result.timed_out and not result.ok
    assert result.output_tail.endswith("[timed out after 1s]")
    await wait_gone(pids[0])


async def test_a_cancel_ends_the_whole_group(tmp_path: Path) -> None:
    started = asyncio.Event()
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.append(int(line))
        started.set()

    task = asyncio.create_task(run_process([PY, "-c", SPAWNS_A_GRANDCHILD], tmp_path,
                                           timeout_s=600, on_line=on_line))
    await asyncio.wait_for(started.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_gone(pids[0])


async def test_nothing_it_left_running_outlives_it(tmp_path: Path) -> None:
    # The command exits at once; its child keeps the output pipe open for 600 s.
    script = ("import subprocess, sys\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              "print(child.pid, flush=True)\n")
    pids: list[int] = []
    result = await asyncio.wait_for(
        run_process([PY, "-c", script], tmp_path, timeout_s=600,
                    on_line=lambda line: pids.append(int(line))), 60)
    assert result.ok
    await wait_gone(pids[0])


async def test_sigterm_first_then_sigkill_after_the_grace(tmp_path: Path) -> None:
    polite = ("import signal, sys, time\n"
              "def bye(*_): print('bye', flush=True); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\nprint('up', flush=True)\ntime.sleep(600)\n")
    result = await run_process([PY, "-c", polite], tmp_path, timeout_s=1, grace_s=30)
    assert "bye" in result.output_tail  # it had its SIGTERM, and time to say goodbye
    stubborn = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('up', flush=True)\ntime.sleep(600)\n")
    loop = asyncio.get_running_loop()
    began = loop.time()
    result = await run_process([PY, "-c", stubborn], tmp_path, timeout_s=1, grace_s=0.5)
    assert result.timed_out and result.exit_code == -9  # SIGKILL, after the grace
    assert loop.time() - began < 30


async def test_a_huge_line_is_bounded_and_bad_bytes_are_no_crash(tmp_path: Path) -> None:
    script = ("import sys\nsys.stdout.write('x' * 3_000_000 + '\\n')\n"
              "sys.stdout.buffer.write(b'bad \\xff\\xfe bytes\\n')\n"
              "sys.stdout.write('no newline')\n")
    seen: list[str] = []
    result = await run_process([PY, "-c", script], tmp_path, timeout_s=60,
                               on_line=seen.append, max_line_bytes=1000)
    assert result.ok
    assert seen[0] == "x" * 1000 + " [... 2999000 more bytes of this line dropped]"
    assert seen[1] == "bad \ufffd\ufffd bytes" and seen[2] == "no newline"


async def test_a_missing_binary_is_one_line(tmp_path: Path) -> None:
    result = await run_process(["no-such-binary-here"], tmp_path, timeout_s=10)
    assert result.exit_code == 127
    assert result.output_tail == "cannot run 'no-such-binary-here': No such file or directory"
