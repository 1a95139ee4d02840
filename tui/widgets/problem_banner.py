"""A one-sentence banner for a database problem (missing, locked, older schema); hidden otherwise."""

from __future__ import annotations

from textual.widgets import Static


class ProblemBanner(Static):
    """Shows ``Snapshot.problem``; hidden when there is none."""

    DEFAULT_CLASSES = "problem-banner"

    def on_mount(self) -> None:
        self.display = False

    def show(self, problem: str | None) -> None:
        self.display = bool(problem)
        self.update(problem or "")
