"""The table of failed rows, with marks for a multi-row requeue."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui.data import FailureRow
from tui.widgets.styles import legible

COLUMNS = (("✓", 1), ("stage", 8), ("clip", 14), ("prompt", 6), ("tries", 5), ("error", None))


class FailuresTable(DataTable):
    """Failed rows of every stage; :attr:`marked` holds the keys (``stage:id``) the user marked."""

    DEFAULT_CLASSES = "failures-table"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.rows_by_key: dict[str, FailureRow] = {}
        self.marked: set[str] = set()

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.add_column(label, width=width)

    def show(self, failures: list[FailureRow]) -> None:
        """Replace the rows, keeping marks (of rows still failed) and the cursor's row (or its place)."""
        keys = [f.key for f in failures]
        if keys == list(self.rows_by_key) and all(
            self.rows_by_key[f.key] == f for f in failures
        ):
            return
        current, row = self.selected, self.cursor_row
        self.rows_by_key = {f.key: f for f in failures}
        self.marked &= set(keys)
        self.clear()
        for f in failures:
            self.add_row(*self._cells(f), key=f.key)
        if current is not None and current.key in self.rows_by_key:
            self.move_cursor(row=keys.index(current.key))
        elif self.row_count:  # the row went (requeued): the one that took its place, i.e. the next failure
            self.move_cursor(row=min(row, self.row_count - 1))

    def _cells(self, f: FailureRow) -> tuple:
        clip = f"{f.sample_id} {f.label}" if f.sample_id is not None else f.label
        prompt = f"{f.slot} {f.mode[:4]}" if f.slot is not None and f.mode else "-"
        error = f.error.splitlines()[0] if f.error else ""
        return (
            self._mark(f),
            f.stage, clip, prompt, f"{f.attempts}/{f.max_attempts}", Text(error, style=legible("red", self.app.no_color)),
        )

    def _mark(self, f: FailureRow) -> Text:
        return Text("●" if f.key in self.marked else " ", style=legible("bold yellow", self.app.no_color))

    @property
    def selected(self) -> FailureRow | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.rows_by_key.get(str(key))

    def toggle_mark(self) -> FailureRow | None:
        """Mark or unmark the row under the cursor; returns it."""
        f = self.selected
        if f is None:
            return None
        self.marked.symmetric_difference_update({f.key})
        self.update_cell(f.key, self.ordered_columns[0].key, self._mark(f))
        return f

    def clear_marks(self) -> None:
        for key in self.marked & set(self.rows_by_key):
            self.update_cell(key, self.ordered_columns[0].key, " ")
        self.marked.clear()

    def marked_rows(self) -> dict[str, list[int]]:
        """``{stage: [ids]}`` of the marked rows."""
        out: dict[str, list[int]] = {}
        for key in sorted(self.marked):
            f = self.rows_by_key[key]
            out.setdefault(f.stage, []).append(f.id)
        return out
