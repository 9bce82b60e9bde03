"""The subprocess runner, on real processes: lines arrive as they are printed, a
timeout or a cancel ends the whole process group (grandchildren too), nothing is left
running after a command ends, a line is bounded, bad bytes are no crash. A coding
agent's CLI runs under its watchdog: killed with its host (even by SIGKILL), with all it
started (a tool in a session of its own too), its own exit and pipes unchanged."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from sisyphus_tui.process import Child, run_process

PY = sys.executable
PROJECT = str(Path(__file__).resolve().parents[1])


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


# -- a coding agent's CLI under its watchdog (die_with_parent) --------------------------

# A "CLI" that ignores SIGINT and SIGTERM and starts a child in a session of its own (as
# Claude Code's shell tool does), which ignores them too; it prints both pids.
STUBBORN_CLI = """
import signal, subprocess, sys, time
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
tool = subprocess.Popen([sys.executable, "-c", "import signal, time\\n"
                         "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\\n"
                         "    signal.signal(s, signal.SIG_IGN)\\n"
                         "time.sleep(1000)"], start_new_session=True)
print(__import__("os").getpid(), tool.pid, flush=True)
time.sleep(1000)
"""

# The host: starts the CLI under its watchdog, says the pids, then waits to be killed.
HOST = """
import asyncio, sys
from pathlib import Path
from sisyphus_tui.process import Child

async def main():
    child = await Child.start([sys.executable, "-c", sys.argv[1]], Path.cwd(),
                              die_with_parent=True)
    async for line in child.lines():
        print(child.pid, line, flush=True)
        break
    await asyncio.sleep(1000)

asyncio.run(main())
"""


async def wait_all_gone(pids: list[int], within_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while any(alive(pid) for pid in pids):
        assert loop.time() < deadline, [pid for pid in pids if alive(pid)]
        await asyncio.sleep(0.02)  # (polling /proc: a process's end has no event here)


async def test_a_host_killed_by_sigkill_leaves_no_agent_process(tmp_path: Path) -> None:
    host = await asyncio.create_subprocess_exec(
        PY, "-c", HOST, STUBBORN_CLI, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": PROJECT})
    assert host.stdout is not None
    line = await asyncio.wait_for(host.stdout.readline(), 60)
    pids = [int(word) for word in line.split()]  # watchdog, CLI, its tool
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    assert os.getsid(pids[2]) != os.getsid(pids[1])  # the tool escaped the CLI's session
    host.kill()
    await host.wait()
    # SIGTERM first (ignored here), the watchdog's grace, then the whole tree is killed.
    await wait_all_gone(pids, within_s=30)


async def test_what_an_agent_left_in_another_session_ends_with_it(tmp_path: Path) -> None:
    script = ("import subprocess, sys\n"
              "tool = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
              " start_new_session=True)\nprint(tool.pid, flush=True)\nsys.exit(3)\n")
    async with await Child.start([PY, "-c", script], tmp_path, die_with_parent=True) as child:
        lines = [line async for line in child.lines()]
        assert await child.exited(60)
        assert child.returncode == 3  # the agent's own exit, through its watchdog
    await wait_all_gone([int(lines[0])], within_s=10)


async def test_a_cancel_that_needs_sigkill_ends_the_whole_tree(tmp_path: Path) -> None:
    child = await Child.start([PY, "-c", STUBBORN_CLI], tmp_path, die_with_parent=True)
    try:
        line = await asyncio.wait_for(anext(child.lines()), 60)
        pids = [int(word) for word in line.split()]
        await child.stop([(signal.SIGINT, 0.3)])
        assert child.signalled == [signal.SIGINT, signal.SIGKILL]  # SIGINT was not enough
        assert child.returncode == -signal.SIGKILL
        await wait_all_gone([child.pid, *pids], within_s=10)
    finally:
        await child.close()


async def test_an_agent_that_honours_sigint_needs_no_more(tmp_path: Path) -> None:
    polite = "import time\nprint('up', flush=True)\ntime.sleep(600)\n"
    child = await Child.start([PY, "-c", polite], tmp_path, die_with_parent=True)
    try:
        assert await asyncio.wait_for(anext(child.lines()), 60) == "up"
        await child.stop([(signal.SIGINT, 30)])
        assert child.signalled == [signal.SIGINT]
        assert child.returncode == -signal.SIGINT  # its own end, not the watchdog's
    finally:
        await child.close()


async def test_the_agent_reads_and_writes_its_own_pipes(tmp_path: Path) -> None:
    script = ("import os, sys\nprint(os.getppid(), flush=True)\n"
              "for line in sys.stdin: print(line.strip().upper(), flush=True)\n")
    async with await Child.start([PY, "-c", script], tmp_path, stdin=True,
                                 die_with_parent=True) as child:
        assert await child.write(b"one\ntwo\n")
        child.close_stdin()
        lines = [line async for line in child.lines()]
        assert await child.exited(60) and child.returncode == 0
    assert lines == [str(child.pid), "ONE", "TWO"]  # its parent: the watchdog


async def test_an_agent_killed_by_a_signal_is_seen_so(tmp_path: Path) -> None:
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"
    async with await Child.start([PY, "-c", script], tmp_path, die_with_parent=True) as child:
        assert await child.exited(60)
    assert child.returncode == -signal.SIGTERM


async def test_a_missing_agent_binary_cannot_be_started(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        await Child.start(["no-such-agent-cli"], tmp_path, die_with_parent=True)
    assert missing.value.strerror == "No such file or directory"
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        await Child.start(["./not-executable"], tmp_path, die_with_parent=True)
