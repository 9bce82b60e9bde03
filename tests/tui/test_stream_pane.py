"""The stream pane, driven by Pilot at 120x40 and 80x24: rows tell the story (the
headless output's summary, the verdict visible), the selected event is written out
whole, bookkeeping is hidden until ``b`` (the user's filter combined with it),
j/k/g/G move, the payload view shows local time and the payload literally (``r``: the
raw JSON), and the filter finds non-ASCII text in old and new events."""

from __future__ import annotations

import asyncio
import sqlite3
from array import array
from pathlib import Path
from typing import Any

import pytest
from textual.binding import Binding

from sisyphus_tui.narrative import BOOKKEEPING
from sisyphus_tui.stream import EventStore, open_store
from sisyphus_tui.tui import app as app_module
from sisyphus_tui.tui.app import SisyphusApp
from sisyphus_tui.tui.screens.event import EventScreen, local_time
from sisyphus_tui.tui.widgets.event_stream import EventStream, Filter, Offsets
from tests.tui.conftest import NOW
from tests.tui.test_app import until

SIZES = [(120, 40), (80, 24)]
REASON = "precedent #1 says the executor must not touch the schema without a migration"


async def story(store: EventStore) -> dict[str, int]:
    """A run's worth of events, bookkeeping between them; offsets by name."""
    at: dict[str, int] = {}
    for name in ("kernel", "planner", "validator", "executor", "memory-lane"):
        await store.append("AGENT_REGISTERED", {"agent": name, "role": name}, actor=name)
    at["plan"] = await store.append("PLAN_INIT", {"plan_id": "plan-1", "summary": "s",
                                                  "approach": "add a column", "steps": 2},
                                    actor="planner")
    for i in range(30):  # enough bookkeeping to push the story off a short screen
        await store.append("STATUS_UPDATE", {"agent": "executor", "state": "idle",
                                             "detail": f"waiting {i}"}, actor="executor")
        await store.append("CHECKPOINT", {"agent": "executor", "cursor": i}, actor="executor")
    at["memory"] = await store.append("MEMORY_STORED", {"title": "migrations first"},
                                      actor="memory-lane")
    at["note"] = await store.append("MESSAGE", {"kind": "note", "text": "line one\nline two"
                                                "\n[bold red]not markup[/]"},
                                    actor="human", to="executor", key="note-1")
    at["review"] = await store.append("REVIEW", {"plan_id": "plan-1",
                                                 "verdict": "needs_changes",
                                                 "reasons": [REASON]}, actor="validator",
                                      to="planner")
    at["checkpoint"] = await store.append("CHECKPOINT", {"agent": "executor", "cursor": 40},
                                          actor="executor")
    return at


