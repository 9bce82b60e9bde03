"""The app's shell at 120x40 and 80x24: one list of actions behind the keys, the footer,
the help screen and the palette; titled panes and the layout; forms, help and the
yes/no question fitting the screen; toasts out of the way; the keys (enter on an agent,
j/k/g/G, the confirmation before a wipe or a stop, refusals said instead of sent)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.widget import Widget
from textual.widgets import Button

from sisyphus_tui.stream import open_store
from sisyphus_tui.tui.app import KeysFooter, SisyphusApp
from sisyphus_tui.tui.commands import ACTIONS
from sisyphus_tui.tui.screens.modals import ConfirmScreen, HelpScreen, InjectForm, SpawnForm
from sisyphus_tui.tui.screens.transcript import TranscriptScreen
from sisyphus_tui.tui.widgets.event_stream import EventStream
from sisyphus_tui.tui.widgets.panes import AgentsTable, LedgerView
from tests.tui.test_app import app_for, controls, settle, until

SIZES = [(120, 40), (80, 24)]
PANE_TITLES = ["[1] agents", "[2] stream", "[3] ledger", "[4] inbox"]


def screen_lines(app: SisyphusApp) -> list[str]:
    """What the terminal shows, line by line."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def messages(app: SisyphusApp) -> list[str]:
    return [n.message for n in app._notifications]


def shown_in_full(app: SisyphusApp, widget: Widget) -> bool:
    """Every cell of ``widget`` is on the screen (none cut by its edge)."""
    region = widget.region
    return (region.width > 0 and region.height > 0 and region.x >= 0 and region.y >= 0
            and region.right <= app.size.width and region.bottom <= app.size.height)


# -- one list of actions ----------------------------------------------------------------


async def test_every_action_is_bound_in_the_help_and_in_the_palette_first(
        log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        bound = {(b.key, b.action) for bs in app._bindings.key_to_bindings.values()
                 for b in bs}
        for action in ACTIONS:
            for key in filter(None, action.keys.split(",")):
                if action.action:
                    assert (key, action.action) in bound, action
        await pilot.press("question_mark")
        help_text = str(app.screen.query_one("#help Static").render())
        for action in ACTIONS:
            if action.help:
                assert action.help in help_text, action
        # The stream's own keys come from its bindings, not a copy.
        assert "in the stream" in help_text
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette)
                    and app.screen.query_one(CommandList).option_count > 0)
        options = app.screen.query_one(CommandList)
        ours = [a for a in ACTIONS if a.title and a.action]

        def prompts() -> list[str]:
            return [str(options.get_option_at_index(i).prompt)
                    for i in range(options.option_count)]

        # Both providers have answered: every one of the app's titles and a built-in.
        await until(pilot, lambda: all(any(p.startswith(a.title) for p in prompts())
                                       for a in ours)
                    and any("Quit the application" in p for p in prompts()))
        shown = prompts()
        assert len(shown) > len(ours)
        first = shown[:len(ours)]  # the app's actions first, each one, in their order
        for prompt, action in zip(first, ours, strict=True):
            assert prompt.startswith(action.title), (prompt, action)
            if action.keys:
                assert f"key: {action.shown_key}" in prompt, (prompt, action)
        assert any("Quit the application" in p for p in shown[len(ours):])
        # Chosen in the palette, an action runs as its key does.
        await pilot.press(*"show every key", "enter")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))


# -- the footer ------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_the_footer_shows_whole_keys_only_with_the_pane_keys(
        log: Path, size: tuple[int, int]) -> None:
    app = app_for(log)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        footer = app.query_one(KeysFooter)
        await until(pilot, lambda: "1-4 panes" in screen_lines(app)[-1])
        line = screen_lines(app)[-1]
        keys_part, bar, palette = line.partition("▏")
        assert bar and palette.strip() == "^p palette", line
        # Every word is a whole key or a whole label: nothing cut under the palette key.
        words = {w for b in app.screen.active_bindings.values() if b.binding.show
                 for w in (app.get_key_display(b.binding) + " " + b.binding.description)
                 .split()}
        assert set(keys_part.split()) <= words, (set(keys_part.split()) - words, line)
        for needed in ("tab next", "1-4 panes", "w wipe", "a answer", "? help", "q quit"):
            assert needed in keys_part, (needed, line)
        palette_key = footer.query_one(".-command-palette")
        for key in footer.query("FooterKey"):
            if key is not palette_key:
                assert key.region.right <= palette_key.region.x, key


