"""The host lease: held by one process, named to the others, gone with its holder
(kill -9 included), never taken through a link or from another user's file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sisyphus_tui.errors import DatabaseUnsafe, HostBusy
from sisyphus_tui.stream import open_store
from sisyphus_tui.stream.lease import lease_path

HOLDER = """
import asyncio, sys
from sisyphus_tui.stream import open_store

async def main():
    store = await open_store(sys.argv[1])
    await store.host_lease()
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_holder_leaves_no_lease_behind(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    # A real second process (its start blocks this loop for a moment: nothing else runs).
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)],  # noqa: ASYNC220
                              stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        async with await open_store(db) as store:
            host = store.current_host()
            assert host is not None and host.pid == holder.pid
            with pytest.raises(HostBusy, match=f"pid {holder.pid} on .* since "):
                await store.host_lease()
            holder.send_signal(signal.SIGKILL)
            holder.wait(30)
            assert store.current_host() is None
            lease = await store.host_lease()
            assert store.current_host() is not None
            lease.release()
            assert store.current_host() is None
    finally:
        holder.kill()
        holder.wait(30)


async def test_a_lease_file_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    target = tmp_path / "theirs"
    target.write_text("")
    async with await open_store(db) as store:
        lease_path(db).symlink_to(target)
        with pytest.raises(DatabaseUnsafe, match="lease file is a symbolic link"):
            await store.host_lease()
        assert store.current_host() is None
    assert target.read_text() == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
async def test_another_users_lease_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    async with await open_store(db) as store:
        path = lease_path(db)
        path.write_text("")
        os.chown(path, 65534, 65534)
        with pytest.raises(DatabaseUnsafe, match="owned by uid 65534, not you"):
            await store.host_lease()