@pytest.fixture
def run_log(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    db = tmp_path / "swarm.db"

    async def build() -> dict[str, int]:
        async with await open_store(db) as store:
            return await story(store)

    return db, asyncio.run(build())


class App(SisyphusApp):
    """The app, its payload view the stream's EventScreen (as the app wires it)."""

    CSS_PATH = str(Path(app_module.__file__).with_name("app.tcss"))  # not next to this

    def on_event_stream_opened(self, message: EventStream.Opened) -> None:
        message.prevent_default()  # the base class's handler is not called as well
        if not isinstance(self.screen, EventScreen):
            self.push_screen(EventScreen(message.event))


def app_for(db: Path) -> SisyphusApp:
    return App(db=db, clock=lambda: NOW)


def lines(stream: EventStream) -> list[str]:
    """The pane's lines as they are drawn."""
    return [stream.render_line(y).text for y in range(stream.size.height)]


def rows(stream: EventStream) -> list[str]:
    """The rows on screen, each from its offset on (offsets are right-aligned)."""
    return [row.lstrip() for row in lines(stream)[: min(stream.list_height, stream.total)]]


def offsets(stream: EventStream) -> list[int]:
    return [stream.row_offset(r) for r in range(stream.total)]


async def opened(pilot: Any, size: tuple[int, int]) -> EventStream:
    stream: EventStream = pilot.app.query_one(EventStream)
    if size[0] < 100:
        await pilot.press("2")  # one pane at a time: the stream
    stream.focus()
    await until(pilot, lambda: stream.scanned.is_set() and stream.total > 0
                and stream.size.height > 0 and "…" not in rows(stream)[-1][:12])
    await pilot.pause()
    return stream


@pytest.mark.parametrize("size", SIZES)
async def test_rows_tell_the_story_and_the_selected_one_is_written_out(
        run_log: tuple[Path, dict[str, int]], size: tuple[int, int]) -> None:
    db, at = run_log
    async with app_for(db).run_test(size=size) as pilot:
        stream = await opened(pilot, size)
        shown = rows(stream)
        last = shown[-1]
        # The headless line's story, the verdict visible; the actor whole.
        assert last.startswith(f"{at['review']} ") and "validator" in last
        assert "review of plan-1: needs_changes" in last, last
        memory = next(r for r in shown if r.startswith(f"{at['memory']} "))
        assert "memory-lane" in memory and "stored" in memory
        # Rich markup and newlines in an agent's text are shown as written, on one line.
        note = next(r for r in shown if r.startswith(f"{at['note']} "))
        assert "to executor: note: line one" in note
        if size[0] >= 100:
            assert "[bold red]not markup[/]" in note or note.endswith("…")
        # The selected (last) row written out: type, actor → recipient, the whole summary.
        detail = "\n".join(lines(stream)[stream.list_height:])
        assert "REVIEW validator → planner" in detail and f"@{at['review']}" in detail
        assert "enter: payload" in detail
        assert "needs_changes" in detail and "migration" in detail, detail
        await pilot.press("k")
        detail = "\n".join(lines(stream)[stream.list_height:])
        assert "MESSAGE human → executor" in detail
        assert "line one … [bold red]not" in " ".join(detail.split()), detail


@pytest.mark.parametrize("size", SIZES)
async def test_bookkeeping_is_hidden_until_b(run_log: tuple[Path, dict[str, int]],
                                             size: tuple[int, int]) -> None:
    db, at = run_log
    async with app_for(db).run_test(size=size) as pilot:
        app: Any = pilot.app
        stream = await opened(pilot, size)
        conn = sqlite3.connect(db)
        types = dict(conn.execute('SELECT "offset", type FROM events').fetchall())
        conn.close()
        story_rows = [o for o, t in sorted(types.items()) if t not in BOOKKEEPING]
        assert offsets(stream) == story_rows
        assert stream.border_subtitle == "b: bookkeeping hidden"
        assert "Bookkeeping" in [b.description for b in stream.BINDINGS
                                 if isinstance(b, Binding)]
        await pilot.press("b")
        await until(pilot, lambda: stream.scanned.is_set() and stream.total == len(types))
        assert offsets(stream) == sorted(types)
        assert rows(stream)[-1].startswith(f"{at['checkpoint']} ")
        assert stream.border_subtitle == "b: bookkeeping shown"
        await pilot.press("b")
        await until(pilot, lambda: stream.scanned.is_set() and stream.total == len(story_rows))
        # The user's filter combines with the hiding; type: names what it shows.
        await stream.apply_filter(Filter.parse("agent:executor"), app.head)
        await until(pilot, lambda: stream.scanned.is_set())
        assert offsets(stream) == [at["note"]]
        await stream.apply_filter(Filter.parse("type:CHECKPOINT"), app.head)
        await until(pilot, lambda: stream.scanned.is_set())
        assert offsets(stream) == [o for o, t in sorted(types.items()) if t == "CHECKPOINT"]
        # New events: the story's rows appear, the bookkeeping's do not.
        await stream.apply_filter(Filter(), app.head)
        await until(pilot, lambda: stream.scanned.is_set())
        async with await open_store(db) as other:
            ckpt = await other.append("CHECKPOINT", {"agent": "executor", "cursor": 99},
                                      actor="executor")
            edit = await other.append("FILE_EDIT", {"path": "db/schema.sql", "step": 1},
                                      actor="executor")
        await until(pilot, lambda: stream.total == len(story_rows) + 1)
        assert offsets(stream)[-1] == edit and ckpt not in offsets(stream)
        await until(pilot, lambda: rows(stream)[-1].startswith(f"{edit} "))
        assert "step 1: edit db/schema.sql" in rows(stream)[-1]


@pytest.mark.parametrize("size", SIZES)
async def test_j_k_g_G_move_the_selection(run_log: tuple[Path, dict[str, int]],
                                          size: tuple[int, int]) -> None:
    db, at = run_log
    async with app_for(db).run_test(size=size) as pilot:
        stream = await opened(pilot, size)
        last = stream.total - 1
        assert stream.cursor_row == last and stream.following
        await pilot.press("k", "k")
        assert stream.cursor_row == last - 2 and not stream.following
        await pilot.press("j")
        assert stream.cursor_row == last - 1
        await pilot.press("g")
        assert stream.cursor_row == 0 and stream.scroll_offset.y == 0
        assert rows(stream)[0].startswith(f"{stream.row_offset(0)} ")
        await pilot.press("G")
        assert stream.cursor_row == last and stream.following
        hidden = {b.key for b in stream.BINDINGS if isinstance(b, Binding) and not b.show}
        assert {"up,k", "down,j", "home,g", "end,G"} <= hidden


@pytest.mark.parametrize("size", SIZES)
async def test_the_payload_view(run_log: tuple[Path, dict[str, int]],
                                size: tuple[int, int]) -> None:
    db, at = run_log
    async with app_for(db).run_test(size=size) as pilot:
        app: Any = pilot.app
        await opened(pilot, size)
        await pilot.press("k")  # the message
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EventScreen))
        screen = app.screen
        assert isinstance(screen, EventScreen)
        await pilot.pause()
        event = screen.event
        text = screen.shown_text
        assert f"@{at['note']} MESSAGE  human → executor" in text
        assert local_time(event.ts) in text and "+0000" in text  # the tests run in UTC
        assert str(event.ts) not in text  # not an epoch float
        assert "key note-1" in text
        # Text shown as written: its newlines as newlines, markup not parsed.
        assert "text:\n  line one\n  line two\n  [bold red]not markup[/]" in text
        view = screen.query_one("#event-view")
        assert view.region.right <= size[0] and view.region.bottom <= size[1]
        await pilot.press("r")
        assert screen.showing_raw and '"ts":' in screen.shown_text
        assert '"key": "note-1"' in screen.shown_text
        await pilot.press("r")
        assert not screen.showing_raw
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, EventScreen))


