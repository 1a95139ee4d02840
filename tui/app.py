"""The m2i dashboard: a Textual app that follows a run store, live, from any process.

``make_app`` builds the app from its services (a :class:`~tui.data.Reader`, the
:class:`~tui.data.Actions`, optionally a :class:`~tui.runner_host.RunnerHost`) so the CLI and
the tests build it the same way; ``run_app`` is what ``m2i tui`` calls. The app itself only
schedules reads (a thread worker about once a second), hands each result to the visible screen
and performs the two writes (requeue, pause/resume) that screens ask for with messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.worker import Worker, WorkerState

from m2i.errors import M2IError
from tui.data import Actions, RateTracker, Reader, Snapshot, View, Want, import_store_modules
from tui.runner_host import RunnerHost
from tui.screens.base import DataScreen, RefreshWanted
from tui.screens.compare import CompareScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.detail import SampleDetailScreen
from tui.screens.failures import FailuresScreen
from tui.screens.help import HelpScreen
from tui.screens.runs import RunsScreen
from tui.screens.samples import SamplesScreen

if TYPE_CHECKING:
    from m2i.config import Settings

log = logging.getLogger(__name__)

SCREENS = Binding.Group("Screens", compact=True)
EVENTS_KEPT = 500
REPORT_EVERY_S = 5.0
"""A newer report is read at most this often (each one covers every clip of the run)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that quit the dashboard as ``q`` does (a dropped SSH session sends SIGHUP)."""


class Refreshed(Message):
    """A snapshot came back from the reader thread."""

    def __init__(self, snap: Snapshot) -> None:
        super().__init__()
        self.snap = snap


class RunnerNote(Message):
    """A log line from the embedded runner (``m2i tui --run``); ``toast`` also pops it up."""

    def __init__(self, text: str, level: str = "info", *, toast: bool = False) -> None:
        super().__init__()
        self.text = text
        self.level = level
        self.toast = toast


class M2IApp(App[None]):
    """Dashboard, Compare, Failures and Samples screens over one run store."""

    CSS_PATH = "app.tcss"
    TITLE = "m2i"
    ENABLE_COMMAND_PALETTE = False
    MODES = {
        "dashboard": DashboardScreen,
        "compare": CompareScreen,
        "failures": FailuresScreen,
        "samples": SamplesScreen,
    }
    DEFAULT_MODE = "dashboard"
    BINDINGS = [
        Binding("d", "switch_mode('dashboard')", "Dashboard", id="screen.dashboard", group=SCREENS),
        Binding("c", "switch_mode('compare')", "Compare", id="screen.compare", group=SCREENS),
        Binding("f", "switch_mode('failures')", "Failures", id="screen.failures", group=SCREENS),
        Binding("s", "switch_mode('samples')", "Samples", id="screen.samples", group=SCREENS),
        Binding("o", "runs", "Runs", id="app.runs"),
        Binding("question_mark", "help", "Help", id="app.help", key_display="?"),
        Binding("q,ctrl+c", "quit", "Quit", id="app.quit", key_display="q"),
        Binding("ctrl+z", "suspend", "Suspend", id="app.suspend", show=False),
    ]

    def __init__(
        self,
        *,
        reader: Reader,
        actions: Actions,
        host: RunnerHost | None = None,
        refresh_s: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.actions = actions
        self.host = host
        self.refresh_s = refresh_s
        self.rates = RateTracker(clock=clock)
        self.view: View | None = None
        self.refreshes = 0
        self._events: list = []
        self._notes: list[tuple[int, str, str]] = []
        self._note_seq = -1
        self._report: dict[str, Any] | None = None
        self._report_id: int | None = None
        self._report_at = -1e9
        self._clock = clock
        self._origin: tuple[Any, int] | None = None
        self._polling = False
        self._again = False
        self.main_loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ reading

    def on_mount(self) -> None:
        self.main_loop = asyncio.get_running_loop()
        self.app_resume_signal.subscribe(self, self._repaint_all)
        if self.refresh_s:
            self.set_interval(self.refresh_s, self.request_refresh, name="refresh")
        if self.host is not None:
            import_store_modules()  # before the reader's and the runner's threads import them at once
            self.host.start(self._runner_done)
        self.request_refresh()

    def request_refresh(self) -> None:
        """Read the store again now (or right after the read in progress)."""
        if self._polling:
            self._again = True
            return
        self._polling = True
        base = Want(events_after=self._events[-1].id if self._events else 0, report_id=self._report_id)
        screen = self._visible()
        want = screen.want(base) if screen is not None else base
        if want.report and self._report is not None and self._clock() - self._report_at < REPORT_EVERY_S:
            want = replace(want, report=False)
        self._read(want)

    @work(thread=True, group="read", exit_on_error=False)
    def _read(self, want: Want) -> None:
        self.post_message(Refreshed(self.reader.snapshot(want)))

    @on(Refreshed)
    def _refreshed(self, message: Refreshed) -> None:
        self._polling = False
        snap = message.snap
        if snap.origin is not None and snap.origin != self._origin:  # a newer run, or the file was replaced
            self._origin = snap.origin
            self._events, self._report, self._report_id = [], None, None
            self.rates.reset()
            if snap.want.events_after:  # read after the previous run's last event: read this run's from its start
                snap.events = []
                self._again = True
        if snap.events:
            self._events = (self._events + snap.events)[-EVENTS_KEPT:]
        if snap.report_changed:
            self._report, self._report_id = snap.report, snap.report_id
            self._report_at = self._clock()
        rates = self.rates.update(snap.counts) if snap.run else {}
        self.view = View(snap=snap, rates=rates, events=self._events, report=self._report,
                         report_id=self._report_id, notes=list(self._notes), origin=self._origin)
        self._show()
        self.refreshes += 1
        if self._again:
            self._again = False
            self.request_refresh()

    def _visible(self) -> DataScreen | None:
        """The visible data screen, or None (a modal on top, the app shutting down, or a screen
        still being built: its widgets are not there yet, and once they are, its ScreenResume asks
        for the view). Shutting down: exit() was called, or the app stopped running, as it does
        when Textual shuts it down without exit() and takes the screens' widgets away while a
        snapshot from the reader thread may still arrive."""
        if self._exit or not self.is_running or not self._screen_stack:
            return None
        screen = self.screen
        return screen if isinstance(screen, DataScreen) and screen.is_mounted else None

    def _show(self) -> None:
        screen = self._visible()
        if self.view is not None and screen is not None:
            screen.show(self.view)

    @on(RefreshWanted)
    def _refresh_wanted(self) -> None:
        self._show()
        self.request_refresh()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one handler for worker failures: say it in one line, keep the app alive."""
        if event.state != WorkerState.ERROR:
            return
        if event.worker.group == "read":
            self._polling = False
        err = event.worker.error
        text = str(err) if isinstance(err, M2IError) else f"{type(err).__name__}: {err}"
        log.error("worker %s failed: %s", event.worker.name, text)
        self.notify(text, title="error", severity="error", timeout=8)

    # ------------------------------------------------------------------ writing

    @on(DashboardScreen.PauseRequested)
    def _pause(self, message: DashboardScreen.PauseRequested) -> None:
        self._set_paused(message.run_id, message.paused)

    @work(thread=True, group="write", exit_on_error=False)
    def _set_paused(self, run_id: int, paused: bool) -> None:
        changed = self.actions.set_paused(run_id, paused)
        word = "paused" if paused else "resumed"
        text = f"Run {word}." if changed else f"The run was already {word}."
        self.call_from_thread(self.notify, text + (" Work in flight finishes first." if paused else ""))
        self.call_from_thread(self.request_refresh)

    @on(FailuresScreen.RequeueRequested)
    def _requeue_requested(self, message: FailuresScreen.RequeueRequested) -> None:
        self._requeue(message.run_id, message.rows, message.stage, message.error, message.what)

    @work(thread=True, group="write", exit_on_error=False)
    def _requeue(self, run_id: int, rows: dict[str, list[int]] | None, stage: str | None, error: str | None,
                 what: str) -> None:
        n = self.actions.requeue(run_id, rows=rows, stage=stage, error=error)
        text = f"Requeued {n} row(s) ({what}); a runner on this database picks them up." if n else (
            f"Nothing requeued ({what}): those rows are no longer failed, or a clip without audio cannot run again."
        )
        self.call_from_thread(self.notify, text, severity="information" if n else "warning")
        self.call_from_thread(self.request_refresh)

    # ------------------------------------------------------------------ runner in this process

    def _runner_done(self, error: str | None) -> None:
        if error:
            self.post_message(RunnerNote(f"runner stopped: {error}", "error", toast=True))
        else:
            self.post_message(RunnerNote("runner finished: no work left (or stopped on request)", "info"))

    @on(RunnerNote)
    def _runner_note(self, message: RunnerNote) -> None:
        self._note_seq += 1
        self._notes.append((self._note_seq, message.level, message.text))
        del self._notes[:-EVENTS_KEPT]
        if self.view is not None:
            self.view.notes = list(self._notes)
            self._show()
        if message.toast:
            self.notify(message.text, severity="error" if message.level == "error" else "information", timeout=10)

    # ------------------------------------------------------------------ keys

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen([
            ("Everywhere", self.BINDINGS),
            ("Dashboard", DashboardScreen.BINDINGS),
            ("Compare", [("up,down", "", "Choose the metric plotted")]),
            ("Failures", FailuresScreen.BINDINGS + [("up,down", "", "Move"),
                                                    ("tab", "", "Into the full error (up/down scroll it)")]),
            ("Samples", SamplesScreen.BINDINGS),
            ("Sample detail", SampleDetailScreen.BINDINGS),
        ]))

    def action_runs(self) -> None:
        """The run picker; the choice becomes the run every screen follows."""
        if isinstance(self.screen, RunsScreen):
            return
        current = self.view.snap.run.id if self.view is not None and self.view.snap.run is not None else None
        self.push_screen(RunsScreen(current, following_newest=self.reader.run is None), self._follow)

    def _follow(self, choice: str | None) -> None:
        if choice is None:  # closed: nothing changes
            return
        self.reader.run = choice or None
        self.notify(f"following run {choice}" if choice else "following the newest run", timeout=3)
        self.request_refresh()

    def action_suspend(self) -> None:
        """Ctrl-Z, as in a shell: back to the shell prompt, ``fg`` brings the dashboard back.

        With ``--run`` the runner lives in this process and a stopped process would hold its rows
        until their leases ran out, so the dashboard says how to leave it running instead.
        """
        if self.host is not None and self.host.running:
            self.notify("Ctrl-Z would stop the runner inside this dashboard too: detach tmux (Ctrl-b d) "
                        "to leave it working, or quit with q.", severity="warning", timeout=8)
            return
        self.action_suspend_process()

    def _repaint_all(self, _app: App) -> None:
        """Back from Ctrl-Z (``fg``): the terminal was the shell's meanwhile, so every cell is drawn
        again (only the cells that changed came back, leaving the stage names blank)."""
        self.refresh(layout=True)

    async def action_quit(self) -> None:
        if self.host is not None and self.host.running:
            self.host.stop()
            self.notify("Stopping the runner: work in flight finishes first.")
        self.exit()


