"""The watchdog an agent CLI runs under: ``python -I -S watchdog.py FD PATH ARGV...``.

It starts the agent (``PATH`` with ``ARGV``, the same stdin, stdout and stderr), becomes
the subreaper of everything the agent starts (a process whose parent dies is handed to
it, not to init: a shell tool's ``sleep`` in a session of its own included), and waits.
Its host holds the other end of the pipe ``FD``:

- the agent exits: what it left running is killed, and the watchdog exits as the agent
  did (its code, or its signal), so the host sees the agent's own end;
- the host writes ``k``: everything is killed at once (the end of a cancel);
- the pipe reaches its end without ``k``: the host died (even by SIGKILL). The agent
  gets SIGTERM (a CLI saves its session on the way out), ``TERM_GRACE_S`` to go, then
  it and everything it started are killed.

SIGINT, SIGTERM and SIGHUP sent to the process group are the agent's (it is in the
same group): the watchdog ignores them. It imports nothing but the standard library's
builtin modules, and ctypes once the agent is started (``-I -S``: what it costs an
agent's start is in benchmarks/watchdog.py; ``signal`` and ``contextlib`` would double
it, through enum and functools), and never the package it sits in.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # (no enums: a third of the start)
import errno
import os
import select
import sys
import time

TERM_GRACE_S = 3.0
_PR_SET_CHILD_SUBREAPER = 36
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# What the agent gets back as it was before the watchdog (Python ignores SIGPIPE).
_RESET = (*_IGNORED, signal.SIGPIPE, signal.SIGCHLD, signal.SIGXFSZ)


def main(args: list[str]) -> int:
    """Run the agent under watch; returns its exit code (or dies of its signal)."""
    control, path, argv = int(args[0]), args[1], args[2:]
    os.set_inheritable(control, False)
    for signum in _IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    agent = os.fork()
    if agent == 0:
        _exec(path, argv)
    # Once the agent is on its way (ctypes is most of the watchdog's own start): the
    # agent must start, then start a process, then lose it before an orphan can exist.
    _become_subreaper()
    # The agent's pipes are its own: holding them would keep its output open after it.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    status = _watch(agent, control, wake_r)
    _end_tree()
    return _exit_as(status)


def _exec(path: str, argv: list[str]) -> None:
    """In the forked child: the signals as they were, then the agent itself."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in _RESET:
            signal.signal(signum, signal.SIG_DFL)
        os.execv(path, argv)
    except OSError as exc:
        try:
            os.write(2, f"sisyphus watchdog: cannot run {path!r}: {exc.strerror}\n".encode())
        except OSError:
            pass
    os._exit(127)


def _watch(agent: int, control: int, wake: int) -> int:
    """Wait for the agent's end, or the host's word; returns the agent's wait status."""
    status: int | None = None
    deadline: float | None = None  # (the host is gone: the agent's grace ends then)
    watching = [control, wake]
    while status is None:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
        try:
            ready, _, _ = select.select(watching, [], [], timeout)
        except InterruptedError:
            ready = []
        if wake in ready:
            try:
                os.read(wake, 512)
            except BlockingIOError:
                pass
        status = _reap(agent)
        if status is not None:
            break
        if control in ready:
            try:
                word = os.read(control, 64)
            except OSError:
                word = b""
            if b"k" in word:
                _kill_all()
            elif not word:
                watching.remove(control)
                _signal_group(signal.SIGTERM)
                deadline = time.monotonic() + TERM_GRACE_S
        if deadline is not None and time.monotonic() >= deadline:
            _kill_all()
            deadline = None
    return status


def _reap(agent: int) -> int | None:
    """Reap every child that ended (orphans handed over too); the agent's status."""
    found: int | None = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == agent:
            found = status


def _end_tree() -> None:
    """Kill what the agent left running (all of it is below the watchdog) and reap it."""
    for _ in range(200):
        killed = _kill_all()
        if killed:
            time.sleep(0.005)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            pass
        if not killed:
            return


def _kill_all() -> bool:
    """SIGKILL every process below the watchdog, and in its session, parents first (a
    shell killed after its child would exit with 137 first: the agent's end is the
    kill); whether there was any."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    session: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == b"Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        if int(fields[3]) == me:
            session.append(int(entry))
    order: list[int] = []
    seen = {me}
    todo = [me]
    while todo:  # breadth first: each parent before what it started
        for child in children.get(todo.pop(0), []):
            if child not in seen:
                seen.add(child)
                order.append(child)
                todo.append(child)
    order += [pid for pid in session if pid not in seen]
    for pid in order:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return bool(order)


def _signal_group(signum: int) -> None:
    try:
        os.killpg(os.getpgid(0), signum)
    except (ProcessLookupError, PermissionError):
        pass


def _become_subreaper() -> None:
    """Orphans below the watchdog are handed to it (Linux 3.4+); elsewhere (or if it is
    refused) its session and the tree as it stands are still killed."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass


def _exit_as(status: int) -> int:
    """End as the agent ended: its exit code, or the same signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        except (OSError, ValueError):  # (SIGKILL has no handler to reset)
            pass
        os.kill(os.getpid(), signum)
        return 128 + signum  # (a signal that does not end a process)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as exc:  # (no fork, no /proc: said, and the host sees the code)
        if exc.errno != errno.EINTR:
            os.write(2, f"sisyphus watchdog: {exc}\n".encode())
        sys.exit(126)
