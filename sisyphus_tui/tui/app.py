"""The sisyphus app: agents (left), the live event stream (centre), the ledger (right),
the selected agent's inbox (below), a status line on top and every key in the footer.

The app reads the log like any other process: it tails the store, folds the ledger,
and coalesces what arrives into a bounded refresh rate. Every action it offers is a
control event appended to the log, so it steers a swarm running in this process (the
demo) or in another one (``sisyphus tui --db``) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from pathlib import Path
from typing import Any

from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.widgets import Footer, Input, Static
from textual.worker import Worker

from sisyphus_tui.errors import HostFault, SisyphusError
from sisyphus_tui.ledger import Ledger
from sisyphus_tui.mail import SwarmMail
from sisyphus_tui.safe_text import printable
from sisyphus_tui.stream.base import Event, EventStore
from sisyphus_tui.tui.commands import SisyphusCommands
from sisyphus_tui.tui.screens.modals import EventScreen, HelpScreen, InjectForm, SpawnForm
from sisyphus_tui.tui.widgets.event_stream import EventStream, Filter
from sisyphus_tui.tui.widgets.panes import (
    MAILBOXES,
    AgentsTable,
    InboxView,
    LedgerView,
    StatusLine,
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
    BINDINGS = [
        Binding("s", "spawn", "Spawn"),
        Binding("i", "inject", "Inject"),
        Binding("w", "wipe", "Wipe"),
        Binding("r", "resume", "Resume"),
        Binding("p", "pause", "Pause"),
        Binding("a", "approve", "Approve"),
        Binding("f", "follow", "Follow"),
        Binding("slash", "filter", "Filter"),
        Binding("f1,question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("1", "pane(1)", "Agents", show=False),
        Binding("2", "pane(2)", "Stream", show=False),
        Binding("3", "pane(3)", "Ledger", show=False),
        Binding("4", "pane(4)", "Inbox", show=False),
    ]
    KEYS_HELP = [
        ("s", "spawn an agent by skill (a form)"), ("i", "inject a message (a form)"),
        ("w", "wipe the selected agent's context"), ("r", "resume the selected agent"),
        ("p", "pause / resume the swarm"), ("a", "approve the waiting human gate"),
        ("f", "follow the tail on / off"), ("/", "filter: agent:NAME type:TYPE text"),
        ("enter", "open the selected event's payload"), ("up/down", "move in a pane"),
        ("tab", "next pane"), ("1-4", "show agents / stream / ledger / inbox"),
        ("f1 or ?", "this help"), ("q", "quit (an attached swarm keeps running)"),
    ]

    def __init__(self, store: EventStore | None = None, *, db: str | Path | None = None,
                 workspace: Path | None = None, host: Any = None,
                 low_bandwidth: bool = False, clock: Any = time.time) -> None:
        """Show ``store``, or the database at ``db`` (opened, and closed, by the app in
        its own event loop)."""
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
        self.outcome: Ledger | None = None
        self.host_fault: HostFault | None = None
        self._gc_threshold = gc.get_threshold()

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="main"):
            yield AgentsTable(id="agents")
            yield EventStream(id="stream")
            yield LedgerView("*reading the log...*", id="ledger-pane")
        with VerticalScroll(id="inbox-pane"):
            yield InboxView(id="inbox")
        yield Input(placeholder="filter: agent:NAME type:TYPE text (enter applies, "
                    "an empty filter shows everything, escape closes)", id="filter")
        yield Static(f"terminal too small: sisyphus needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
                     id="too-small")
        yield Footer()

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
            if event.offset > self._initial_head:
                self._new.append(event)
            if event.offset >= self._initial_head and not self._caught_up:
                self._caught_up = True
                self.set_timer(SETTLE_AFTER_S, self._settle_memory)
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
            self.notify(f"the host stopped: {exc}", severity="error",
                        timeout=30, markup=False)
            return
        self.notify(f"the run is {self.outcome.phase}"
                    + (f": {self.outcome.phase_reason}" if self.outcome.phase_reason else ""),
                    timeout=30)

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
        new, self._new = self._new, []
        stream.grow(self.head, new)
        self._show_status(stream)
        self.query_one(AgentsTable).show(self.ledger, self.head, self.clock())
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
            filter_text=stream.filter.describe(), caught_up=self._caught_up)

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

    # -- layout -----------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        screen = self.screen
        screen.set_class(width < MIN_WIDTH or height < MIN_HEIGHT, "too-small")
        screen.set_class(width < COMPACT_WIDTH, "compact")
        for footer in self.query(Footer):
            footer.compact = width < COMPACT_WIDTH
        for n in (1, 2, 3, 4):
            screen.set_class(n == self._pane, f"show-{n}")

    def action_pane(self, number: int) -> None:
        """Show (on a narrow terminal) and focus pane 1-4."""
        self._pane = number
        self._fit(self.size.width, self.size.height)
        target = {1: "#agents", 2: "#stream", 3: "#ledger-pane", 4: "#inbox-pane"}[number]
        self.query_one(target).focus()

    # -- notifications ------------------------------------------------------------

    def notify(self, message: str, *, title: str = "",
               severity: SeverityLevel = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """A notification shown literally, whatever ``markup`` says: its text names
        agents, gates and reasons from the log (``x[/]`` would crash the toast, and
        ``[@click=...]`` would make a link), and ``Widget.notify`` asks for markup by
        default."""
        super().notify(printable(message), title=printable(title), severity=severity,
                       timeout=timeout, markup=False)

    def action_help_quit(self) -> None:
        """ctrl+c: say how to quit (Textual's own message is markup)."""
        self.notify("press q to quit the app", title="Do you want to quit?")

    # -- actions: every one is a control event in the log -------------------------

    async def _control(self, payload: dict[str, Any], done: str) -> None:
        try:
            await self.store.append("CONTROL", payload, actor="human", to="swarm")
        except SisyphusError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(done)

    def _selected_agent(self) -> str | None:
        agent = self.query_one(AgentsTable).selected
        if agent is None:
            self.notify("select an agent first (1 or tab, then the arrows)",
                        severity="warning")
        return agent

    async def action_wipe(self) -> None:
        """Wipe the selected agent's context; it resumes from its checkpoint."""
        agent = self._selected_agent()
        if agent is not None:
            await self._control({"action": "wipe", "agent": agent}, f"wipe {agent} requested")

    async def action_resume(self) -> None:
        """Resume the selected agent."""
        agent = self._selected_agent()
        if agent is not None:
            await self._control({"action": "resume", "agent": agent},
                                f"resume {agent} requested")

    async def action_pause(self) -> None:
        """Pause the swarm, or let it run again."""
        action = "unpause" if self.ledger.paused else "pause"
        await self._control({"action": action}, f"{action} requested")

    async def action_approve(self) -> None:
        """Approve the human gate the run waits for (or the next one)."""
        waiting = [g.name for g in self.ledger.gates.values() if g.human and not g.passed]
        if not waiting:
            self.notify("no human gate is waiting in this run", severity="warning")
            return
        await self._control({"action": "approve", "gate": waiting[0]},
                            f"gate {waiting[0]} approved")

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

    def on_event_stream_following_changed(self) -> None:
        with contextlib.suppress(NoMatches):  # (the app may be closing)
            self._show_status(self.query_one(EventStream))

    def on_event_stream_opened(self, message: EventStream.Opened) -> None:
        self.push_screen(EventScreen(message.event))

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(self.KEYS_HELP))

    def action_spawn(self) -> None:
        """The spawn form: skill, name, prompt, background, thinking."""
        from sisyphus_tui.skills import load_skills

        try:
            skills = sorted(load_skills(self.workspace))
        except SisyphusError as exc:
            self.notify(str(exc), severity="error")
            return

        async def spawn(request: dict[str, Any] | None) -> None:
            if request is not None:
                await self._control({"action": "spawn", "parent": "human", **request},
                                    f"spawn {request['agent']} requested")

        self.push_screen(SpawnForm(skills, set(self.ledger.agents)), spawn)

    def action_inject(self) -> None:
        """The inject form: recipient and text."""
        agents = sorted(a for a in self.ledger.agents if a not in MAILBOXES)

        async def inject(request: dict[str, str] | None) -> None:
            if request is None:
                return
            try:
                await SwarmMail(self.store).send(request["to"], request["text"],
                                                 sender="human")
            except SisyphusError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"message sent to {request['to']}")

        self.push_screen(InjectForm(agents, self.query_one(AgentsTable).selected), inject)
