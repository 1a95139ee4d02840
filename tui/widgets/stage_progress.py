"""One row per stage: a progress bar, the counts by status, throughput and ETA."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar

from tui.data import STAGE_ORDER, format_eta

COLS = ("pending", "running", "done", "failed")
WIDE_WIDTH = 78
"""Columns the table needs with its progress bars and full headings; narrower, it goes compact:
percentages only, short headings, narrower number columns (56 columns: fits a 60-column terminal)."""
SHORT = {"progress": "%", "pending": "pend", "running": "run", "failed": "fail"}


def _n(x: int) -> str:
    return f"{x / 1000:.0f}k" if x >= 100_000 else str(x)


class StageProgress(Horizontal):
    """Progress of one stage; :meth:`show` sets counts, rate (rows/min) and ETA (s)."""

    DEFAULT_CLASSES = "stage-row"

    def __init__(self, stage: str) -> None:
        super().__init__(id=f"stage-{stage}")
        self.stage = stage

    def compose(self) -> ComposeResult:
        yield Label(self.stage, classes="stage-name")
        yield ProgressBar(total=None, show_eta=False, show_percentage=True, classes="stage-bar")
        for col in COLS:
            yield Label("0", classes=f"stage-num stage-{col}")
        yield Label("-", classes="stage-rate")
        yield Label("-", classes="stage-eta")

    def show(self, counts: dict[str, int], rate: float | None, eta: float | None, *, paused: bool = False) -> None:
        total = sum(counts.values()) - counts.get("cancelled", 0)
        finished = counts.get("done", 0) + counts.get("failed", 0)
        self.query_one(ProgressBar).update(total=max(total, 1), progress=finished if total else 0)
        for col in COLS:
            self.query_one(f".stage-{col}", Label).update(_n(counts.get(col, 0)))
        self.query_one(".stage-rate", Label).update("-" if rate is None else f"{rate:.1f}")
        left = counts.get("pending", 0) + counts.get("running", 0)
        self.query_one(".stage-eta", Label).update(
            "-" if not total else "done" if not left else "paused" if paused else format_eta(eta))
        self.set_class(counts.get("failed", 0) > 0, "-has-failed")


class StagePanel(Vertical):
    """The four stages, in pipeline order, under a column heading."""

    DEFAULT_CLASSES = "stage-panel"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="stage-row stage-heading"):
            yield Label("stage", classes="stage-name")
            yield Label("progress", classes="stage-bar-heading", name="progress")
            for col in COLS:
                yield Label(col, classes="stage-num", name=col)
            yield Label("/min", classes="stage-rate")
            yield Label("ETA", classes="stage-eta")
        for stage in STAGE_ORDER:
            yield StageProgress(stage)

    def on_resize(self) -> None:
        narrow = self.content_size.width < WIDE_WIDTH
        if narrow == self.has_class("-narrow"):
            return
        self.set_class(narrow, "-narrow")
        for label in self.query(".stage-heading Label"):
            if label.name in SHORT:
                label.update(SHORT[label.name] if narrow else label.name)

    def show(self, counts: dict[str, dict[str, int]], rates: dict[str, tuple[float | None, float | None]], *,
             paused: bool = False) -> None:
        """``paused``: the run is paused, so a stage with work left shows no ETA but "paused"."""
        for stage in STAGE_ORDER:
            rate, eta = rates.get(stage, (None, None))
            self.query_one(f"#stage-{stage}", StageProgress).show(counts.get(stage, {}), rate, eta, paused=paused)