async def test_a_long_payload_scrolls_at_80x24(tmp_path: Path) -> None:
    db = tmp_path / "swarm.db"
    async with await open_store(db) as store:
        await store.append("TEST_FAIL", {"step": 1, "exit_code": 1, "output_tail": "\n".join(
            f"line {i}" for i in range(80))}, actor="executor")
    async with app_for(db).run_test(size=(80, 24)) as pilot:
        app = pilot.app
        stream = await opened(pilot, (80, 24))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, EventScreen))
        await pilot.pause()
        scroll = app.screen.query_one("#event-scroll")
        assert scroll.max_scroll_y > 0 and scroll.region.bottom <= 24
        await pilot.press("end")
        await until(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y)
        await pilot.press("q")
        await until(pilot, lambda: app.screen.query(EventStream))
        assert stream.total == 1


@pytest.mark.parametrize("size", SIZES)
async def test_the_filter_finds_non_ascii_text(tmp_path: Path, size: tuple[int, int]) -> None:
    db = tmp_path / "swarm.db"
    async with await open_store(db) as store:
        old = [await store.append("x.note", {"text": "Le CAFÉ"}, actor="tool"),
               await store.append("MESSAGE", {"text": "un café"}, actor="human",
                                  to="executor")]
        await store.append("x.note", {"text": "coffee"}, actor="tool")
    async with app_for(db).run_test(size=size) as pilot:
        app: Any = pilot.app
        stream = await opened(pilot, size)
        await pilot.press("slash")
        await pilot.press(*"Café", "enter")
        await until(pilot, lambda: stream.filter.text == "Café" and stream.scanned.is_set())
        assert offsets(stream) == old
        async with await open_store(db) as other:
            new = [await other.append("STATUS_UPDATE", {"agent": "executor", "state": "idle",
                                                        "detail": "au CAFÉ"},
                                      actor="executor"),
                   await other.append("x.note", {"text": "café noir"}, actor="tool"),
                   await other.append("x.note", {"text": "tea"}, actor="tool")]
        # The status update is bookkeeping (hidden); the note is found as it arrives.
        await until(pilot, lambda: app.head == new[-1])
        await until(pilot, lambda: offsets(stream) == [*old, new[1]])
        await pilot.press("b")
        await until(pilot, lambda: stream.scanned.is_set() and stream.total == 4)
        assert offsets(stream) == [*old, *new[:2]]


async def test_a_big_log_opens_on_its_story_and_finds_the_rest_above(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    async with await open_store(db) as store:
        for start in range(0, 6000, 500):
            await store.append_many([
                {"type": "CHECKPOINT" if i % 2 else "x.work", "actor": "executor",
                 "payload": {"agent": "executor", "cursor": i} if i % 2 else {"i": i}}
                for i in range(start, start + 500)])
    async with app_for(db).run_test(size=(120, 40)) as pilot:
        stream = pilot.app.query_one(EventStream)
        # On screen before the scan is over: the newest rows.
        await until(pilot, lambda: stream.total > 0 and rows(stream)
                    and rows(stream)[-1].startswith("5999 "))
        await until(pilot, lambda: stream.scanned.is_set())
        assert stream.total == 3000 and offsets(stream) == list(range(1, 6000, 2))
        assert stream.cursor_row == 2999 and stream.following
        await pilot.press("g")
        assert rows(stream)[0].startswith("1 ")


def test_the_offsets_a_scan_finds_from_the_tail_backwards() -> None:
    rows = Offsets()
    rows.add_older(array("q", [50, 60]))
    rows.add_older(array("q", [10, 30]))
    rows.append(70)
    assert [rows[r] for r in range(len(rows))] == [10, 30, 50, 60, 70] and rows[-1] == 70
    assert rows.rows(1, 4) == [30, 50, 60] and rows.rows(3, 99) == [60, 70]
    assert [rows.row_of(o) for o in (5, 10, 29, 30, 65, 99)] == [-1, 0, 0, 1, 3, 4]
