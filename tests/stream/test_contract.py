"""The store contract: every backend must pass this suite unchanged."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from sisyphus_tui.errors import InvalidPayload, UnknownEventType
from sisyphus_tui.events import TaskInit
from sisyphus_tui.stream import EventStore, NewEvent
from tests.conftest import StoreFactory


async def test_offsets_start_at_one_and_read_back_in_order(store: EventStore) -> None:
    assert await store.head() == 0
    first = await store.append("TASK_INIT", {"goal": "refactor"}, actor="kernel")
    second = await store.append("x.note", {"n": 2}, actor="tool", to="executor", key="k")
    assert (first, second) == (1, 2)
    assert await store.head() == 2

    page = await store.read()
    assert [e.offset for e in page.events] == [1, 2]
    assert page.next_offset == 3
    task, note = page.events
    assert (task.type, task.actor, task.to, task.key) == ("TASK_INIT", "kernel", None, None)
    assert task.payload == {"goal": "refactor", "spec": {}}
    assert task.model() == TaskInit(goal="refactor")
    assert (note.type, note.to, note.key, note.payload) == ("x.note", "executor", "k", {"n": 2})
    assert task.ts <= note.ts


async def test_keyset_paging_visits_every_event_once(store: EventStore) -> None:
    offsets = await store.append_many(
        {"type": "x.n", "payload": {"i": i}, "to": "a" if i % 3 == 0 else "b"}
        for i in range(2500)
    )
    assert offsets == list(range(1, 2501))

    seen: list[int] = []
    cursor = 0
    while True:
        page = await store.read(cursor, 700)
        if not page.events:
            break
        seen.extend(e.payload["i"] for e in page.events)
        cursor = page.next_offset
    assert seen == list(range(2500))

    # from_offset is inclusive; the filters page by the same keyset.
    assert (await store.read(1000, 1)).events[0].offset == 1000
    to_a = await store.read(0, 5000, to="a")
    assert [e.payload["i"] for e in to_a.events] == list(range(0, 2500, 3))
    late = await store.read(2400, 5000, to="a")
    assert all(e.offset >= 2400 and e.to == "a" for e in late.events)


async def test_filters_by_type_and_actor(store: EventStore) -> None:
    await store.append("x.a", {}, actor="planner")
    await store.append("x.b", {}, actor="executor")
    await store.append("x.c", {}, actor="planner")
    page = await store.read(types=["x.a", "x.c"])
    assert [e.type for e in page.events] == ["x.a", "x.c"]
    page = await store.read(actor="executor")
    assert [e.type for e in page.events] == ["x.b"]


async def test_an_existing_key_returns_its_offset_and_writes_nothing(store: EventStore) -> None:
    first = await store.append("x.once", {"v": 1}, key="step-1")
    await store.append("x.other", {})
    again = await store.append("x.once", {"v": 2}, key="step-1")
    assert again == first
    assert await store.head() == 2
    assert (await store.read(first, 1)).events[0].payload == {"v": 1}
    assert await store.find_key("step-1") == first
    assert await store.find_key("nope") is None


async def test_concurrent_appends_of_one_key_write_it_once(store: EventStore) -> None:
    results = await asyncio.gather(
        *(store.append("x.once", {"i": i}, key="same") for i in range(20)),
        *(store.append("x.free", {"i": i}) for i in range(20)),
    )
    assert len(set(results[:20])) == 1
    assert len(set(results[20:])) == 20
    assert await store.head() == 21


async def test_append_many_mixes_new_and_existing_keys(store: EventStore) -> None:
    old = await store.append("x.k", {}, key="old")
    offsets = await store.append_many(
        [
            {"type": "x.k", "key": "new1"},
            {"type": "x.k", "key": "old"},
            {"type": "x.k", "key": "new1"},
            {"type": "x.k"},
        ]
    )
    assert offsets == [2, old, 2, 3]
    assert await store.head() == 3


async def test_append_many_is_all_or_nothing_on_invalid_input(store: EventStore) -> None:
    await store.append("x.before", {})
    with pytest.raises(InvalidPayload, match="goal"):
        await store.append_many(
            [{"type": "x.ok", "payload": {}}, {"type": "TASK_INIT", "payload": {}}]
        )
    assert await store.head() == 1


async def test_tracking_transaction_advances_the_cursor_with_the_events(
    store: EventStore,
) -> None:
    message = await store.append("x.job", {"n": 1}, to="worker")
    produced = await store.append_many(
        [{"type": "x.result", "payload": {"of": message}}], cursor=("worker", message)
    )
    assert produced == [message + 1]
    assert await store.cursor("worker") == message
    # A cursor never moves backwards, and may advance with no events at all.
    await store.append_many([], cursor=("worker", 0))
    assert await store.cursor("worker") == message
    await store.append_many([], cursor=("worker", produced[0]))
    assert await store.cursors() == {"worker": produced[0]}


async def test_cursor_and_log_survive_reopening(open_backend: StoreFactory) -> None:
    store = await open_backend()
    offset = await store.append("x.job", {}, to="worker")
    await store.append_many([], cursor=("worker", offset))
    await store.close()

    reopened = await open_backend()
    assert await reopened.cursor("worker") == offset
    assert await reopened.cursor("someone-else") == 0
    assert await reopened.head() == offset
    assert await reopened.append("x.after", {}) == offset + 1


@pytest.mark.parametrize(
    ("event_type", "payload", "message"),
    [
        ("TASK_INIT", {}, "invalid TASK_INIT payload: goal: Field required"),
        ("TASK_INIT", {"goal": ""}, "goal: String should have at least 1 character"),
        ("TASK_INIT", {"goal": "g", "gaol": 1}, "gaol: Extra inputs are not permitted"),
        ("PLAN_STEP", {"plan_id": "p", "step": 0, "title": "t"}, "step: Input should be"),
        ("REVIEW", {"plan_id": "p", "verdict": "maybe"}, "verdict: Input should be"),
        ("x.free", [1, 2], "must be a JSON object, not list"),
        ("x.free", {"f": float("nan")}, "invalid x.free payload"),
    ],
)
async def test_invalid_payloads_name_the_field(
    store: EventStore, event_type: str, payload: object, message: str
) -> None:
    with pytest.raises(InvalidPayload, match=message.replace("(", r"\(")):
        await store.append(event_type, payload)  # type: ignore[arg-type]
    assert await store.head() == 0


@pytest.mark.parametrize("event_type", ["FOO", "task_init", "x.", ""])
async def test_unregistered_types_need_the_x_prefix(store: EventStore, event_type: str) -> None:
    with pytest.raises(UnknownEventType, match="x\\."):
        await store.append(event_type, {})
    assert await store.head() == 0


async def test_payload_may_be_a_model(store: EventStore) -> None:
    offset = await store.append("TASK_INIT", TaskInit(goal="g", spec={"gates": []}))
    assert (await store.read(offset, 1)).events[0].payload == {"goal": "g", "spec": {"gates": []}}
    event = NewEvent.of("TASK_INIT", TaskInit(goal="g"))
    assert event.payload_json == '{"goal":"g","spec":{}}'
    # A value JSON has no type for, in a free-form field, is written as pydantic's JSON.
    where = NewEvent.of("MESSAGE", {"data": {"where": Path("/tmp/ws")}})
    assert '"data":{"where":"/tmp/ws"}' in where.payload_json


async def test_tail_yields_the_past_then_live_events(store: EventStore) -> None:
    for i in range(3):
        await store.append("x.n", {"i": i})
    received: list[int] = []
    five = asyncio.Event()

    async def follow() -> None:
        async for event in store.tail(2):
            received.append(event.payload["i"])
            if len(received) == 5:
                five.set()
                return

    task = asyncio.create_task(follow())
    for i in range(3, 6):
        await store.append("x.n", {"i": i})
    await asyncio.wait_for(five.wait(), 10)
    await task
    assert received == [1, 2, 3, 4, 5]


async def test_tail_with_a_filter_sees_only_its_events(store: EventStore) -> None:
    got: list[str] = []

    async def follow() -> None:
        async for event in store.tail(0, to="executor"):
            got.append(event.payload["text"])
            if len(got) == 2:
                return

    task = asyncio.create_task(follow())
    await store.append("MESSAGE", {"text": "one"}, to="executor")
    await store.append("MESSAGE", {"text": "not mine"}, to="planner")
    await store.append("MESSAGE", {"text": "two"}, to="executor")
    await asyncio.wait_for(task, 10)
    assert got == ["one", "two"]


async def test_last_finds_the_newest_match(store: EventStore) -> None:
    assert await store.last(types=["CHECKPOINT"]) is None
    await store.append("CHECKPOINT", {"agent": "a", "step": 1}, actor="a")
    mine = await store.append("CHECKPOINT", {"agent": "b", "step": 1}, actor="b")
    await store.append("CHECKPOINT", {"agent": "a", "step": 2}, actor="a")
    await store.append("x.other", {}, actor="b")
    found = await store.last(types=["CHECKPOINT"], actor="b")
    assert found is not None and found.offset == mine
    newest = await store.last()
    assert newest is not None and newest.type == "x.other"


async def test_one_append_many_larger_than_a_statement(store: EventStore) -> None:
    offsets = await store.append_many({"type": "x.n", "payload": {"i": i}} for i in range(9000))
    assert offsets == list(range(1, 9001))
    page = await store.read(8999, 10)
    assert [e.payload["i"] for e in page.events] == [8998, 8999]


async def test_read_offsets_and_match_offsets(store: EventStore) -> None:
    await store.append("x.a", {"text": "Hello World"}, actor="planner")
    await store.append("MESSAGE", {"text": "to you"}, actor="kernel", to="executor")
    await store.append("x.b", {"n": 1}, actor="executor")
    await store.append("x.a", {"text": "50% done_"}, actor="kernel")
    assert [e.offset for e in await store.read_offsets([4, 1, 3])] == [1, 3, 4]
    assert await store.read_offsets([]) == []
    assert await store.match_offsets(agent="executor") == [2, 3]
    assert await store.match_offsets(types=["x.a"]) == [1, 4]
    assert await store.match_offsets(text="WORLD") == [1]
    assert await store.match_offsets(text="%") == [4], "the text is literal, not a pattern"
    assert await store.match_offsets(text="done_") == [4]
    assert await store.match_offsets(2, text="x.") == [3, 4]


async def test_payloads_round_trip_exactly(store: EventStore) -> None:
    # The integer limits are exact: the reader (orjson) holds both ends as integers.
    payload = {"big": 2**64 - 1, "neg": -(2**63), "float": 0.1, "text": "é\\u2028\x00😀",
               "n": None, "nested": {"list": [1, 2.5, "three", True]}}
    offset = await store.append("x.exact", payload)
    assert (await store.read(offset, 1)).events[0].payload == payload
    assert (await store.read_offsets([offset]))[0].payload == payload
    last = await store.last(types=["x.exact"])
    assert last is not None and last.payload == payload


def nested(depth: int) -> dict[str, object]:
    """A payload ``depth`` levels deep (the payload itself is level 1)."""
    payload: dict[str, object] = {}
    for _ in range(depth - 1):
        payload = {"a": payload}
    return payload


@pytest.mark.parametrize(
    ("event_type", "payload", "message"),
    [
        ("x.text", {"t": "lone \ud800 here"}, "t: lone surrogate '\\ud800' at index 5"),
        ("MESSAGE", {"text": "lone \udc00"}, "text: lone surrogate '\\udc00'"),
        ("MESSAGE", {"data": {"list": ["ok", "caf\udce9"]}}, "data.list.1: lone surrogate"),
        ("x.key", {"a": {"caf\udce9": 1}}, "a: key 'caf\\udce9': lone surrogate"),
        ("x.big", {"n": 2**64}, "n: integer out of range"),
        ("x.big", {"n": -(2**63) - 1}, "n: integer out of range"),
        ("x.big", {"n": 10**5000}, "n: integer out of range"),
        ("MESSAGE", {"data": {"n": 2**70}}, "data.n: integer out of range"),
        ("x.deep", nested(65), "nested deeper than 64 levels"),
        ("x.deep", nested(60_000), "nested deeper than 64 levels"),
        ("MESSAGE", {"data": nested(64)}, "nested deeper than 64 levels"),
        # A spec is checked whole, as the kernel reads it.
        ("TASK_INIT", {"goal": "g", "spec": {"gates": [1]}}, "spec.gates.0: Input should be"),
        ("TASK_INIT", {"goal": "g", "spec": {"gates": "abc"}}, "spec.gates: Input should be"),
        ("TASK_INIT", {"goal": "g", "spec": {"gates": [{"name": "a", "argv": 5}]}},
         "spec.gates.0.argv: Input should be"),
        ("MESSAGE", {"data": {"f": float("nan")}}, "data.f: nan is not a JSON number"),
    ],
)
async def test_payloads_beyond_the_logs_limits_are_refused(
    store: EventStore, event_type: str, payload: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidPayload, match=re.escape(message)):
        await store.append(event_type, payload)
    assert await store.head() == 0


async def test_the_nesting_limit_is_64_levels(store: EventStore) -> None:
    offset = await store.append("x.deep", nested(64))
    assert (await store.read(offset, 1)).events[0].payload == nested(64)
    with pytest.raises(InvalidPayload, match="nested deeper than 64 levels"):
        await store.append("x.deep", {"list": [nested(64)]})
    assert await store.head() == offset


@pytest.mark.parametrize("field", ["actor", "to", "key"])
@pytest.mark.parametrize("value", ["caf\udce9", 5, b"bytes"])
async def test_event_fields_must_be_text(store: EventStore, field: str, value: object) -> None:
    with pytest.raises(InvalidPayload, match=f"invalid event: {field} "):
        await store.append("x.n", {}, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload, match="invalid event: type 'x.\\\\udcff'"):
        await store.append("x.\udcff", {})
    assert await store.head() == 0


async def test_one_bad_append_fails_alone_not_its_batch(store: EventStore) -> None:
    """What os.fsdecode gives for Latin-1 bytes, among 50 good appends in one batch."""
    good = [store.append("x.n", {"i": i}, actor="kernel") for i in range(50)]
    bad = store.append("x.n", {"i": -1}, actor="caf\udce9")
    results = await asyncio.gather(*good[:25], bad, *good[25:], return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], InvalidPayload), failures
    assert sorted(r for r in results if isinstance(r, int)) == list(range(1, 51))
    assert await store.head() == 50


@pytest.mark.parametrize("cursor", [("w", 2**63), ("w", -1), ("caf\udce9", 1), ("w", "1")])
async def test_a_bad_cursor_advance_fails_alone(store: EventStore, cursor: object) -> None:
    good = [store.append("x.n", {}) for _ in range(10)]
    bad = store.append_many([{"type": "x.n"}], cursor=cursor)  # type: ignore[arg-type]
    results = await asyncio.gather(bad, *good, return_exceptions=True)
    assert isinstance(results[0], InvalidPayload), results[0]
    assert sorted(results[1:]) == list(range(1, 11))  # type: ignore[type-var]
    assert await store.cursors() == {}


async def test_no_event_is_written_with_the_key_readers_find_for_bit_rot(
        store: EventStore) -> None:
    with pytest.raises(InvalidPayload, match="'_undecodable' is the key readers find"):
        await store.append("x.note", {"_undecodable": "not really"})
    assert await store.head() == 0
