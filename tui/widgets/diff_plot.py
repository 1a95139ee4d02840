"""Per-clip differences (divergent minus convergent) of one metric, as a bar chart."""

from __future__ import annotations

from typing import Any

from textual.reactive import reactive
from textual_plotext import PlotextPlot


def clip_differences(report: dict[str, Any] | None, metric: str) -> list[tuple[Any, float]]:
    """``[(sample_id, divergent mean - convergent mean)]`` for clips that have both modes."""
    out: list[tuple[Any, float]] = []
    for clip in (report or {}).get("clips") or []:
        if metric == "diversity":
            m = clip.get("diversity") or {}
        else:
            m = (clip.get("means") or {}).get(metric) or {}
        c, d = m.get("convergent"), m.get("divergent")
        if c is not None and d is not None:
            out.append((clip.get("sample_id"), float(d) - float(c)))
    return out


class DiffPlot(PlotextPlot):
    """Bar per clip of the chosen ``metric``; set :attr:`report` and :attr:`metric` to redraw."""

    DEFAULT_CLASSES = "diff-plot"

    metric: reactive[str] = reactive("overall")
    report: reactive[dict | None] = reactive(None, always_update=True)

    def _redraw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        diffs = clip_differences(self.report, self.metric)
        if not diffs:
            plt.title(f"{self.metric}: no clip has both modes scored yet")
            self.refresh()
            return
        xs = list(range(1, len(diffs) + 1))
        ys = [d for _, d in diffs]
        plt.bar(xs, ys, width=0.6)
        plt.hline(0.0)
        plt.title(f"{self.metric}: divergent - convergent, per clip ({len(diffs)} clips)")
        plt.xlabel("clip")
        if len(xs) <= 20:
            plt.xticks(xs, [str(sid) for sid, _ in diffs])
        self.refresh()

    def watch_metric(self) -> None:
        self._redraw()

    def watch_report(self) -> None:
        self._redraw()

    def on_mount(self) -> None:
        self._redraw()
