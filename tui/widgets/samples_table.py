"""The table of clips on the Samples screen."""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from tui.data import SampleRow
from tui.widgets.styles import legible

COLUMNS = (("#", 6), ("clip", 20), ("status", 7), ("key", 8), ("tempo", 7), ("prompts", 7), ("overall", 7), ("mood", None))
STATUS_STYLE = {"failed": "red", "running": "cyan", "pending": "dim", "done": "green", "cancelled": "dim"}
_PLACE = re.compile(r"[#@][\d.]+$")  # a file name's row (label.npy#12) or window (song.wav@30)


def fit_label(label: str, width: int) -> str:
    """A clip label cut to ``width`` terminal cells: a file name keeps its end, the row or window
    that tells the clips of one file apart (every row of label_data_with_16kHz_audio.npy read
    "label_data_wit"); a track name keeps its start. Wide (CJK) characters count two cells."""
    if cell_len(label) <= width:
        return label
    keep_end = bool(_PLACE.search(label))
    chars = reversed(label) if keep_end else iter(label)
    out: list[str] = []
    used = 0
    for ch in chars:
        used += cell_len(ch)
        if used > width - 1:
            break
        out.append(ch)
    return "…" + "".join(reversed(out)) if keep_end else "".join(out) + "…"


class SamplesTable(DataTable):
    """One row per clip (sample) of the current page; ``#`` and the row key are the sample id (as `m2i sql` shows it)."""

    DEFAULT_CLASSES = "samples-table"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self._rows: list[SampleRow] = []

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.add_column(label, width=width)

    def show(self, rows: list[SampleRow]) -> None:
        if rows == self._rows:
            return
        cursor = self.cursor_row
        self._rows = list(rows)
        self.clear()
        for r in rows:
            self.add_row(
                str(r.id), fit_label(r.label, COLUMNS[1][1]), Text(r.status, style=legible(STATUS_STYLE.get(r.status, ""), self.app.no_color)),
                r.key or "-", r.tempo or "-", f"{r.prompts_done}/{r.prompts_total}",
                "-" if r.overall is None else f"{r.overall:.3f}", r.mood or "-", key=str(r.id),
            )
        if self.row_count:
            self.move_cursor(row=min(cursor, self.row_count - 1))

    @property
    def selected_id(self) -> int | None:
        if not self.row_count:
            return None
        return int(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