class _ToApp(logging.Handler):
    """Sends log records of the embedded runner to the dashboard instead of the terminal."""

    def __init__(self, app: M2IApp) -> None:
        super().__init__(level=logging.INFO)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        if not self.app.is_running:
            return
        level = "error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING else "info"
        # the dashboard's own errors (a failed worker) are toasted where they happen; the runner's pop up here
        toast = level == "error" and not record.name.startswith("tui.")
        try:
            self.app.post_message(RunnerNote(record.getMessage(), level, toast=toast))
        except Exception:  # a log line must never break the runner
            pass


@contextlib.contextmanager
def _logs_to(app: M2IApp) -> Iterator[None]:
    """While the app runs, terminal log handlers are set aside and records go to the event log."""
    root = logging.getLogger()
    taken = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    for h in taken:
        root.removeHandler(h)
    handler = _ToApp(app)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for h in taken:
            root.addHandler(h)


@contextlib.contextmanager
def _quits_on_signals(app: M2IApp) -> Iterator[None]:
    """SIGTERM and SIGHUP quit the app as ``q`` does, so Textual restores the terminal.

    With ``--run`` the runner counts them as ``m2i run`` does (:meth:`RunnerHost.signal`): it stops
    claiming and finishes what is in flight, the same signal repeated within half a second counts
    once, a second one exits at once. The handlers stay for the whole of :func:`run_app`, so a signal
    that arrives while the runner winds down after the app has gone is counted too.
    """

    def on_signal(signum: int, _frame: Any) -> None:
        if app.host is not None:
            app.host.signal(signum)
        loop = app.main_loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(app.exit)  # a signal handler runs between the loop's bytecodes

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def make_app(
    db: str | None,
    run: str | None = None,
    *,
    settings: Settings | None = None,
    refresh_s: float | None = 1.0,
    clock: Callable[[], float] = time.monotonic,
    busy_ms: int | None = None,
) -> M2IApp:
    """Build the dashboard for a database.

    Parameters
    ----------
    db : str or None
        SQLite path or URL; None: ``settings.db`` when running, else ``$M2I_DB`` or ``./m2i.db``.
    run : str or None
        Run id or name to follow; None follows the newest run.
    settings : m2i.config.Settings or None
        When given, the pipeline also runs in this process (``m2i tui --run``).
    refresh_s : float or None
        Seconds between reads; None reads only on demand (tests, screenshots).
    clock : callable
        Monotonic seconds for throughput and ETA (tests freeze it).
    busy_ms : int or None
        How long one read waits on a locked database before saying so.
    """
    if db is None and settings is not None:
        db = settings.db
    reader = Reader(db, run=run) if busy_ms is None else Reader(db, run=run, busy_ms=busy_ms)
    host = RunnerHost(settings, db=db) if settings is not None else None
    return M2IApp(reader=reader, actions=Actions(db), host=host, refresh_s=refresh_s, clock=clock)


def run_app(db: str | None, run: str | None, settings: Settings | None) -> None:
    """Run the dashboard in this terminal until the user quits (``m2i tui``).

    With ``settings`` the pipeline runs in the same process and is stopped gracefully on quit.
    """
    with contextlib.suppress(Exception):  # ask the terminal about graphics before Textual owns it
        import textual_image.widget  # noqa: F401
    app = make_app(db, run, settings=settings)
    with _quits_on_signals(app):
        with _logs_to(app):
            app.run()
        wind_down(app)


def wind_down(app: M2IApp) -> None:
    """After the app: close its store, wait for its runner's work in flight, raise the runner's error.

    Raises
    ------
    M2IError
        The embedded runner stopped with an error (or could not start), so ``m2i tui --run`` exits 1.
    """
    app.reader.close()
    host = app.host
    if host is not None:
        if host.running:
            with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
                print("waiting for the runner to finish the work in flight…", file=sys.stderr, flush=True)
            host.stop()
            host.join()
        if host.error:
            raise M2IError(host.error)
