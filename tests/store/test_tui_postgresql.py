"""The dashboard against PostgreSQL, unchanged: every screen reads, and a requeue lands in the database."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from sqlalchemy import text

TUI_TESTS = Path(__file__).resolve().parents[1] / "tui"
sys.path.insert(0, str(TUI_TESTS))
from seeding import seed_store  # noqa: E402


def _tui_conftest():
    spec = importlib.util.spec_from_file_location("tui_conftest_for_pg", TUI_TESTS / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def test_dashboard_on_postgresql(pg_url):
    from m2i.store import open_store
    from tui.app import make_app
    from tui.screens.compare import CompareScreen
    from tui.screens.failures import FailuresScreen
    from tui.screens.samples import SamplesScreen
    from tui.widgets.failures_table import FailuresTable
    from tui.widgets.metrics_table import MetricsTable
    from tui.widgets.samples_table import SamplesTable

    refreshed = _tui_conftest().refreshed
    seed_store(pg_url)
    app = make_app(pg_url, refresh_s=None, clock=lambda: 1000.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, after=0)
        from tui.screens.dashboard import DashboardScreen
        from tui.widgets.stage_progress import StageProgress

        assert isinstance(app.screen, DashboardScreen)
        assert len(app.screen.query(StageProgress)) == 4
        spec = importlib.util.spec_from_file_location("tui_test_app_for_pg", TUI_TESTS / "test_app.py")
        helpers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helpers)
        assert helpers.stage_numbers(app.screen, "generate") == {
            "pending": "0", "running": "0", "done": "23", "failed": "2"}
        await pilot.press("c")
        await refreshed(pilot)
        assert isinstance(app.screen, CompareScreen)
        assert len(app.screen.query_one(MetricsTable).rows) == 6
        await pilot.press("s")
        await refreshed(pilot)
        assert isinstance(app.screen, SamplesScreen) and app.screen.query_one(SamplesTable).row_count == 6
        await pilot.press("f")
        await refreshed(pilot)
        assert isinstance(app.screen, FailuresScreen)
        table = app.screen.query_one(FailuresTable)
        assert table.row_count == 4
        await pilot.press("a", "y")  # requeue every failed row of the selected stage, confirmed
        await refreshed(pilot)
        [run] = app.reader.runs()  # the run picker's list
        assert run.name == "bach-vs-folk" and run.counts["generate"]["done"] == 23
    store = open_store(pg_url, readonly=True)
    with store.read() as conn:
        failed = conn.execute(text("SELECT count(*) FROM sample WHERE status = 'failed'")).scalar() + conn.execute(
            text("SELECT count(*) FROM prompt WHERE status = 'failed'")).scalar() + conn.execute(
            text("SELECT count(*) FROM image WHERE status = 'failed'")).scalar()
    store.close()
    assert failed < 4  # the requeued rows are pending again in PostgreSQL
