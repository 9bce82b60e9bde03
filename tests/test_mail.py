"""SwarmMail: registration, inboxes from the durable cursor, ack with produced events."""

from __future__ import annotations

import pytest

from sisyphus_tui.errors import SisyphusError, UnknownAgent
from sisyphus_tui.mail import InvalidAgentName, SwarmMail
from sisyphus_tui.stream import EventStore
from tests.conftest import StoreFactory


async def test_init_is_idempotent_and_lists_agents(store: EventStore) -> None:
    mail = SwarmMail(store)
    first = await mail.init("executor", role="executor")
    assert await mail.init("executor", role="executor") == first
    await mail.init("planner", role="planner")
    assert await mail.agents() == {"executor": "executor", "planner": "planner"}
    assert await store.head() == 2


async def test_sending_to_an_unregistered_agent_names_it(store: EventStore) -> None:
    mail = SwarmMail(store)
    with pytest.raises(UnknownAgent, match="'ghost'"):
        await mail.send("ghost", "boo")
    with pytest.raises(UnknownAgent, match="'ghost'"):
        await mail.inbox("ghost")
    with pytest.raises(UnknownAgent, match="'ghost'"):
        await mail.ack("ghost", 0)
    assert await store.head() == 0


@pytest.mark.parametrize("name", ["", "has space", "-dash", "a" * 65, "esc\x1b[2J", "[bold]"])
async def test_agent_names_are_checked(store: EventStore, name: str) -> None:
    with pytest.raises(InvalidAgentName, match="invalid agent name"):
        await SwarmMail(store).init(name)


async def test_inbox_resumes_from_the_durable_cursor(open_backend: StoreFactory) -> None:
    store = await open_backend()
    mail = SwarmMail(store)
    await mail.init("executor")
    await mail.init("planner")
    sent = [await mail.send("executor", f"job {i}", sender="kernel") for i in range(4)]
    await mail.send("planner", "not for the executor")

    inbox = await mail.inbox("executor")
    assert [e.payload["text"] for e in inbox.events] == [f"job {i}" for i in range(4)]
    assert all(e.actor == "kernel" and e.type == "MESSAGE" for e in inbox.events)

    # Handle two messages; each result is committed with the cursor advance.
    for offset in sent[:2]:
        await mail.ack("executor", offset, events=[
            {"type": "x.result", "payload": {"of": offset}, "actor": "executor"}])
    await store.close()

    mail = SwarmMail(await open_backend())
    assert await mail.cursor("executor") == sent[1]
    pending = await mail.inbox("executor")
    assert [e.offset for e in pending.events] == sent[2:]
    everything = await mail.inbox("executor", from_offset=0)
    assert [e.offset for e in everything.events] == sent


async def test_message_payloads(store: EventStore) -> None:
    mail = SwarmMail(store)
    await mail.init("executor")
    offset = await mail.send("executor", {"kind": "task", "data": {"step": 3}, "text": "go"})
    (event,) = (await mail.inbox("executor")).events
    assert event.offset == offset
    assert event.payload == {"text": "go", "kind": "task", "data": {"step": 3}, "reply_to": None}
    with pytest.raises(SisyphusError, match="kind"):
        await mail.send("executor", {"kind": 5})


async def test_ack_cannot_point_past_the_log(store: EventStore) -> None:
    mail = SwarmMail(store)
    await mail.init("executor")
    with pytest.raises(SisyphusError, match="the log ends at 1"):
        await mail.ack("executor", 99)
    assert await mail.cursor("executor") == 0
