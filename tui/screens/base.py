"""What every data screen shares: the run header, the problem banner, and how it gets its data.

The app reads the store in a worker thread and hands each fresh :class:`~tui.data.View` to
the visible screen through :meth:`DataScreen.show` (attributes down). A screen says what it
needs through :meth:`DataScreen.want` and asks for a refresh with a :class:`RefreshWanted`
message (messages up); it never reaches into the app's state.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from tui.data import View, Want
from tui.widgets.problem_banner import ProblemBanner
from tui.widgets.run_header import RunHeader


class RefreshWanted(Message):
    """A screen needs fresh data now (it was shown, or its selection changed)."""


class DataScreen(Screen):
    """A screen fed with snapshots."""

    TITLE = ""

    def __init__(self) -> None:
        super().__init__()
        self._origin: tuple | None = None

    def compose_top(self) -> ComposeResult:
        yield RunHeader(screen_title=self.TITLE, id="run-header")
        yield ProblemBanner(id="problem")

    def compose_bottom(self) -> ComposeResult:
        yield Footer()

    def want(self, base: Want) -> Want:
        """What to read for this screen; ``base`` already carries the event cursor and report id."""
        return base

    def show(self, view: View) -> None:
        """Update from the app's latest view; subclasses extend this."""
        if view.origin != self._origin:
            self._origin = view.origin
            self.forget_run()
        self.query_one(RunHeader).show(view.snap)
        self.query_one(ProblemBanner).show(view.snap.problem)

    def forget_run(self) -> None:
        """Drop what belongs to the run shown so far (the dashboard moved on to a newer run, or the
        database file was replaced); subclasses extend this."""

    def on_screen_resume(self) -> None:
        self.post_message(RefreshWanted())
