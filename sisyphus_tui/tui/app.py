"""The sisyphus app: agents (left), the live event stream (centre), the ledger (right),
the selected agent's inbox (below), a status line on top with a banner under it while
the run needs you, and the keys that fit in the footer.

The app reads the log like any other process: it tails the store, folds the ledger,
and coalesces what arrives into a bounded refresh rate. Every action it offers is a
control event appended to the log, so it steers a swarm running in this process (the
demo) or in another one (``sisyphus tui --db``) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Input, Static
from textual.widgets._footer import FooterKey
from textual.worker import Worker

from sisyphus_tui.errors import HostFault, SisyphusError
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.mail import SwarmMail
from sisyphus_tui.narrative import headline, resumed_run
from sisyphus_tui.permissions import answer, pending
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event, EventStore
from sisyphus_tui.tui.commands import (
    KNOWN_KEYS,
    NARROW_ACTIONS,
    SisyphusCommands,
    bindings,
    help_rows,
)
from sisyphus_tui.tui.literal import literal
from sisyphus_tui.tui.screens.event import EventScreen
from sisyphus_tui.tui.screens.modals import ConfirmScreen, HelpScreen, InjectForm, SpawnForm
from sisyphus_tui.tui.screens.permission import PermissionAnswer, PermissionScreen
from sisyphus_tui.tui.screens.transcript import TranscriptScreen
from sisyphus_tui.tui.terminal_alert import alert
from sisyphus_tui.tui.widgets.event_stream import EventStream, Filter
from sisyphus_tui.tui.widgets.panes import (
    MAILBOXES,
    AgentsTable,
    InboxPane,
    InboxView,
    LedgerView,
    StatusLine,
    short_cost,
)

MIN_WIDTH, MIN_HEIGHT = 60, 16
COMPACT_WIDTH = 110
REFRESH_HZ = 10.0
LOW_BANDWIDTH_HZ = 2.0
LEDGER_REFRESH_S = 1.0
INBOX_REFRESH_HZ = 4.0
# Full (generation 2) garbage collections: at most every 100 generation-1 ones, not 10.
# Each scans every live object; the app's ~80,000 (Textual's DOM, styles, caches) took
# 40-90 ms per scan about once a second under load, the main source of slow key presses.
GC_THRESHOLD_2 = 100
FIRST_ROWS_WAIT_S = 2.0
SETTLE_AFTER_S = 1.0  # the collection (~50 ms) waits until the first frames are out
HOST_POLL_S = 1.0  # who hosts the swarm: a flock on a file, cheap
TOAST_S = 4.0  # toasts say a thing and go; what lasts is on the screen (banners, panes)
RECOVERY_BANNER_S = 8.0
RECENT_RESUME_S = 60.0  # a host start this long ago is this run coming back: say so
TURN_CLOCK_S = 1.0  # the time on a turn in progress ticks in the agents pane
ALERTS_PER_DRAW = 3  # new requests arriving together: each told, within reason
ANSWERS_KEPT = 200  # the latest permission answers, to say how one was answered
PANES = {1: ("#agents", "[1] agents"), 2: ("#stream", "[2] stream"),
         3: ("#ledger-pane", "[3] ledger"), 4: ("#inbox-pane", "[4] inbox")}
# The footer: compact keys ("s spawn "), the palette's key docked right ("▏^p palette").
FOOTER_KEY_GAP = 2
FOOTER_PALETTE_CELLS = 12


NAVIGATION_KEYS = frozenset({"up", "down", "left", "right", "pageup", "pagedown", "home",
                             "end"})  # the help says "the arrows" once


def _own_keys(pane: type[Widget], known: set[str]) -> list[tuple[str, str]]:
    """A pane's own keys for the help screen, from its bindings: whatever the pane
    binds (the stream's, the agents table's) is listed without a copy here."""
    out = []
    for binding in Binding.make_bindings(pane.BINDINGS):
        key = binding.key_display or binding.key
        if binding.key in NAVIGATION_KEYS or key in known or not binding.description:
            continue
        known.add(key)
        out.append((key, binding.description))
    return out


class KeysFooter(Footer):
    """The footer, showing only the keys that fit whole: Textual's would show them all,
    the last ones cut under the palette's key (``f Follo▏^p palette``). On a narrow
    terminal only the app's essential keys (NARROW_ACTIONS) are candidates."""

    narrow = reactive(False, recompose=True)

    def compose(self) -> ComposeResult:
        widgets = list(super().compose())
        keys = [w for w in widgets
                if isinstance(w, FooterKey) and not w.has_class("-command-palette")]
        # The app's essential keys first, then the others in their order, while they fit.
        room = (self.size.width or self.app.size.width) - FOOTER_PALETTE_CELLS
        kept: set[int] = set()
        for key in sorted(keys, key=lambda k: k.action not in NARROW_ACTIONS):
            cells = cell_len(key.key_display) + cell_len(key.description) + FOOTER_KEY_GAP
            if cells <= room and not (self.narrow and key.action not in NARROW_ACTIONS):
                room -= cells
                kept.add(id(key))
        yield from (w for w in widgets if not isinstance(w, FooterKey)
                    or w.has_class("-command-palette") or id(w) in kept)

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)  # the room changed


