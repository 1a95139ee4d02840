"""The two-line run header shown on every screen: run, state, LLM, image backend and device."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.data import Snapshot
from tui.widgets.styles import legible, level_tag_style


class RunHeader(Static):
    """Run name and id, running/paused state, provider/model, image backend and device."""

    DEFAULT_CLASSES = "run-header"

    def __init__(self, *, screen_title: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.screen_title = screen_title

    def on_mount(self) -> None:
        self.show(None)

    def show(self, snap: Snapshot | None) -> None:
        """Redraw from a snapshot (None: nothing read yet)."""
        line1 = Text()
        nc = self.app.no_color
        line1.append(f" m2i · {self.screen_title}", style="bold")
        run = snap.run if snap is not None else None
        if run is None:
            line1.append("  waiting for a run…", style="dim")
            self.update(line1)
            return
        line1.append(f"  run {run.name} (#{run.id})")
        if run.cancelled:
            line1.append("  CANCELLED", style=level_tag_style("error", nc))
        elif run.paused:
            line1.append("  PAUSED", style=legible("bold yellow", nc))
        else:
            c = snap.counts if snap else {}
            active = any(v.get("pending", 0) + v.get("running", 0) for v in c.values())
            line1.append("  active" if active else "  idle", style=legible("bold green", nc) if active else "dim")
        backend = snap.actual_backend or run.images
        device = snap.actual_device or run.device
        line2 = Text(f" LLM {run.llm}/{run.model} · images {backend} on {device}", style="dim")
        self.update(Text("\n").join([line1, line2]))
