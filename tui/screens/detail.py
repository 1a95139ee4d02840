"""One clip: the eight features, the ABC, the prompts with their scores, and a prompt's image."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from m2i.features import FEATURE_NAMES
from tui.data import METRICS, PromptView, SampleDetail, View, Want
from tui.screens.base import DataScreen, RefreshWanted
from tui.widgets.image_view import ImageView
from tui.widgets.styles import legible

SHORT = {"originality": "orig", "elaboration": "elab", "alignment": "align", "coherence": "coh", "overall": "overall"}


def features_text(d: SampleDetail, *, no_color: bool = False) -> Group:
    head = Text()
    named = f"{d.label} ({d.source})" if d.label != d.source.rsplit("/", 1)[-1] else d.source
    head.append(f"clip {d.id} · {named} · {d.status}", style="bold")
    if d.duration_s:
        head.append(f" · {d.duration_s:.1f} s")
    if d.error:
        head.append(f"\n{d.error}", style=legible("red", no_color))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for name in FEATURE_NAMES:
        grid.add_row(name.replace("_", " "), d.features.get(name) or "-")
    return Group(head, grid)


def prompt_text(p: PromptView, *, current: bool, no_color: bool = False) -> Text:
    def st(style: str):
        return legible(style, no_color)

    t = Text()
    t.append("▶ " if current else "  ", style=st("bold yellow"))
    t.append(f"{p.slot} {p.mode} T={p.temperature:g}", style=st("bold magenta" if p.mode == "divergent" else "bold cyan"))
    t.append(f" · {p.status}", style=st("red") if p.status == "failed" else "dim")
    if p.title:
        t.append(f" · {p.title}", style="bold")
    if p.error and p.status != "done":
        t.append(f"\n  {p.error}", style=st("red"))
    if p.text:
        t.append(f"\n  {p.text}")
    if p.image_prompt:
        t.append(f"\n  image: {p.image_prompt}", style="italic dim")
    if any(v is not None for v in p.scores.values()):
        t.append("\n  ")
        t.append("  ".join(f"{SHORT[m]} {p.scores[m]:.2f}" for m in METRICS if p.scores.get(m) is not None),
                 style=st("green"))
    return t


class SampleDetailScreen(DataScreen):
    """Detail of one sample; ``[``/``]`` choose whose image is shown, escape goes back."""

    TITLE = "Sample"
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", id="detail.back"),
        Binding("left_square_bracket", "prompt(-1)", "Prev image", id="detail.prev"),
        Binding("right_square_bracket", "prompt(1)", "Next image", id="detail.next"),
    ]

    def __init__(self, sample_id: int) -> None:
        super().__init__()
        self.sample_id = sample_id
        self.current = 0
        self._detail: SampleDetail | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Horizontal(id="detail-body"):
            with VerticalScroll(id="detail-text"):
                yield Static("loading…", id="detail-features")
                yield Static("", id="detail-prompts")
                yield Static("", id="detail-abc")
            yield ImageView(id="detail-image")
        yield from self.compose_bottom()

    def want(self, base: Want) -> Want:
        return Want(events_after=base.events_after, report_id=base.report_id, detail=self.sample_id)

    def show(self, view: View) -> None:
        super().show(view)
        if view.snap.want.detail != self.sample_id:
            return  # read before this clip was opened: keep "loading…" until its snapshot comes
        d = view.snap.detail
        if d is None:
            if view.snap.run is not None and view.snap.problem is None:
                self.query_one("#detail-features", Static).update(f"sample {self.sample_id} is not in this run")
            return
        if d == self._detail:
            return
        self._detail = d
        self.query_one("#detail-features", Static).update(features_text(d, no_color=self.app.no_color))
        abc = d.abc or ("(no ABC transcription yet)" if d.melody_heard else "(no melody heard, so no ABC)")
        self.query_one("#detail-abc", Static).update(Text(abc, style="dim"))
        self._draw_prompts()

    def _draw_prompts(self) -> None:
        d = self._detail
        if d is None:
            return
        prompts = d.prompts
        if not prompts:
            self.query_one("#detail-prompts", Static).update("no prompts yet")
            self.query_one(ImageView).show(None, status=None, caption="")
            return
        self.current = max(0, min(self.current, len(prompts) - 1))
        body = Text("\n").join(prompt_text(p, current=i == self.current, no_color=self.app.no_color) for i, p in enumerate(prompts))
        self.query_one("#detail-prompts", Static).update(body)
        p = prompts[self.current]
        self.query_one(ImageView).show(
            p.image_path, status=p.image_status,
            caption=f"prompt {p.slot} ({p.mode}) {self.current + 1}/{len(prompts)}",
        )

    def action_prompt(self, step: int) -> None:
        self.current += step
        self._draw_prompts()

    def action_back(self) -> None:
        self.dismiss()

    def on_screen_resume(self) -> None:
        self.post_message(RefreshWanted())
