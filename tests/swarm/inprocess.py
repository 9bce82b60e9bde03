"""Run the demo's swarm inside the test's event loop (faster than a subprocess, same code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sisyphus_tui.demo.runner import prepare_demo
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.runtime import Swarm, Trigger
from sisyphus_tui.stream import open_store


async def run_swarm(db: Path, workspace: Path, *, wipes: tuple[str, ...] = (),
                    spec: dict[str, Any] | None = None, speed: float = 0.0,
                    stale_after_s: float = 120.0) -> Ledger:
    """Prepare (or resume) the demo in ``workspace`` and run its swarm to the end."""
    async with await open_store(db) as store:
        await prepare_demo(store, workspace, spec)
        swarm = Swarm(store, workspace, wipes=tuple(Trigger.parse(w) for w in wipes),
                      speed=speed, stale_after_s=stale_after_s)
        return await swarm.run()