class WorkerHandle:
    """An actor run as a Textual worker in its own group, its errors caught per actor
    (the swarm records them as AGENT_FAILED)."""

    def __init__(self, worker: Worker[None]) -> None:
        self.worker = worker

    def cancel(self) -> None:
        self.worker.cancel()

    def done(self) -> bool:
        return self.worker.is_finished

    async def wait(self) -> None:
        with contextlib.suppress(BaseException):
            await self.worker.wait()


class SisyphusApp(App[None]):
    """Watch and steer a swarm through its log."""

    CSS_PATH = "app.tcss"
    TITLE = "sisyphus"
    COMMANDS = App.COMMANDS | {SisyphusCommands}
    NOTIFICATION_TIMEOUT = TOAST_S
    BINDINGS = bindings()  # one list (commands.ACTIONS): keys, footer, help, palette

    def __init__(self, store: EventStore | None = None, *, db: str | Path | None = None,
                 workspace: Path | None = None, host: Any = None,
                 low_bandwidth: bool = False, clock: Any = time.time,
                 env: Mapping[str, str] | None = None) -> None:
        """Show ``store``, or the database at ``db`` (opened, and closed, by the app in
        its own event loop). ``env`` says which terminal this is (os.environ)."""
        super().__init__()
        if (store is None) == (db is None):
            raise ValueError("give the app a store or a db path, not both")
        self._db = db
        self.store: EventStore = store  # type: ignore[assignment]  # set on mount if db
        self.workspace = workspace
        self.host = host  # a Swarm to run inside the app (the demo), or None (attached)
        self.ledger = Ledger()
        self.head = 0
        self.clock = clock
        self.refresh_hz = LOW_BANDWIDTH_HZ if low_bandwidth else REFRESH_HZ
        if low_bandwidth:
            self.animation_level = "none"
        self._new: list[Event] = []
        self._dirty = True
        self._caught_up = False
        self._initial_head = 0
        self._ledger_shown_at = 0.0
        self._ledger_offset_shown = -1
        self._inbox_key: tuple[str | None, int] = (None, -1)
        self._inbox_stale = False
        self._inbox_loaded_at = 0.0
        self._pane = 2
        self.env = os.environ if env is None else env
        # Who runs the swarm: this app (the demo), another process, or nobody (None:
        # not asked yet). Polled: the lease is a flock any process can look at.
        self.hosted: bool | None = True if host is not None else None
        self._needs_shown: tuple[str, ...] = ()
        self._needs_keys: frozenset[str] = frozenset()
        self._recovery_at: int | None = None  # the RUN_RESUMED the banner said
        self._recovery_timer: Timer | None = None  # hides the banner; a new one restarts it
        self.draws = 0  # the panes' redraws so far (each may ring the bell: tests count)
        # The budget a BUDGET event said was exceeded (its payload), until the run is
        # let go on (an unpause): the banner says the run is paused by it.
        self.budget_stop: dict[str, Any] | None = None
        self._answers: dict[tuple[str, str], dict[str, Any]] = {}  # (agent, request)
        self._answered_here: set[tuple[str, str]] = set()  # answered from this app
        self.outcome: Ledger | None = None
        self.host_fault: HostFault | None = None
        self._gc_threshold = gc.get_threshold()

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield Static(id="needs-you", classes="banner")
        yield Static(id="recovered", classes="banner")
        with Horizontal(id="main"):
            yield self._titled(AgentsTable(id="agents"), 1)
            yield self._titled(EventStream(id="stream"), 2)
            yield self._titled(LedgerView("*reading the log...*", id="ledger-pane"), 3)
        with self._titled(InboxPane(id="inbox-pane"), 4):
            yield InboxView(id="inbox")
        yield Input(placeholder="filter: agent:NAME type:TYPE text (enter applies, "
                    "an empty filter shows everything, escape closes)", id="filter")
        yield Static(f"terminal too small: sisyphus needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
                     id="too-small")
        yield KeysFooter(compact=True)

    @staticmethod
    def _titled(widget: Widget, pane: int) -> Widget:
        widget.border_title = PANES[pane][1]  # which pane this is, at 80x24 too
        return widget

    async def on_mount(self) -> None:
        if self._db is not None:
            from sisyphus_tui.stream import open_store

            self.store = await open_store(self._db, create=False)
        self.query_one(EventStream).store = self.store
        self.head = self._initial_head = await self.store.head()
        stream = self.query_one(EventStream)
        stream.set_total(self.head)
        await stream.preload_tail(self.size.height)
        stream.focus()
        self._fit(self.size.width, self.size.height)
        self.run_worker(self._follow(), group="follower", exit_on_error=False)
        if self.host is not None:
            # Each actor is a worker of its own group: exclusive workers of one group
            # would cancel each other, and one actor's error must not end the app.
            self.host.run_actor = lambda coroutine, name: WorkerHandle(self.run_worker(
                coroutine, name=name, group=f"actor:{name}", exit_on_error=False))
            self.run_worker(self._run_host(), group="swarm", exit_on_error=False)
        self.set_interval(1 / self.refresh_hz, self._refresh_panes)
        self.set_interval(TURN_CLOCK_S, self._tick_turns)
        if self.host is None:
            self._poll_host()
            self.set_interval(HOST_POLL_S, self._poll_host)
        self._refresh_panes()  # the first frame has the status line, not the next tick
        gc.set_threshold(self._gc_threshold[0], self._gc_threshold[1], GC_THRESHOLD_2)

    def _settle_memory(self) -> None:
        """Collect, then move what lives on (the DOM, styles, the ledger) out of the
        collector's sight (gc.freeze): later collections scan only newer objects. Done
        a second after the first frame, and again once the log is read."""
        gc.collect()
        gc.freeze()

    async def on_unmount(self) -> None:
        gc.unfreeze()
        gc.set_threshold(*self._gc_threshold)
        if self._db is not None:
            await self.store.close()

    # -- reading the log --------------------------------------------------------

    async def _follow(self) -> None:
        """Fold every event into the ledger; keep the new ones for the stream pane."""
        if self._initial_head == 0:
            self._caught_up = True
            self._dirty = True  # nothing will arrive to say so
        else:
            # The first frame first: the stream pane's rows are read before the fold of
            # a large log starts competing for the reader connection and the CPU.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.query_one(EventStream).first_rows.wait(),
                                       FIRST_ROWS_WAIT_S)
            painted = asyncio.Event()
            self.call_after_refresh(painted.set)  # and on the screen
            await painted.wait()
        self.set_timer(SETTLE_AFTER_S, self._settle_memory)
        async for event in self.store.tail(1):
            self.ledger.apply(event)
            if event.offset > self.head:
                self.head = event.offset
            self._note_supervision(event, live=event.offset > self._initial_head)
            if event.offset > self._initial_head:
                self._new.append(event)
                self._say_refusal(event)
            if event.offset >= self._initial_head and not self._caught_up:
                self._caught_up = True
                self.set_timer(SETTLE_AFTER_S, self._settle_memory)
            self._dirty = True

    def _say_refusal(self, event: Event) -> None:
        """A control request the host answered it could not carry out (one that passed
        the app's own check: the run moved on, another viewer asked first...). Said when
        it arrives: the stream hides status updates, the agents pane the swarm's row."""
        p = event.payload
        if (event.type == "STATUS_UPDATE" and event.actor == "swarm"
                and p.get("agent") == "swarm" and p.get("state") == "refused"):
            self.notify(headline(str(p.get("detail") or "a control request was refused")),
                        title="refused", severity="warning")

    def _note_supervision(self, event: Event, *, live: bool) -> None:
        """What the banner and the permission dialog need beyond the ledger: a budget
        exceeded (until the run is let go on), how each request was answered; a budget
        warning arriving live is a toast."""
        p = event.payload
        if event.type == "PERMISSION_ANSWERED":
            self._answers[(str(p.get("agent")), str(p.get("request")))] = p
            if len(self._answers) > ANSWERS_KEPT:
                del self._answers[next(iter(self._answers))]
        elif event.type == "BUDGET":
            if p.get("level") == "exceeded":
                self.budget_stop = dict(p)
            elif live:
                self.notify(self._budget_text(p, "warn"), title="budget",
                            severity="warning")
        elif event.type == "CONTROL" and p.get("action") == "unpause":
            self.budget_stop = None

    @staticmethod
    def _budget_text(p: dict[str, Any], level: str) -> str:
        """``the run spent $4.02 of its $5.00 budget`` (an agent's: ``executor spent``)."""
        who = f"{p['agent']}" if p.get("agent") else "the run"
        spent_usd, limit_usd = float(p.get("spent_usd") or 0.0), float(p.get("limit_usd")
                                                                      or 0.0)
        # A budget under a dollar in four decimals ($0.0041 of $0.0050, not $0.00 of $0.01).
        money = (lambda usd: f"${usd:.4f}") if limit_usd < 1 else short_cost
        spent, limit = money(spent_usd), money(limit_usd)
        if level == "warn":
            return f"{who} spent {spent} of its {limit} budget"
        return (f"the run is paused by its budget ({who} spent {spent} of {limit}): "
                "raise the budget in the config, or press p to go on")

    def _tick_turns(self) -> None:
        """While a turn runs, its time in the agents pane moves on every second."""
        if any(a.turn_ts is not None for a in self.ledger.agents.values()):
            self._dirty = True

    async def _run_host(self) -> None:
        # Faults being retried are toasts, not lines on a screen they would scribble on.
        self.host.on_fault = lambda text: self.notify(text, title="fault",
                                                      severity="warning", markup=False)
        try:
            self.outcome = await self.host.run()
        except Exception as exc:  # the worker would swallow it: the host stopped, say so
            self.host_fault = exc if isinstance(exc, HostFault) else HostFault(
                f"{type(exc).__name__}: {exc}")
            return  # the banner says it until the app quits
        finally:
            # Nothing runs the swarm any more: an unfinished run's agents say "no host".
            self.hosted = False
            self._dirty = True
        # A toast is one line: a blocked run's reason is a test run's output.
        reason = headline(self.outcome.phase_reason or "")
        self.notify(f"the run is {self.outcome.phase}" + (f": {reason}" if reason else ""))

    def _refresh_panes(self) -> None:
        """Coalesced: whatever arrived since the last tick, drawn once."""
        if not self._dirty:
            return
        try:
            self._draw_panes()
        except NoMatches:
            pass  # the app is closing: its widgets are going, the timer not yet

    def _draw_panes(self) -> None:
        stream = self.query_one(EventStream)
        self._dirty = False
        self.draws += 1
        new, self._new = self._new, []
        stream.grow(self.head, new)
        self._show_status(stream)
        self.query_one(AgentsTable).show(self.ledger, self.head, self.clock(),
                                         hosted=self.hosted)
        for screen in self.screen_stack:
            if isinstance(screen, TranscriptScreen):
                screen.grow(self.head, new)
        if self._caught_up:  # a gate waiting half-way through the fold is long gone
            self._show_needs()
            self._show_recovery()
            self._close_answered()
        now = time.monotonic()
        if self._caught_up and self.ledger.offset != self._ledger_offset_shown:
            if now - self._ledger_shown_at >= LEDGER_REFRESH_S:
                self._ledger_shown_at = now
                self._ledger_offset_shown = self.ledger.offset
                self.query_one(LedgerView).show(self.ledger.render())
            else:
                self._dirty = True  # not yet: a later tick shows it, even if nothing new comes
        self._refresh_inbox(new)

    def _show_status(self, stream: EventStream) -> None:
        self.query_one(StatusLine).show(
            self.store.location, self.ledger, self.head, following=stream.following,
            filter_text=stream.filter.describe(), caught_up=self._caught_up,
            hosted=self.hosted)

    def _poll_host(self) -> None:
        """Whether anything runs this swarm now (the lease's flock: microseconds)."""
        hosted = self.store.current_host() is not None
        if hosted != self.hosted:
            self.hosted = hosted
            self._dirty = True

    # -- needs you, recovered -------------------------------------------------------

    def needs(self) -> list[tuple[str, str]]:
        """What the run waits for the user to do now, as (key, what to say): every
        permission request (oldest first), every human gate waiting, the budget that
        paused the run, a host that stopped. A new key rings the bell."""
        out = [(f"permission:{agent}:{request}",
                f"{agent} asks to use {asked.get('tool')}: press a")
               for agent, request, asked in pending(self.ledger)]
        out += [(f"gate:{gate}", f"{gate} needs your approval: press a")
                for gate in self.ledger.waiting_for_human()]
        if self.budget_stop is not None and not self.ledger.over():
            out.append(("budget", self._budget_text(self.budget_stop, "exceeded")))
        if self.host_fault is not None:
            out.append(("host", f"the host stopped: {headline(str(self.host_fault))}"))
        return out

    def _show_needs(self) -> None:
        needs = self.needs()
        keys = frozenset(key for key, _ in needs)
        fresh = [text for key, text in needs if key not in self._needs_keys]
        self._needs_keys = keys  # one that goes and comes back rings again
        covered = self.screen is not self.screen_stack[0] and not isinstance(
            self.screen, ModalScreen)  # (a transcript hides the banner: a toast says it)
        for text in fresh[:ALERTS_PER_DRAW]:  # each request told once
            self.alert(text)
            if covered:
                self.notify(text, title="needs you", severity="warning")
        texts = tuple(text for _, text in needs)
        if texts == self._needs_shown:
            return
        self._needs_shown = texts
        banner = self.query_one("#needs-you", Static)
        banner.update(literal("⚠ " + "  ·  ".join(texts)))
        banner.set_class(bool(texts), "visible")

    def alert(self, text: str) -> None:
        """Call the user back: the bell, and a desktop notification where the terminal
        shows one (terminal_alert)."""
        self.write_to_terminal(alert(text, self.env))

    def write_to_terminal(self, data: str) -> None:
        """Write ``data`` to the terminal as it is (the driver's: nothing when headless)."""
        if self._driver is not None:
            self._driver.write(data)

    def _show_recovery(self) -> None:
        """For a few seconds after a host resumed an interrupted run: where it resumed."""
        last = self.ledger.last_interruption
        if last is None or last["at"] == self._recovery_at:
            return
        self._recovery_at = last["at"]
        if self.clock() - last["ts"] > RECENT_RESUME_S:
            return  # an old interruption: the ledger's Recoveries section tells it
        banner = self.query_one("#recovered", Static)
        banner.update(literal(f"↻ {resumed_run(last)}"))  # the stream row's words
        banner.add_class("visible")
        if self._recovery_timer is not None:
            self._recovery_timer.stop()  # a second resume gets its own few seconds
        self._recovery_timer = self.set_timer(RECOVERY_BANNER_S,
                                              lambda: banner.remove_class("visible"))

    def _refresh_inbox(self, new: list[Event]) -> None:
        if not self._caught_up:
            return  # cursors move on every tick while a large log is folded
        agent = self.query_one(AgentsTable).selected
        view = self.ledger.agents.get(agent) if agent else None
        key = (agent, view.cursor if view else -1)
        selected_now = key[0] != self._inbox_key[0]
        if key != self._inbox_key or any(e.to == agent for e in new):
            self._inbox_key = key
            self._inbox_stale = True
        if not self._inbox_stale:
            return
        # At most INBOX_REFRESH_HZ reloads a second (each is a read and a layout pass),
        # at once when another agent is selected.
        now = time.monotonic()
        if not selected_now and now - self._inbox_loaded_at < 1 / INBOX_REFRESH_HZ:
            self._dirty = True  # a later tick loads it
            return
        self._inbox_stale = False
        self._inbox_loaded_at = now
        self._load_inbox(agent)

    @work(group="inbox", exclusive=True, exit_on_error=False)
    async def _load_inbox(self, agent: str | None) -> None:
        if agent is None:
            self.query_one(InboxView).show(None, [], 0)
            return
        # Only what the pane shows: the last acked message and the pending ones after
        # the cursor (an agent may have thousands of messages in a large log).
        cursor = await self.store.cursor(agent)
        pending = await self.store.read(cursor + 1, 50, to=agent)
        acked = await self.store.read_offsets([cursor]) if cursor else []
        shown = [e for e in acked if e.to == agent] + pending.events
        self.query_one(InboxView).show(agent, shown, cursor)

    def on_agents_table_highlighted(self) -> None:
        self._inbox_key = (None, -2)
        self._dirty = True

    async def action_agent_events(self) -> None:
        """The stream shows the selected agent's events only (/ and an empty filter
        show everything again)."""
        agent = self._selected_agent()
        if agent is None:
            return
        await self.query_one(EventStream).show_agent(agent)
        if self.screen.has_class("compact"):
            self.action_pane(2)  # one pane at a time: the one that shows them
        self.notify(f"the stream shows {agent}'s events: / to change the filter")

    def on_agents_table_opened(self, message: AgentsTable.Opened) -> None:
        """enter on an agent: its transcript."""
        self._open_transcript(message.agent)

    def action_transcript(self) -> None:
        """Open the selected agent's transcript."""
        agent = self._selected_agent()
        if agent is not None:
            self._open_transcript(agent)

    def _open_transcript(self, agent: str) -> None:
        # Its scan covers the log as far as the app has it, or as it was when the app
        # opened it (a large log still being folded): what comes later reaches the
        # transcript with the new events of each frame.
        head = max(self.head, self._initial_head)
        self.push_screen(TranscriptScreen(self.store, agent, head))

    # -- permission requests ----------------------------------------------------------

    def _waiting_requests(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The requests pending, oldest first, but the ones this app has just answered
        (the ledger folds the answer a moment later)."""
        return [item for item in pending(self.ledger)
                if (item[0], item[1]) not in self._answered_here]

    def open_permission(self) -> bool:
        """Show the oldest pending permission request (False: none is pending)."""
        if any(isinstance(s, PermissionScreen) for s in self.screen_stack):
            return True  # one at a time: the next opens once this one is answered
        waiting = self._waiting_requests()
        if not waiting:
            return False
        agent, request, asked = waiting[0]

        async def answered(result: PermissionAnswer | None) -> None:
            if result is not None:
                await self._answer(agent, request, asked, result)

        self.push_screen(PermissionScreen(agent, request, asked, len(waiting)), answered)
        return True

    async def _answer(self, agent: str, request: str, asked: dict[str, Any],
                      result: PermissionAnswer) -> None:
        """Append the answer (the first one for a request wins); then the next request."""
        try:
            offset = await answer(self.store, agent, result.decision, request=request,
                                  always=result.always, message=result.message,
                                  actor="human", ledger=self.ledger)
        except SisyphusError as exc:
            self.notify(str(exc), title="permission", severity="warning")
        else:
            self._answered_here.add((agent, request))
            how = "allowed always (this run)" if result.always else (
                "allowed once" if result.decision == "allow" else "denied")
            self.notify(f"{agent}: {asked.get('tool')} {how} (offset {offset})")
        self.open_permission()

    def _close_answered(self) -> None:
        """A request on screen answered elsewhere (another TUI, the CLI, its timeout):
        the dialog closes, saying how it was answered; the next one opens."""
        screen = self.screen
        if not isinstance(screen, PermissionScreen):
            return
        view = self.ledger.agents.get(screen.agent)
        if view is not None and screen.request in view.asking:
            return
        said = self._answers.get((screen.agent, screen.request), {})
        screen.dismiss(None)
        self.notify(f"{screen.agent}'s request to use {screen.payload.get('tool')} was "
                    f"answered elsewhere: {said.get('decision', 'answered')} by "
                    f"{said.get('by', 'another process')}", title="permission")
        self.call_later(self.open_permission)

    # -- layout -----------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        screen = self.screen
        screen.set_class(width < MIN_WIDTH or height < MIN_HEIGHT, "too-small")
        screen.set_class(width < COMPACT_WIDTH, "compact")
        for footer in self.query(KeysFooter):
            footer.narrow = width < COMPACT_WIDTH
        for n in (1, 2, 3, 4):
            screen.set_class(n == self._pane, f"show-{n}")

    def action_pane(self, number: int) -> None:
        """Show (on a narrow terminal) and focus pane 1-4."""
        self._pane = number
        self._fit(self.size.width, self.size.height)
        self.query_one(PANES[number][0]).focus()

    def action_next_pane(self) -> None:
        """The next pane (on a narrow terminal the only one shown: focus alone would
        find nothing else to move to)."""
        self.action_pane(self._focused_pane() % 4 + 1)

    def action_previous_pane(self) -> None:
        """The previous pane."""
        self.action_pane((self._focused_pane() - 2) % 4 + 1)

    def _focused_pane(self) -> int:
        focused = self.focused
        for number, (selector, _) in PANES.items():
            pane = self.query_one(selector)
            if focused is not None and (focused is pane or pane in focused.ancestors):
                return number
        return self._pane

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # tab moves between panes on the main screen; in a form it moves between fields.
        if action in ("next_pane", "previous_pane"):
            return not isinstance(self.screen, ModalScreen)
        return True

    # -- notifications ------------------------------------------------------------

    def notify(self, message: str, *, title: str = "",
               severity: SeverityLevel = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """A notification shown literally, whatever ``markup`` says: its text names
        agents, gates and reasons from the log (``x[/]`` would crash the toast, and
        ``[@click=...]`` would make a link), and ``Widget.notify`` asks for markup by
        default."""
        # Short, whatever the caller asked: what lasts is shown on the screen itself.
        timeout = TOAST_S if timeout is None else min(timeout, 2 * TOAST_S)
        super().notify(printable(message), title=printable(title), severity=severity,
                       timeout=timeout, markup=False)

    def action_help_quit(self) -> None:
        """ctrl+c: say how to quit (Textual's own message is markup)."""
        self.notify("press q to quit the app", title="Do you want to quit?")

    # -- actions: every one is a control event in the log -------------------------

    async def _control(self, payload: dict[str, Any], requested: str) -> int | None:
        """Append a control request; say what was requested and where it is in the log."""
        try:
            offset = await self.store.append("CONTROL", payload, actor="human", to="swarm")
        except SisyphusError as exc:
            self.notify(str(exc), severity="error")
            return None
        self.notify(f"{requested} (offset {offset})")
        return offset

    def _refused(self, action: str, agent: str | None = None, *,
                 gate: str | None = None) -> bool:
        """Say why the run would not carry ``action`` out, if it would not (the run is
        over, the agent is not wiped...): a request nothing will act on is not sent."""
        why = self.ledger.refusal(action, agent, gate=gate)
        if why is not None:
            self.notify(why, severity="warning")
        return why is not None

    def _confirm(self, question: str, detail: str, then: Any) -> None:
        """Ask first (y/enter: yes, n/escape: no); ``then()`` is awaited on a yes."""

        async def answered(yes: bool | None) -> None:
            if yes:
                await then()

        self.push_screen(ConfirmScreen(question, detail), answered)

    def _selected_agent(self) -> str | None:
        agent = self.query_one(AgentsTable).selected
        if agent is None:
            self.notify("select an agent first (1 or tab, then the arrows)",
                        severity="warning")
        return agent

    def action_wipe(self) -> None:
        """Wipe the selected agent's context (asked first); it resumes from its
        checkpoint."""
        agent = self._selected_agent()
        if agent is None or self._refused("wipe", agent):
            return

        async def wipe() -> None:
            if not self._refused("wipe", agent):  # the run may have moved on meanwhile
                await self._control({"action": "wipe", "agent": agent},
                                    f"wipe of {agent} requested")

        self._confirm(f"Wipe {agent}'s context?",
                      "It forgets its conversation and resumes from its last checkpoint.",
                      wipe)

    async def action_resume(self) -> None:
        """Resume the selected agent (a wiped or failed one)."""
        agent = self._selected_agent()
        if agent is not None and not self._refused("resume", agent):
            await self._control({"action": "resume", "agent": agent},
                                f"resume of {agent} requested")

    async def action_pause(self) -> None:
        """Pause the swarm, or let it run again (a run its budget stopped too)."""
        action = "unpause" if self.ledger.paused or self.budget_stop else "pause"
        if not self._refused(action):
            await self._control({"action": action}, f"{action} requested")

    async def action_approve(self) -> None:
        """Answer what waits for a person: the oldest permission request (its dialog),
        else the human gate the run waits for (or the next one), approved."""
        if self.open_permission():
            return
        waiting = self.ledger.waiting_for_human() or [
            g.name for g in self.ledger.gates.values() if g.human and not g.passed]
        gate = waiting[0] if waiting else None
        if gate is None and not self.ledger.over():
            self.notify("no human gate is waiting in this run", severity="warning")
            return
        # A run that is over says so first, whatever its gates, as the other actions do.
        if not self._refused("approve", gate=gate):
            await self._control({"action": "approve", "gate": gate},
                                f"approval of {gate} requested")

    def action_cancel(self) -> None:
        """Cancel the selected agent's turn (asked first): its message stays unhandled
        until it is restarted."""
        self._steer("cancel", "Cancel",
                    "Its agent is stopped (protocol cancel, then SIGINT, then SIGKILL); "
                    "R restarts the turn from its checkpoint.")

    def action_restart(self) -> None:
        """Restart the selected agent's turn from its checkpoint (asked first)."""
        self._steer("restart", "Restart",
                    "The turn is done again from its last checkpoint; what it did since "
                    "is rolled back.")

    def _steer(self, action: str, verb: str, detail: str) -> None:
        """A control request on the selected agent, asked first, checked twice (the run
        may move on while the question is open)."""
        agent = self._selected_agent()
        if agent is None or self._refused(action, agent):
            return

        async def send() -> None:
            if not self._refused(action, agent):
                await self._control({"action": action, "agent": agent,
                                     "reason": "asked from the TUI"},
                                    f"{action} of {agent} requested")

        self._confirm(f"{verb} {agent}'s turn?", detail, send)

    def action_stop(self) -> None:
        """Stop the swarm's host (asked first); running it again carries the run on."""
        if self._refused("stop"):
            return

        async def stop() -> None:
            await self._control({"action": "stop"}, "stop of the host requested")

        self._confirm("Stop the swarm's host?",
                      "The run stops where it is; running it again carries it on.", stop)

    def action_follow(self) -> None:
        """Follow the tail, or stop following."""
        stream = self.query_one(EventStream)
        if stream.following:
            stream.following = False
        else:
            stream.jump_to_end()

    def action_filter(self) -> None:
        """Open the filter bar."""
        bar = self.query_one("#filter", Input)
        bar.add_class("visible")
        bar.value = self.query_one(EventStream).filter.describe()
        bar.focus()

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        event.input.remove_class("visible")
        stream = self.query_one(EventStream)
        await stream.apply_filter(Filter.parse(event.value), self.head)
        stream.focus()
        self._show_status(stream)

    def on_key(self, event: events.Key) -> None:
        bar = self.query_one("#filter", Input)
        if event.key == "escape" and bar.has_class("visible"):
            bar.remove_class("visible")
            self.query_one(EventStream).focus()
            event.stop()

    @on(EventStream.FilterChanged)
    @on(EventStream.FollowingChanged)
    def _stream_changed(self) -> None:
        with contextlib.suppress(NoMatches):  # (the app may be closing)
            self._show_status(self.query_one(EventStream))

    def on_event_stream_opened(self, message: EventStream.Opened) -> None:
        self.push_screen(EventScreen(message.event))

    def action_help(self) -> None:
        """Show every key: the app's (commands.ACTIONS), then each pane's own."""
        rows = help_rows()
        known = set(KNOWN_KEYS)
        for title, pane in (("the agents pane", AgentsTable), ("the stream", EventStream),
                            ("the ledger", LedgerView)):
            own = _own_keys(pane, known)
            if own:
                rows += [("", f"in {title}")] + own
        self.push_screen(HelpScreen(rows))

    def action_spawn(self) -> None:
        """The spawn form: skill, name, prompt, background, thinking."""
        from sisyphus_tui.skills import load_skills

        try:
            skills = sorted(load_skills(self.workspace))
        except SisyphusError as exc:
            self.notify(str(exc), severity="error")
            return

        async def spawn(request: dict[str, Any] | None) -> None:
            if request is not None and not self._refused("spawn", request["agent"]):
                await self._control({"action": "spawn", "parent": "human", **request},
                                    f"spawn of {request['agent']} requested")

        self.push_screen(SpawnForm(skills, set(self.ledger.agents)), spawn)

    def action_inject(self) -> None:
        """The inject form: recipient and text."""
        agents = sorted(a for a in self.ledger.agents if a not in MAILBOXES)

        async def inject(request: dict[str, str] | None) -> None:
            if request is None or self._refused("message", request["to"]):
                return
            try:
                offset = await SwarmMail(self.store).send(request["to"], request["text"],
                                                          sender="human")
            except SisyphusError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"message sent to {request['to']} (offset {offset})")

        self.push_screen(InjectForm(agents, self.query_one(AgentsTable).selected), inject)
