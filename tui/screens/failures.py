"""Failures: every failed row with its error; requeue the selected, the marked or a whole stage."""

from __future__ import annotations

import re

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from tui.data import FAILURES_LIMIT, STAGE_ORDER, View, Want
from tui.screens.base import DataScreen
from tui.screens.confirm import ConfirmScreen
from tui.widgets.failures_table import FailuresTable


class FailuresScreen(DataScreen):
    """Requeued rows go back to pending; a runner on the same database picks them up."""

    TITLE = "Failures"
    BINDINGS = [
        Binding("space", "mark", "Mark", id="failures.mark"),
        Binding("r", "requeue_selected", "Requeue", id="failures.requeue"),
        Binding("m", "requeue_marked", "Marked", id="failures.requeue_marked"),
        Binding("a", "requeue_stage", "Stage", id="failures.requeue_stage"),
        # not in the footer, which then lost "? Help  q Quit" at 80 columns; listed by ? and in docs/tui.md
        Binding("e", "requeue_same_error", "Same error", id="failures.requeue_error", show=False),
    ]

    class RequeueRequested(Message):
        """Confirmed: put these failed rows (``{stage: ids}``) or all failed rows of ``stage`` back."""

        def __init__(self, run_id: int, *, rows: dict[str, list[int]] | None = None, stage: str | None = None,
                     error: str | None = None, what: str = "") -> None:
            super().__init__()
            self.run_id = run_id
            self.rows = rows
            self.stage = stage
            self.error = error
            self.what = what

    def __init__(self) -> None:
        super().__init__()
        self._view: View | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        yield Static("", id="failures-summary")
        yield FailuresTable(id="failures")
        with VerticalScroll(id="failure-error-box"):  # a traceback can be long: tab here, then ↑/↓
            yield Static("", id="failure-error")
        yield from self.compose_bottom()

    def want(self, base: Want) -> Want:
        return Want(events_after=base.events_after, report_id=base.report_id, failures=True)

    def forget_run(self) -> None:
        self.query_one(FailuresTable).marked.clear()

    def show(self, view: View) -> None:
        super().show(view)
        self._view = view
        snap = view.snap
        if snap.run is None:
            return
        table = self.query_one(FailuresTable)
        if snap.failures is not None:
            table.show(snap.failures)
            self._show_error()
        self._summary()

    @on(DataTable.RowHighlighted, "#failures")
    def _highlighted(self) -> None:
        self._show_error()

    def _show_error(self) -> None:
        f = self.query_one(FailuresTable).selected
        box = self.query_one("#failure-error", Static)
        if f is None:
            box.update("")
            return
        head = f"{f.stage} #{f.id} · clip {f.sample_id} {f.source}" + (f" · prompt {f.slot} {f.mode}" if f.mode else "")
        box.update(Text.assemble((head + "\n", "bold"), (f.error or "(no error text)", "red")))

    def _summary(self) -> None:
        if self._view is None:
            return
        counts = self._view.snap.counts
        parts = [f"{s} {counts.get(s, {}).get('failed', 0)}" for s in STAGE_ORDER]
        total = sum(counts.get(s, {}).get("failed", 0) for s in STAGE_ORDER)
        table = self.query_one(FailuresTable)
        text = f"failed: {' · '.join(parts)} · marked {len(table.marked)}"
        if total > table.row_count >= FAILURES_LIMIT:
            text += f" (first {FAILURES_LIMIT} per stage listed)"
        if total == 0:
            text = "no failed rows"
        self.query_one("#failures-summary", Static).update(text)

    def _run_id(self) -> int | None:
        run = self._view.snap.run if self._view else None
        return run.id if run else None

    def _confirm(self, question: str, message: RequeueRequested, *, clear_marks: bool = False) -> None:
        def answered(ok: bool | None) -> None:
            if ok:
                if clear_marks:
                    self.query_one(FailuresTable).clear_marks()
                    self._summary()
                self.post_message(message)

        self.app.push_screen(ConfirmScreen(question), answered)

    def action_mark(self) -> None:
        self.query_one(FailuresTable).toggle_mark()
        self._summary()

    def _selected(self):
        """The highlighted failure and the run's id, or None (after saying so) when there is none."""
        f = self.query_one(FailuresTable).selected
        run_id = self._run_id()
        if f is None or run_id is None or self._view is None:
            self.notify("No failed row selected.", severity="warning")
            return None
        return f, run_id

    def action_requeue_selected(self) -> None:
        if (picked := self._selected()) is None:
            return
        f, run_id = picked
        what = f"{f.stage} row {f.id} (clip {f.sample_id})"
        self._confirm(f"Requeue {what}?", self.RequeueRequested(run_id, rows={f.stage: [f.id]}, what=what))

    def action_requeue_marked(self) -> None:
        table = self.query_one(FailuresTable)
        rows = table.marked_rows()
        run_id = self._run_id()
        if not rows or run_id is None:
            self.notify("No rows marked; mark rows with space first.", severity="warning")
            return
        n = sum(len(v) for v in rows.values())
        what = f"{n} marked row(s)"
        self._confirm(f"Requeue {what}?", self.RequeueRequested(run_id, rows=rows, what=what), clear_marks=True)

    def action_requeue_stage(self) -> None:
        if (picked := self._selected()) is None or self._view is None:
            return
        f, run_id = picked
        n = self._view.snap.counts.get(f.stage, {}).get("failed", 0)
        what = f"all {n} failed {f.stage} row(s)"
        self._confirm(f"Requeue {what}?", self.RequeueRequested(run_id, stage=f.stage, what=what))

    def action_requeue_same_error(self) -> None:
        if (picked := self._selected()) is None:
            return
        f, run_id = picked
        cause = error_cause(f.error)
        if not cause:
            self.notify("This row recorded no error text to match.", severity="warning")
            return
        what = f"failed {f.stage} rows whose error contains {cause!r}"
        self._confirm(f"Requeue the {what}?", self.RequeueRequested(run_id, stage=f.stage, error=cause, what=what))


_ERROR_CLASS = re.compile(r"^(?:[\w.]*(?:Error|Exception|Interrupt)\s*:\s*)+")


def error_cause(error: str | None) -> str:
    """What rows that failed the same way share in their error: its first line (a traceback's last)
    without the exception's name, up to the first ". ", "; " or ": " (``CUDA out of memory`` of
    ``torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB ...``, whose figures
    differ from row to row)."""
    lines = [x for x in (error or "").strip().splitlines() if x.strip()]
    if not lines:
        return ""
    line = _ERROR_CLASS.sub("", lines[-1] if lines[0].startswith("Traceback") else lines[0])  # a traceback ends with it
    for stop in (". ", "; ", ": "):
        line = line.split(stop, 1)[0]
    return line.strip().rstrip(".")
