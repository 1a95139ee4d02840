"""The live event log: one line per run event, errors in red and warnings in yellow."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from tui.data import EventRow
from tui.widgets.styles import LEVEL_STYLES, legible, level_tag_style


def _line(prefix: Text, level: str, stage: str | None, message: str, no_color: bool) -> Text:
    prefix.append(f"{level[:4]:<4} ", style=level_tag_style(level, no_color))
    if stage:
        prefix.append(stage + " ", style=legible("cyan", no_color))
    prefix.append(message, style=legible(LEVEL_STYLES.get(level, ""), no_color))
    return prefix


def event_text(e: EventRow, *, no_color: bool = False) -> Text:
    stage = None if not e.stage else e.stage + (f"#{e.item}" if e.item is not None else "")
    return _line(Text(e.ts[11:19] + " ", style="dim"), e.level, stage, e.message, no_color)


class EventLog(RichLog):
    """Appends events it has not shown yet (by id), keeping the newest ``max_lines``."""

    DEFAULT_CLASSES = "event-log"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=500, wrap=True, markup=False, auto_scroll=True, min_width=20)
        self.last_id = 0
        self.notes_shown = 0
        self._texts: deque[Text] = deque(maxlen=self.max_lines)
        self._wrapped_at: int | None = None

    def reset(self) -> None:
        """Empty the log; the next :meth:`add` and :meth:`add_notes` start again from the first."""
        self.clear()
        self._texts.clear()
        self.last_id = 0
        self.notes_shown = 0

    def _append(self, text: Text) -> None:
        self._texts.append(text)
        self.write(text, expand=True)

    def on_resize(self) -> None:
        """Wrap every line again at the new width (RichLog wraps a line once, when written)."""
        width = self.scrollable_content_region.width
        if self._wrapped_at is not None and width != self._wrapped_at and self._size_known:
            self.clear()
            for text in self._texts:
                self.write(text, expand=True)
        self._wrapped_at = width

    def add(self, events: Iterable[EventRow]) -> None:
        for e in events:
            if e.id > self.last_id:
                self._append(event_text(e, no_color=self.app.no_color))
                self.last_id = e.id

    def add_notes(self, notes: list[tuple[int, str, str]]) -> None:
        """Append the ``(seq, level, text)`` notes not shown yet."""
        for seq, level, text in notes:
            if seq >= self.notes_shown:
                self.note(text, level=level)
                self.notes_shown = seq + 1

    def note(self, message: str, *, level: str = "info") -> None:
        """A line from this process (the embedded runner's log), not from the database."""
        self._append(_line(Text("         "), level, None, message, self.app.no_color))
