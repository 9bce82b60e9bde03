"""The host lease: one process hosts a swarm (runs its actors) at a time.

On SQLite it is an advisory lock (``flock``) on a file beside the database,
``swarm.db-host``, which also says who holds it (pid, host, since, command). The
kernel drops the lock when the holder ends in any way, ``kill -9`` included, so a
lease never outlives its host and needs no heartbeat; and since SQLite's WAL needs
every process on one machine, a lock on that machine is enough. Viewers and the CLI
never take it: they may ask who holds it.

On PostgreSQL the same contract is a session-level advisory lock
(``pg_try_advisory_lock``) held by the host's connection for as long as it runs, the
holder's description kept in a row beside it; the server drops it with the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sisyphus_tui.errors import DatabaseError, DatabaseUnsafe, HostBusy

LEASE_SUFFIX = "-host"
# A viewer asking who holds the lease takes a shared lock for an instant; a host that
# starts at that instant tries again for this long before it is refused.
ACQUIRE_PATIENCE_S = 0.5


@dataclass(frozen=True)
class HostInfo:
    """Who hosts a swarm."""

    pid: int | None
    host: str
    since: float | None
    command: str = ""

    def describe(self) -> str:
        """``pid 123 on build-1 since 12:34:56``."""
        try:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) \
                if self.since else "an unknown time"
        except (OverflowError, OSError, ValueError):  # a file another program wrote
            since = "an unknown time"
        return f"pid {self.pid if self.pid is not None else '?'} on {self.host} since {since}"


def lease_path(db: Path) -> Path:
    """The lease file of the database at ``db``."""
    return db.with_name(db.name + LEASE_SUFFIX)


def _open(path: Path, flags: int) -> int:
    """Open the lease file: never through a link, never another user's (who could hold
    the lock for ever, or read who hosts)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatabaseUnsafe(f"the host lease file is a symbolic link: {path}") from None
        raise
    owner = os.fstat(fd).st_uid
    if owner != os.geteuid():
        os.close(fd)
        raise DatabaseUnsafe(f"the host lease file {path} is owned by uid {owner}, not you")
    return fd


def _read_info(fd: int) -> HostInfo:
    try:
        raw = os.pread(fd, 4096, 0)
        data: dict[str, Any] = json.loads(raw.decode("utf-8")) if raw else {}
    except (OSError, ValueError):
        data = {}
    pid = data.get("pid")
    since = data.get("since")
    return HostInfo(pid if isinstance(pid, int) else None, str(data.get("host", "?")),
                    float(since) if isinstance(since, int | float) else None,
                    str(data.get("command", "")))


class HostLease:
    """A held lease; ``release()`` (or the process's end) lets another host take it."""

    def __init__(self, path: Path, fd: int, info: HostInfo) -> None:
        self.path = path
        self.info = info
        self._fd: int | None = fd

    @classmethod
    async def acquire(cls, db: Path) -> HostLease:
        """Take the lease of the database at ``db``, or raise HostBusy naming its holder."""
        path = lease_path(db)
        try:
            fd = _open(path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise DatabaseError(f"cannot open the host lease {path}: {exc.strerror}") from None
        deadline = time.monotonic() + ACQUIRE_PATIENCE_S
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = _read_info(fd)
                        raise HostBusy(
                            f"another sisyphus already hosts this swarm: {holder.describe()}; "
                            f"watch it with `sisyphus tui --db {db}`, or stop it first"
                        ) from None
                    await asyncio.sleep(0.02)
        except BaseException:
            os.close(fd)
            raise
        info = HostInfo(os.getpid(), socket.gethostname(), time.time(),
                        " ".join(os.path.basename(a) if i == 0 else a
                                 for i, a in enumerate(sys.argv))[:200])
        # Who holds it is only said, not needed: a full disk does not stop the host.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info.__dict__).encode("utf-8"), 0)
        return cls(path, fd, info)

    def release(self) -> None:
        """Give the lease up (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # before the unlock: no reader sees a stale holder
        os.close(fd)

    async def __aenter__(self) -> HostLease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def current_host(db: Path) -> HostInfo | None:
    """Who hosts the swarm of the database at ``db`` now, or None if nobody does."""
    path = lease_path(db)
    try:
        fd = _open(path, os.O_RDONLY)
    except (OSError, DatabaseError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
