"""The agent-name rule holds for every payload that names an agent and for
Swarm.spawn: a name that is markup or an escape sequence is refused on append, naming
the field, and nothing reaches the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sisyphus_tui.errors import InvalidPayload
from sisyphus_tui.mail import InvalidAgentName
from sisyphus_tui.runtime import Swarm
from sisyphus_tui.stream import open_store

BAD = ["a[/]", "[@click=app.quit]x[/]", "\x1b]2;pwned\x07", "a b", "-a", "a" * 65]


def payloads(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("STATUS_UPDATE", {"agent": name, "state": "working"}),
        ("AGENT_SPAWNED", {"agent": name, "role": "researcher"}),
        ("AGENT_SPAWNED", {"agent": "ok", "role": "researcher", "parent": name}),
        ("AGENT_REGISTERED", {"agent": name}),
        ("AGENT_STOPPED", {"agent": name}),
        ("CONTEXT_WIPED", {"agent": name}),
        ("RESUMED", {"agent": name, "cursor": 0, "reread": 0, "duration_ms": 0}),
        ("CHECKPOINT", {"agent": name}),
        ("AGENT_FAILED", {"agent": name, "error": "e"}),
        ("AGENT_STALE", {"agent": name, "silent_s": 1}),
        ("CONTROL", {"action": "spawn", "agent": name, "skill": "researcher"}),
        ("CONTROL", {"action": "wipe", "agent": name}),
    ]


@pytest.mark.parametrize("name", BAD)
async def test_payloads_naming_an_agent_refuse_a_bad_name(tmp_path: Path, name: str) -> None:
    async with await open_store(tmp_path / "swarm.db") as store:
        for event_type, payload in payloads(name):
            with pytest.raises(InvalidPayload, match=r"(agent|parent): invalid agent name"):
                await store.append(event_type, payload, actor="swarm")
        assert await store.head() == 0
        # The rule refuses only bad names.
        for good in ("executor", "r2", "a.b@c-d_e", "A" * 64):
            for event_type, payload in payloads(good):
                await store.append(event_type, payload, actor="swarm")


@pytest.mark.parametrize("name", BAD)
async def test_spawn_checks_the_name(tmp_path: Path, name: str) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with await open_store(tmp_path / "swarm.db") as store:
        swarm = Swarm(store, workspace)
        with pytest.raises(InvalidAgentName, match="invalid agent name"):
            await swarm.spawn("researcher", name, "look", thinking=None, parent="human")
        with pytest.raises(InvalidAgentName):
            await swarm.skill_agent("researcher", name, "look")
        assert await store.head() == 0
