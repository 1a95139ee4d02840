"""The live event log: one line per run event, errors in red and warnings in yellow."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from tui.data import EventRow

STYLES = {"error": "bold red", "warning": "yellow", "info": ""}


def event_text(e: EventRow) -> Text:
    t = Text(e.ts[11:19] + " ", style="dim")
    t.append(f"{e.level[:4]:<4} ", style=STYLES.get(e.level, "") or "dim")
    if e.stage:
        t.append(f"{e.stage}" + (f"#{e.item}" if e.item is not None else "") + " ", style="cyan")
    t.append(e.message, style=STYLES.get(e.level, ""))
    return t


class EventLog(RichLog):
    """Appends events it has not shown yet (by id), keeping the newest ``max_lines``."""

    DEFAULT_CLASSES = "event-log"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=500, wrap=True, markup=False, auto_scroll=True, min_width=20)
        self.last_id = 0
        self.notes_shown = 0

    def reset(self) -> None:
        """Empty the log; the next :meth:`add` and :meth:`add_notes` start again from the first."""
        self.clear()
        self.last_id = 0
        self.notes_shown = 0

    def add(self, events: Iterable[EventRow]) -> None:
        for e in events:
            if e.id > self.last_id:
                self.write(event_text(e), expand=True)
                self.last_id = e.id

    def add_notes(self, notes: list[tuple[int, str, str]]) -> None:
        """Append the ``(seq, level, text)`` notes not shown yet."""
        for seq, level, text in notes:
            if seq >= self.notes_shown:
                self.note(text, level=level)
                self.notes_shown = seq + 1

    def note(self, message: str, *, level: str = "info") -> None:
        """A line from this process (the embedded runner's log), not from the database."""
        t = Text("         ")
        t.append(f"{level[:4]:<4} ", style=STYLES.get(level, "") or "dim")
        t.append(message, style=STYLES.get(level, ""))
        self.write(t, expand=True)
