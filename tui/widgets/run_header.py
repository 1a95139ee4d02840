"""The two-line run header shown on every screen: run, state, LLM, image backend and device."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from tui.data import Snapshot
from tui.widgets.styles import legible, level_tag_style


class RunHeader(Static):
    """Run name and id, its state (working, starting, runner gone, nothing running, paused, idle), provider/model, image backend and device."""

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
        if run.cancelled:
            state, style = "  CANCELLED", level_tag_style("error", nc)
        elif run.paused:
            state, style = "  PAUSED", legible("bold yellow", nc)
        else:
            c = snap.counts if snap else {}
            flight = snap.in_flight if snap else None
            left = flight.left if flight else 0
            to_do = sum(v.get("pending", 0) for v in c.values()) + left
            states = {r["state"] for r in snap.runners} if snap else set()
            if (flight and flight.held) or "working" in states:
                state, style = "  working", legible("bold green", nc)
            elif "starting" in states:  # a runner loading its models (SDXL: minutes) holds no row yet
                state, style = f"  starting · {to_do} to do", legible("bold green", nc)
            elif left:  # rows still 'running' after their runner was killed used to read "working" until
                # somebody ran m2i again
                state, style = f"  runner gone · {to_do} to do", legible("bold yellow", nc)
            elif to_do:  # "active" said nothing of whether anything works on it (a runner stopped)
                state, style = f"  nothing running · {to_do} to do", legible("bold yellow", nc)
            else:
                state, style = "  idle", "dim"
        # one line each whatever the width (a wrapped line pushed the second out of the header): a
        # long run name gives way, so the state stays in view
        width = self.size.width
        name = Text(run.name)
        if width:
            name.truncate(max(1, width - line1.cell_len - cell_len(f"  run  (#{run.id}){state}")), overflow="ellipsis")
        line1.append("  run ").append_text(name).append(f" (#{run.id})").append(state, style=style)
        backend = snap.actual_backend or run.images
        device = snap.actual_device or run.device
        line2 = Text(f" LLM {run.llm}/{run.model} · images {backend} on {device}", style="dim")
        for line in (line1, line2):
            if width:
                line.truncate(width, overflow="ellipsis")
        self.update(Text("\n").join([line1, line2]))
