"""The run picker: which run of the database the dashboard follows.

Dismissed with the choice: a run id as text, ``""`` for "the newest run" (what ``m2i tui``
without ``--run-id`` does), or None (escape: nothing changes).
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from m2i.errors import M2IError
from tui.data import RunChoice

NEWEST = "newest"
"""The option id of "follow the newest run"."""


def describe(run: RunChoice) -> str:
    """``#3 claude-vs-ollama · 11-28 06:33 · anthropic claude-sonnet-4-6 · clips 100/100 · prompts 500/500 · images 480/500``
    (then `` · PAUSED``, `` · 1 runner at work`` where they apply)."""
    def done(stage: str, what: str) -> str:
        c = run.counts.get(stage) or {}
        return f"{what} {c.get('done', 0)}/{sum(c.values())}"

    state = " · PAUSED" if run.paused else ""
    state += " · CANCELLED" if run.cancelled else ""
    state += f" · {run.runners} runner{'s' if run.runners > 1 else ''} at work" if run.runners else ""
    parts = [f"#{run.id} {run.name}", run.created_at[5:16], f"{run.llm} {run.model}",
             done("analyze", "clips"), done("generate", "prompts"), done("render", "images")]
    return " · ".join(parts) + state


class RunsScreen(ModalScreen[str | None]):
    """Lists the database's runs, newest first; enter follows the highlighted one."""

    BINDINGS = [
        Binding("n", "newest", "Follow the newest run", id="runs.newest"),
        Binding("escape,o,q", "close", "Close", id="runs.close"),
    ]

    def __init__(self, current: int | None, following_newest: bool) -> None:
        super().__init__()
        self.current = current
        self.following_newest = following_newest

    def compose(self) -> ComposeResult:
        with Vertical(id="runs-box"):
            yield Static("Runs in this database: enter follows one · n the newest · esc closes", id="runs-title")
            yield OptionList(id="runs-list")

    def on_mount(self) -> None:
        self.query_one(OptionList).loading = True
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            runs = self.app.reader.runs()  # type: ignore[attr-defined]
        except M2IError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._fill, runs)

    def _failed(self, text: str) -> None:
        listing = self.query_one(OptionList)
        listing.loading = False
        self.query_one("#runs-title", Static).update(f"Cannot list the runs: {text}")

    def _fill(self, runs: list[RunChoice]) -> None:
        listing = self.query_one(OptionList)
        listing.loading = False
        newest = "follow the newest run" + (" (as now)" if self.following_newest else "")
        options = [Option(newest, id=NEWEST)]
        for run in reversed(runs):
            mark = "▶ " if run.id == self.current else "  "
            options.append(Option(mark + describe(run), id=str(run.id)))
        listing.add_options(options)
        chosen = NEWEST if self.following_newest or self.current is None else str(self.current)
        ids = [o.id for o in options]
        listing.highlighted = ids.index(chosen) if chosen in ids else 0
        listing.focus()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss("" if event.option.id == NEWEST else event.option.id)

    def action_newest(self) -> None:
        self.dismiss("")

    def action_close(self) -> None:
        self.dismiss(None)
