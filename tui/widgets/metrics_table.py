"""Convergent vs divergent per metric: means, difference, 95 % CI, Holm p-value, effect size."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import DataTable

COLUMNS = ("metric", "conv", "div", "diff", "95% CI", "p (Holm)", "d_z")


def _f(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def metric_cells(name: str, s: dict[str, Any]) -> tuple:
    ci = s.get("ci95")
    ci_s = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci and None not in ci else "-"
    p = s.get("p_holm")  # diversity has no Holm-adjusted p: "-", as `m2i report` prints it
    sig = bool(s.get("significant"))
    return (
        Text(name, style="bold" if sig else ""),
        _f(s.get("mean_convergent"), ".3f"),
        _f(s.get("mean_divergent"), ".3f"),
        _f(s.get("mean_diff"), "+.3f"),
        ci_s,
        Text(_f(p, ".4f") + (" *" if sig else ""), style="bold green" if sig else ""),
        # no d_z although there are pairs: the differences do not vary (sd 0), so it is undefined, not missing
        "n/a" if s.get("cohen_dz") is None and (s.get("n_pairs") or 0) >= 2 else _f(s.get("cohen_dz"), "+.2f"),
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

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show(self, report: dict[str, Any] | None) -> None:
        """Fill from a report; keeps the cursor on the same metric."""
        current = self.cursor_row
        self.clear()
        if not report:
            return
        metrics = report.get("metrics")
        for name, s in (metrics.items() if isinstance(metrics, dict) else ()):
            if isinstance(s, dict):  # a report of another shape (an imported run) shows what it can
                self.add_row(*metric_cells(name, s), key=name)
        if isinstance(report.get("diversity"), dict) and report["diversity"]:
            self.add_row(*metric_cells("diversity", report["diversity"]), key="diversity")
        if self.row_count:
            self.move_cursor(row=min(current, self.row_count - 1))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.post_message(self.MetricHighlighted(str(event.row_key.value)))
