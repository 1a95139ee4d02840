"""Compare: convergent vs divergent per metric, and the per-clip differences of the chosen one."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.widgets import Static

from m2i.work import describe_work_left, work_left
from tui.data import View, Want
from tui.screens.base import DataScreen
from tui.widgets.diff_plot import DiffPlot
from tui.widgets.metrics_table import MetricsTable


class CompareScreen(DataScreen):
    """The ``modes`` report written by the score stage; ↑/↓ choose the metric plotted."""

    TITLE = "Compare"

    def __init__(self) -> None:
        super().__init__()
        self._report_id: int | None = None
        self._shown = False

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Static("no scores yet", id="compare-summary")
        yield MetricsTable(id="metrics")
        yield DiffPlot(id="diff-plot")
        yield from self.compose_bottom()

    def want(self, base: Want) -> Want:
        return Want(events_after=base.events_after, report_id=base.report_id, report=True)

    def forget_run(self) -> None:
        self._report_id, self._shown = None, False

    def show(self, view: View) -> None:
        super().show(view)
        report, report_id = view.report, view.report_id
        summary = self.query_one("#compare-summary", Static)
        if report is None and view.snap.report_id is not None:
            summary.update("loading the comparison…")
            return
        if not report:
            summary.update(_no_scores_yet(view.snap.counts))
        if report_id == self._report_id and self._shown:
            return
        self._report_id = report_id
        self._shown = True
        if report:
            # numpy: loaded when a comparison is first shown
            from m2i.scoring.stats import few_pairs_note, significance_floor_note, unpaired_note

            summary.update(unpaired_note(report) or (
                f"{report.get('n_pairs') or 0} clips paired · {report.get('n_prompts') or 0} prompts · "
                f"diff = div - conv · * p < {report.get('alpha') or 0.05} · d_z effect size"
                + "".join(f" · {note}" for note in (few_pairs_note(report), significance_floor_note(report)) if note)
            ))
        self.query_one(MetricsTable).show(report)
        self.query_one(DiffPlot).report = report

    @on(MetricsTable.MetricHighlighted)
    def _metric(self, event: MetricsTable.MetricHighlighted) -> None:
        self.query_one(DiffPlot).metric = event.metric


def _no_scores_yet(counts: dict[str, dict[str, int]]) -> str:
    """Why the comparison is empty: the score stage scores a run as a whole (originality compares
    each prompt with the rest of the run), so it waits until every clip is analysed and every
    prompt written."""
    before = describe_work_left(counts, ("analyze", "generate"))
    if before:
        return f"no scores yet: the run is scored as a whole once its clips are analysed and its prompts written ({before})"
    scores = work_left(counts).get("score")
    if scores:
        return f"no scores yet: {scores} prompt(s) wait for the score stage (`m2i run` or `m2i tui --run` does it)"
    return "no scores yet"
