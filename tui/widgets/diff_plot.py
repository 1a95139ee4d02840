"""Per-clip differences (divergent minus convergent) of one metric, as a bar chart."""

from __future__ import annotations

from typing import Any

from textual.reactive import reactive
from textual_plotext import PlotextPlot

MAX_BARS = 60
"""Above this many clips the per-clip bars become a histogram of the differences."""

COMPACT_BELOW = 9
"""A plot shorter than this many rows (a short tmux pane) leaves out its title and axis label, which
took two of the few rows and left the bars one row to differ in; the metrics table's cursor names
the metric plotted."""


def clip_differences(report: dict[str, Any] | None, metric: str) -> list[tuple[Any, float]]:
    """``[(sample_id, divergent mean - convergent mean)]`` of a condensed report (clips with both modes)."""
    return list(((report or {}).get("clip_diffs") or {}).get(metric) or [])


class DiffPlot(PlotextPlot):
    """Bar per clip of the chosen ``metric``; set :attr:`report` and :attr:`metric` to redraw."""

    DEFAULT_CLASSES = "diff-plot"

    metric: reactive[str] = reactive("overall")
    report: reactive[dict | None] = reactive(None, always_update=True)

    _compact = False

    def render(self) -> Any:
        compact = 0 < self.size.height < COMPACT_BELOW
        if compact != self._compact:  # resized across the line: the figure is built again for the new height
            self._compact = compact
            self._draw()
        return super().render()

    def _redraw(self) -> None:
        self._draw()
        self.refresh()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        diffs = clip_differences(self.report, self.metric)
        if not diffs:
            plt.title(f"{self.metric}: no clip has both modes scored yet")
            return
        ys = [d for _, d in diffs]
        if len(diffs) > MAX_BARS:
            plt.hist(ys, bins=40)
            plt.vline(0.0)
            if not self._compact:
                plt.title(f"{self.metric}: divergent - convergent, {len(diffs)} clips (histogram)")
                plt.xlabel("difference")
            return
        xs = list(range(1, len(diffs) + 1))
        plt.bar(xs, ys, width=0.6)
        plt.hline(0.0)
        if not self._compact:
            plt.title(f"{self.metric}: divergent - convergent, per clip ({len(diffs)} clips)")
            plt.xlabel("clip (sample id)")
        # ticks name the clips by sample id (the Samples screen's #, the id `m2i sql` shows), never by position;
        # above 20 clips every k-th bar is named
        step = -(-len(xs) // 20)
        plt.xticks(xs[::step], [str(sid) for sid, _ in diffs[::step]])

    def watch_metric(self) -> None:
        self._redraw()

    def watch_report(self) -> None:
        self._redraw()

    def on_mount(self) -> None:
        self._redraw()
