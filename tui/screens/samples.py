"""Samples: browse the run's clips page by page; enter opens a clip's detail."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from tui.data import SAMPLES_PAGE, View, Want
from tui.screens.base import DataScreen, RefreshWanted
from tui.screens.detail import SampleDetailScreen
from tui.widgets.samples_table import SamplesTable


class SamplesScreen(DataScreen):
    """Clips with their key, tempo, mood, prompts written and mean overall score."""

    TITLE = "Samples"
    BINDINGS = [
        Binding("enter", "open", "Open", id="samples.open"),
        Binding("n", "page(1)", "Next page", id="samples.next"),
        Binding("b", "page(-1)", "Prev page", id="samples.prev"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page = 0

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Static("", id="samples-summary")
        yield SamplesTable(id="samples")
        yield from self.compose_bottom()

    def want(self, base: Want) -> Want:
        return Want(events_after=base.events_after, report_id=base.report_id, samples_page=self.page)

    def forget_run(self) -> None:
        self.page = 0

    def show(self, view: View) -> None:
        super().show(view)
        snap = view.snap
        if snap.samples is None or snap.want.samples_page != self.page:
            return  # read for another page (flipped since): the next snapshot brings this one
        self.page = snap.samples_page
        pages = max(1, -(-snap.samples_total // SAMPLES_PAGE))
        self.query_one("#samples-summary", Static).update(
            f"{snap.samples_total} clips · page {snap.samples_page + 1}/{pages} · enter: details"
        )
        self.query_one(SamplesTable).show(snap.samples)

    def action_page(self, step: int) -> None:
        self.page = max(0, self.page + step)
        self.post_message(RefreshWanted())

    def action_open(self) -> None:
        sid = self.query_one(SamplesTable).selected_id
        if sid is not None:
            self.app.push_screen(SampleDetailScreen(sid))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()
