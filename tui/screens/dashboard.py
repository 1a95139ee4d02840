"""Dashboard: the run, one progress row per stage with throughput and ETA, the live event log."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message

from tui.data import Snapshot, View
from tui.screens.base import DataScreen
from tui.widgets.event_log import EventLog
from tui.widgets.stage_progress import StagePanel


class DashboardScreen(DataScreen):
    """Progress at a glance; ``p`` pauses or resumes the run."""

    TITLE = "Dashboard"
    BINDINGS = [Binding("p", "toggle_pause", "Pause/resume", id="dashboard.pause")]

    class PauseRequested(Message):
        """The user asked to pause (``paused=True``) or resume the run."""

        def __init__(self, run_id: int, paused: bool) -> None:
            super().__init__()
            self.run_id = run_id
            self.paused = paused

    def __init__(self) -> None:
        super().__init__()
        self._snap: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield StagePanel(id="stages")
        log = EventLog(id="events")
        log.border_title = "events"
        yield log
        yield from self.compose_bottom()

    def forget_run(self) -> None:
        self.query_one(EventLog).reset()

    def show(self, view: View) -> None:
        super().show(view)
        self._snap = view.snap
        if view.snap.run is not None:
            self.query_one(StagePanel).show(view.snap.counts, view.rates, paused=view.snap.run.paused)
        log = self.query_one(EventLog)
        log.add(view.events)
        log.add_notes(view.notes)

    def action_toggle_pause(self) -> None:
        run = self._snap.run if self._snap else None
        if run is None:
            self.notify("No run to pause yet.", severity="warning")
            return
        self.post_message(self.PauseRequested(run.id, not run.paused))