# -- panes ---------------------------------------------------------------------------


async def test_the_panes_are_titled_and_laid_out_at_120x40(log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        text = "\n".join(screen_lines(app))
        for title in PANE_TITLES:
            assert title in text
        agents = app.query_one("#agents").region.width
        stream = app.query_one("#stream").region.width
        ledger = app.query_one("#ledger-pane").region.width
        assert 32 <= agents <= 36 and 26 <= ledger <= 30  # 34 and 28: the stream gets the room
        assert stream > agents and stream > ledger
        assert agents + stream + ledger == 120
        assert app.query_one(AgentsTable).virtual_size.width <= app.query_one(
            AgentsTable).scrollable_content_region.width  # no sideways scroll


async def test_at_80x24_the_title_says_which_pane_shows_and_tab_moves_on(
        log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)

        def shown() -> list[str]:
            text = "\n".join(screen_lines(app))
            return [t for t in PANE_TITLES if t in text]

        assert shown() == ["[2] stream"]
        for expected in ("[3] ledger", "[4] inbox", "[1] agents", "[2] stream"):
            await pilot.press("tab")
            await until(pilot, lambda e=expected: shown() == [e])
        await pilot.press("shift+tab")
        await until(pilot, lambda: shown() == ["[1] agents"])
        await pilot.press("3")
        await until(pilot, lambda: shown() == ["[3] ledger"])


# -- modals fit ----------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_the_forms_and_the_question_fit_with_their_buttons(
        log: Path, size: tuple[int, int]) -> None:
    app = app_for(log)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key, screen_type in (("s", SpawnForm), ("i", InjectForm)):
            await pilot.press(key)
            await until(pilot, lambda t=screen_type: isinstance(app.screen, t))
            await pilot.pause(0.1)
            buttons = list(app.screen.query(Button))
            assert len(buttons) == 2
            assert all(shown_in_full(app, b) for b in buttons), [b.region for b in buttons]
            text = "\n".join(screen_lines(app))
            assert "Cancel" in text
            await pilot.press("escape")
        await pilot.press("1", "w")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.1)
        assert all(shown_in_full(app, b) for b in app.screen.query(Button))
        assert "Wipe executor's context?" in "\n".join(screen_lines(app))
        await pilot.press("n")


@pytest.mark.parametrize("size", SIZES)
async def test_the_help_screen_fits_or_scrolls_to_its_last_line(
        log: Path, size: tuple[int, int]) -> None:
    app = app_for(log)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_box = app.screen.query_one("#help")
        await pilot.pause(0.1)
        assert shown_in_full(app, help_box)
        last = str(help_box.query_one("Static").render()).rstrip().splitlines()[-1]
        for _ in range(40):
            await pilot.press("j")
        await pilot.pause(0.1)
        assert last.strip() in "\n".join(screen_lines(app))


# -- toasts --------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_toasts_are_short_and_leave_the_inbox_and_footer_alone(
        log: Path, size: tuple[int, int]) -> None:
    app = app_for(log)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(pilot)
        app.notify("x[/] a toast that says something " * 3, timeout=60)
        await until(pilot, lambda: len(app.screen.query("Toast")) == 1)
        await pilot.pause(0.2)
        toast = app.screen.query_one("Toast")
        assert all(n.timeout <= 8 for n in app._notifications)
        inbox = app.query_one("#inbox-pane").region
        footer = app.query_one(KeysFooter).region
        status = app.query_one("#status").region
        assert toast.region.height > 0
        if size == (120, 40):
            assert not toast.region.overlaps(inbox)
        # Below the status line and a banner, clear of the footer, at the right.
        assert toast.region.y >= status.bottom + 1 and toast.region.right <= size[0]
        assert toast.region.width <= size[0] // 2 and toast.region.right >= size[0] - 2
        assert not toast.region.overlaps(footer)
        assert "x[/] a toast" in str(toast.render())  # shown literally


