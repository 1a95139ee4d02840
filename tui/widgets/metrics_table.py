"""Convergent vs divergent per metric: means, difference, 95 % CI, Holm p-value, effect size."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import DataTable

COLUMNS = ("metric", "conv", "div", "diff", "95% CI", "p (Holm)", "d_z")
WIDE_WIDTH = 74
"""Columns the table needs with three decimals and cell padding (71, and a d_z of 10 or more); narrower, it goes compact: two
decimals, a bare interval and ``p``, 60 columns in all, so that p and d_z stay in sight in a
60-column terminal instead of scrolling off to the right."""
COMPACT_HEADINGS = {"p (Holm)": "p"}


def _f(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def metric_cells(name: str, s: dict[str, Any], *, compact: bool = False) -> tuple:
    """The row of one metric; ``compact``: two decimals, as many figures as fit 60 columns."""
    d = 2 if compact else 3
    ci = s.get("ci95")
    ci_s = "-" if not ci or None in ci else (
        f"{ci[0]:+.2f},{ci[1]:+.2f}" if compact else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]")
    p = s.get("p_holm")  # diversity has no Holm-adjusted p: "-", as `m2i report` prints it
    sig = bool(s.get("significant"))
    dz = s.get("cohen_dz")
    return (
        Text(name, style="bold" if sig else ""),
        _f(s.get("mean_convergent"), f".{d}f"),
        _f(s.get("mean_divergent"), f".{d}f"),
        _f(s.get("mean_diff"), f"+.{d}f"),
        ci_s,
        Text(_f(p, f".{d + 1}f") + (("*" if compact else " *") if sig else ""), style="bold green" if sig else ""),
        # no d_z although there are pairs: the differences do not vary (sd 0), so it is undefined, not missing
        "n/a" if dz is None and (s.get("n_pairs") or 0) >= 2 else _f(dz, "+.1f" if compact and abs(dz or 0) >= 10 else "+.2f"),
    )


class MetricsTable(DataTable):
    """One row per metric of a ``compare_modes`` report (plus diversity); posts MetricHighlighted."""

    DEFAULT_CLASSES = "metrics-table"

    class MetricHighlighted(Message):
        """The cursor moved to a metric's row."""

        def __init__(self, metric: str) -> None:
            super().__init__()
            self.metric = metric

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._report: dict[str, Any] | None = None
        self._compact = False

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def on_resize(self) -> None:
        compact = 0 < self.size.width < WIDE_WIDTH
        if compact == self._compact:
            return
        self._compact = compact  # resized across the line: headings and cells are built again
        row = self.cursor_row
        self.clear(columns=True)
        self.add_columns(*(COMPACT_HEADINGS.get(c, c) if compact else c for c in COLUMNS))
        self.show(self._report)
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1))  # the plotted metric stays the chosen one

    def show(self, report: dict[str, Any] | None) -> None:
        """Fill from a report; keeps the cursor on the same metric."""
        self._report = report
        current = self.cursor_row
        self.clear()
        if not report:
            return
        metrics = report.get("metrics")
        for name, s in (metrics.items() if isinstance(metrics, dict) else ()):
            if isinstance(s, dict):  # a report of another shape (an imported run) shows what it can
                self.add_row(*metric_cells(name, s, compact=self._compact), key=name)
        if isinstance(report.get("diversity"), dict) and report["diversity"]:
            self.add_row(*metric_cells("diversity", report["diversity"], compact=self._compact),
                         key="diversity")
        if self.row_count:
            self.move_cursor(row=min(current, self.row_count - 1))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.post_message(self.MetricHighlighted(str(event.row_key.value)))
