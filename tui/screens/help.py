"""The help screen: every key of every screen, read from the bindings themselves."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _key(binding: Binding) -> str:
    names = {"question_mark": "?", "left_square_bracket": "[", "right_square_bracket": "]", "escape": "esc"}
    return ",".join(names.get(k, k) for k in binding.key.split(","))


LONG = {
    "screen.dashboard": "Dashboard: progress per stage, throughput, ETA, live events",
    "screen.compare": "Compare: convergent vs divergent per metric, per-clip plot",
    "screen.failures": "Failures: failed rows, their errors, requeue",
    "screen.samples": "Samples: browse clips, enter opens one",
    "app.runs": "Runs: choose which run of the database every screen follows (or the newest)",
    "app.help": "This help",
    "app.quit": "Quit (with --run: the runner finishes its work in flight first)",
    "app.suspend": "Suspend to the shell; fg comes back (not with --run: the runner would stop too)",
    "dashboard.pause": "Pause or resume the run (work in flight finishes)",
    "failures.mark": "Mark or unmark the selected row",
    "failures.requeue": "Requeue the selected row (asks first)",
    "failures.requeue_marked": "Requeue the marked rows (asks first)",
    "failures.requeue_stage": "Requeue every failed row of the selected row's stage (asks first)",
    "failures.requeue_error": "Requeue the failed rows of the selected row's stage that failed the same way "
                              "(their error shares its cause, e.g. 'CUDA out of memory'; asks first)",
    "samples.open": "Open the selected clip: features, ABC, prompts, scores, image",
    "samples.next": "Next page of clips",
    "samples.prev": "Previous page of clips",
    "detail.back": "Back to the clip list",
    "detail.prev": "Show the previous prompt's image",
    "detail.next": "Show the next prompt's image",
}
"""Longer explanations by binding id; the footer shows the short description."""


def keys_table(sections: list[tuple[str, list]]) -> Table:
    """A two-column table: key, what it does; one heading row per section."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold yellow", no_wrap=True)
    table.add_column()
    for title, bindings in sections:
        table.add_row(f"[bold]{title}[/]", "")
        for b in bindings:
            b = b if isinstance(b, Binding) else Binding(*b)
            table.add_row(_key(b), LONG.get(b.id or "", b.description))
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the keys; any of escape, ? or q closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static("[bold]m2i dashboard — keys[/]  (mouse optional; esc closes)", id="help-title")
            yield Static(keys_table(self.sections), id="help-keys")

    def action_close(self) -> None:
        self.dismiss(None)