# -- keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_e_on_an_agent_shows_its_events_and_enter_its_transcript(
        log: Path, size: tuple[int, int]) -> None:
    app = app_for(log)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("1")
        table = app.query_one(AgentsTable)
        await until(pilot, lambda: table.selected is not None)
        agent = table.selected
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TranscriptScreen))
        assert isinstance(app.screen, TranscriptScreen) and app.screen.agent == agent
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TranscriptScreen))
        assert table.has_focus
        await pilot.press("e")
        stream = app.query_one(EventStream)
        await until(pilot, lambda: stream.filter.agent == agent)
        assert stream.total > 0
        if size == (80, 24):
            assert stream.has_focus  # the one pane shown is the one that shows them
        assert f"agent:{agent}" in screen_lines(app)[0]


async def test_j_k_g_G_move_in_the_ledger_and_the_stream(log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        ledger = app.query_one(LedgerView)
        await pilot.press("3")
        await until(pilot, lambda: ledger.virtual_size.height > ledger.size.height)
        await pilot.press("j", "j")
        assert ledger.scroll_offset.y == 2
        await pilot.press("k")
        assert ledger.scroll_offset.y == 1
        await pilot.press("G")
        await until(pilot, lambda: ledger.scroll_offset.y == ledger.max_scroll_y > 1)
        await pilot.press("g")
        await until(pilot, lambda: ledger.scroll_offset.y == 0)
        stream = app.query_one(EventStream)
        await pilot.press("2", "g")
        await until(pilot, lambda: stream.cursor_row == 0)
        await pilot.press("j")
        assert stream.cursor_row == 1
        await pilot.press("G")
        assert stream.cursor_row == stream.total - 1 and stream.following


@pytest.mark.parametrize("size", SIZES)
async def test_a_wipe_is_asked_first_and_its_request_said_with_its_offset(
        log: Path, size: tuple[int, int]) -> None:
    app = app_for(log)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("1")
        assert app.query_one(AgentsTable).selected == "executor"
        for no in ("n", "escape"):
            await pilot.press("w")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press(no)
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert controls(log) == []
        for yes in ("y", "enter"):
            await pilot.press("w")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press(yes)
            await until(pilot, lambda y=yes: len(controls(log)) == ("y", "enter").index(y) + 1)
        assert [c["action"] for c in controls(log)] == ["wipe", "wipe"]
        async with await open_store(log) as store:
            offsets = [e.offset for e in (await store.read(1, 100, types=["CONTROL"])).events]
        await until(pilot, lambda: f"wipe of executor requested (offset {offsets[-1]})"
                    in messages(app))
        assert f"wipe of executor requested (offset {offsets[0]})" in messages(app)


async def test_requests_the_run_would_not_carry_out_are_said_not_sent(log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("1", "r")  # the executor works: it was never wiped
        await until(pilot, lambda: any("executor is not wiped" in m and "nothing to resume"
                                       in m for m in messages(app)))
        async with await open_store(log) as store:
            # Every gate passed, as a run that is done has them: none is left to approve.
            for gate in ("tests", "signoff"):
                await store.append("GATE_RESULT", {"gate": gate, "passed": True},
                                   actor="kernel")
            await store.append("PHASE", {"phase": "done", "reason": "all gates passed"},
                               actor="kernel")
        await until(pilot, lambda: app.ledger.phase == "done")
        await pilot.press("w")
        await until(pilot, lambda: any(re.search("the run is done: nothing will carry out "
                                                 "a wipe", m) for m in messages(app)))
        assert not isinstance(app.screen, ConfirmScreen)  # nothing to ask about
        await pilot.press("p")
        await until(pilot, lambda: any("nothing will carry out a pause" in m
                                       for m in messages(app)))
        await pilot.press("a")  # the standard refusal, not "no human gate is waiting"
        await until(pilot, lambda: any("the run is done: nothing will carry out an approve"
                                       in m for m in messages(app)))
        assert not any("no human gate" in m for m in messages(app))
        assert controls(log) == []


async def test_stop_from_the_palette_is_asked_first(log: Path) -> None:
    app = app_for(log)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"stop the swarm", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: [c["action"] for c in controls(log)] == ["stop"])
        await until(pilot, lambda: any(m.startswith("stop of the host requested (offset ")
                                       for m in messages(app)))
