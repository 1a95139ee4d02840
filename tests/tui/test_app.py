"""Pilot tests of the dashboard on seeded run stores: keys, requeue, pause, live updates, bad databases."""

from __future__ import annotations

import sqlite3

from pilot_helpers import refreshed, wait_until
from textual.widgets import Static

from m2i.store import open_store, ops
from tui.screens.compare import CompareScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.detail import SampleDetailScreen
from tui.screens.failures import FailuresScreen
from tui.screens.help import HelpScreen
from tui.screens.samples import SamplesScreen
from tui.widgets.event_log import EventLog
from tui.widgets.failures_table import FailuresTable
from tui.widgets.image_view import ImageView
from tui.widgets.metrics_table import MetricsTable
from tui.widgets.problem_banner import ProblemBanner
from tui.widgets.samples_table import SamplesTable
from tui.widgets.stage_progress import StageProgress


def status_of(db, table: str, row_id: int) -> str:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT status FROM {table} WHERE id = ?", (row_id,)).fetchone()[0]


def label_text(widget) -> str:
    """The plain text a Static or Label shows (rich renderables rendered wide, no wrapping)."""
    from rich.console import Console

    console = Console(width=300, record=True, file=open("/dev/null", "w"))
    content = widget.content if isinstance(widget, Static) else widget.render()
    console.print(content)
    return console.export_text().rstrip("\n")


def save_report(db, data: dict) -> None:
    """A newer ``modes`` report for run 1, as the score stage writes it."""
    store = open_store(str(db))
    try:
        ops.save_report(store, 1, "modes", data)
    finally:
        store.close()


def stage_numbers(screen, stage: str) -> dict[str, str]:
    row = screen.query_one(f"#stage-{stage}", StageProgress)
    return {c: label_text(row.query_one(f".stage-{c}")) for c in ("pending", "running", "done", "failed")}


def log_text(screen) -> str:
    return "\n".join(line.text for line in screen.query_one(EventLog).lines)


async def test_screens_switch_with_single_keys(seeded_db, frozen_app):
    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        assert isinstance(app.screen, DashboardScreen)
        assert stage_numbers(app.screen, "generate") == {"pending": "0", "running": "0", "done": "23", "failed": "2"}
        assert "CUDA out of memory" in log_text(app.screen)

        await pilot.press("c")
        await refreshed(pilot)
        assert isinstance(app.screen, CompareScreen)
        metrics = app.screen.query_one(MetricsTable)
        assert [str(k.value) for k in metrics.rows] == [
            "originality", "elaboration", "alignment", "coherence", "overall", "diversity"]

        await pilot.press("f")
        await refreshed(pilot)
        assert isinstance(app.screen, FailuresScreen)
        assert app.screen.query_one(FailuresTable).row_count == 4

        await pilot.press("s")
        await refreshed(pilot)
        assert isinstance(app.screen, SamplesScreen)
        assert app.screen.query_one(SamplesTable).row_count == 6

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, SamplesScreen)

        await pilot.press("d")
        assert isinstance(app.screen, DashboardScreen)
        for screen in app._screen_stacks.values():  # every screen kept its footer on the last line at 80x24
            assert screen[0].query_one("Footer").region.y == 23
        await pilot.press("q")
    assert app.return_code == 0


async def test_compare_plots_the_metric_under_the_cursor(seeded_db, frozen_app):
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        from tui.widgets.diff_plot import DiffPlot, clip_differences

        plot = app.screen.query_one(DiffPlot)
        assert plot.metric == "originality"
        diffs = clip_differences(plot.report, "originality")
        assert len(diffs) == 5 and all(d > 0.1 for _, d in diffs)  # divergent prompts were seeded more original
        await pilot.press("down", "down")
        await wait_until(pilot, lambda: plot.metric == "alignment", what="the plot to follow the cursor")


async def test_compare_plot_keeps_its_rows_for_the_bars_in_a_short_pane(seeded_db, frozen_app):
    """In a 20-row terminal (a tmux pane) the title and axis label took two of the plot's few rows,
    and every clip's bar was drawn on the one row left, the same height whatever its difference."""
    from tui.widgets.diff_plot import COMPACT_BELOW, DiffPlot

    def bar_rows(plot) -> int:
        return sum("█" in line for line in plot.render().plain.splitlines())

    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 20)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        plot = app.screen.query_one(DiffPlot)
        assert 0 < plot.size.height < COMPACT_BELOW
        text = plot.render().plain
        assert "divergent - convergent" not in text and bar_rows(plot) >= 3
    async with frozen_app(seeded_db).run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        plot = pilot.app.screen.query_one(DiffPlot)
        assert "originality: divergent - convergent, per clip (5 clips)" in plot.render().plain
        assert "clip (sample id)" in plot.render().plain and bar_rows(plot) >= 8


async def test_compare_table_fits_60_columns_with_p_and_d_z_in_sight(seeded_db, frozen_app):
    """At 60 columns the table was 70 wide: p (Holm) and d_z, the figures the screen is for, sat
    off to the right behind a horizontal scroll. Narrow, it goes to two decimals and fits."""
    from tui.widgets.diff_plot import DiffPlot
    from tui.widgets.metrics_table import COLUMNS, WIDE_WIDTH

    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        table = app.screen.query_one(MetricsTable)
        wide, rows = [str(c) for c in table.get_row("originality")], table.row_count
        assert [str(c.label) for c in table.columns.values()] == list(COLUMNS)
        assert table.virtual_size.width <= WIDE_WIDTH  # the wide table fits where it is shown
        assert wide[1].count(".") == 1 and len(wide[1].split(".")[1]) == 3 and wide[4].startswith("[")
        await pilot.press("down", "down")
        plot = app.screen.query_one(DiffPlot)
        await wait_until(pilot, lambda: plot.metric == "alignment", what="the cursor on alignment")
        await pilot.resize_terminal(60, 24)

        def fits() -> bool:
            return (table.row_count == rows and [str(c.label) for c in table.columns.values()][5] == "p"
                    and 0 < table.virtual_size.width <= table.scrollable_content_region.width)

        await wait_until(pilot, fits, what="the compact metrics table to fit 60 columns")
        row = [str(c) for c in table.get_row("originality")]
        assert row[1] == format(float(wide[1]), ".2f")  # the same figures, rounded
        assert abs(float(row[6]) - float(wide[6])) <= 0.05 and len(row[6]) <= 5
        assert row[5].rstrip("*") and row[5].rstrip("*") != "-"
        assert table.cursor_row == 2 and plot.metric == "alignment"  # still the metric chosen
        await pilot.resize_terminal(120, 40)
        await wait_until(pilot, lambda: [str(c) for c in table.get_row("originality")] == wide,
                         what="three decimals again when wide")


async def test_samples_and_compare_name_clips_by_the_same_sample_id(seeded_db, frozen_app):
    """The Samples screen's # and the Compare plot's clips are the sample ids `m2i sql` shows, not positions."""
    from tui.widgets.diff_plot import DiffPlot, clip_differences

    with sqlite3.connect(seeded_db) as con:
        ids = [i for (i,) in con.execute("SELECT id FROM sample ORDER BY idx")]
        idxs = [i for (i,) in con.execute("SELECT idx FROM sample ORDER BY idx")]
    assert ids != idxs  # ids start at 1, positions at 0: the two cannot be confused here
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await refreshed(pilot)
        table = app.screen.query_one(SamplesTable)
        assert [str(table.get_row_at(r)[0]) for r in range(table.row_count)] == [str(i) for i in ids]
        await pilot.press("c")
        await refreshed(pilot)
        plotted = [sid for sid, _ in clip_differences(app.screen.query_one(DiffPlot).report, "originality")]
        assert plotted == ids[:5]  # the five clips scored in both modes; the sixth failed analysis


async def test_compare_says_no_scores_yet(unscored_db, frozen_app):
    app = frozen_app(unscored_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        summary = label_text(app.screen.query_one("#compare-summary", Static))
        assert summary.startswith("no scores yet: 25 prompt(s) wait for the score stage")
        assert app.screen.query_one(MetricsTable).row_count == 0


async def test_compare_says_scores_wait_for_the_prompts(unscored_db, frozen_app):
    """A run is scored as a whole, so while prompts are still being written the Compare screen
    says so (and how many are left) rather than looking stuck."""
    with sqlite3.connect(unscored_db) as conn:
        conn.execute("UPDATE prompt SET status = 'pending' WHERE id <= 3")
    app = frozen_app(unscored_db)
    async with app.run_test(size=(160, 24)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        summary = label_text(app.screen.query_one("#compare-summary", Static))
        assert "once its clips are analysed and its prompts written (3 prompt(s) to write)" in summary


async def test_requeue_selected_row_after_confirmation(seeded_db, frozen_app):
    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f")
        await refreshed(pilot)
        table = app.screen.query_one(FailuresTable)
        await pilot.press("down")  # analyze row -> first failed prompt
        row = table.selected
        assert (row.stage, row.id) == ("generate", 1)
        assert "529 overloaded" in label_text(app.screen.query_one("#failure-error", Static))

        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # declined: nothing changes
        assert isinstance(app.screen, FailuresScreen)
        assert status_of(seeded_db, "prompt", 1) == "failed"

        await pilot.press("r")
        await pilot.press("y")
        await wait_until(pilot, lambda: status_of(seeded_db, "prompt", 1) == "pending", what="the requeue")
        await wait_until(pilot, lambda: table.row_count == 3, what="the table to drop the row")
        assert status_of(seeded_db, "prompt", 2) == "failed"
        assert (table.selected.stage, table.selected.id) == ("generate", 2)  # the cursor is on the next failure


async def test_requeue_marked_rows_and_a_whole_stage(seeded_db, frozen_app):
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f")
        await refreshed(pilot)
        table = app.screen.query_one(FailuresTable)
        await pilot.press("space", "down", "down", "down", "space")  # analyze 6 and render 1
        assert table.marked_rows() == {"analyze": [6], "render": [1]}
        await pilot.press("m", "y")
        await wait_until(pilot, lambda: status_of(seeded_db, "image", 1) == "pending", what="the marked requeue")
        assert status_of(seeded_db, "sample", 6) == "pending"
        assert status_of(seeded_db, "prompt", 1) == "failed"
        await wait_until(pilot, lambda: table.row_count == 2, what="the table to refresh")

        table.move_cursor(row=0)
        await pilot.press("a")
        assert "all 2 failed generate" in label_text(app.screen.query_one("#confirm-question", Static))
        await pilot.press("y")
        await wait_until(pilot, lambda: status_of(seeded_db, "prompt", 2) == "pending", what="the stage requeue")
        assert status_of(seeded_db, "prompt", 1) == "pending"


async def test_requeue_the_rows_that_failed_the_same_way(seeded_db, frozen_app):
    """A night of prompts: some failed on an overloaded API (worth another go), one on a reply the
    model got wrong. `e` takes back those of the selected row's stage whose error shares its cause."""
    from tui.screens.failures import error_cause

    with sqlite3.connect(seeded_db) as con:
        odd = con.execute("SELECT max(id) FROM prompt WHERE status = 'done'").fetchone()[0]
        con.execute("UPDATE prompt SET status = 'failed', error = 'ProviderError: the reply had no image_prompt' "
                    "WHERE id = ?", (odd,))
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f")
        await refreshed(pilot)
        table = app.screen.query_one(FailuresTable)
        await pilot.press("down")
        assert (table.selected.stage, table.selected.id) == ("generate", 1)
        await pilot.press("e")
        question = " ".join(label_text(app.screen.query_one("#confirm-question", Static)).split())
        assert question == ("Requeue the failed generate rows whose error contains 'Anthropic answered 529 "
                            "overloaded three times'?"), question
        await pilot.press("y")
        await wait_until(pilot, lambda: status_of(seeded_db, "prompt", 1) == "pending", what="the requeue")
        assert status_of(seeded_db, "prompt", 2) == "pending" and status_of(seeded_db, "prompt", odd) == "failed"
    assert error_cause("Traceback (most recent call last):\n  File x\nValueError: bad thing: 3") == "bad thing"


async def test_pause_and_resume_from_the_dashboard(seeded_db, frozen_app):
    app = frozen_app(seeded_db)

    def paused() -> int:
        with sqlite3.connect(seeded_db) as con:
            return con.execute("SELECT paused FROM run WHERE id = 1").fetchone()[0]

    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        await pilot.press("p")
        await wait_until(pilot, lambda: paused() == 1, what="the pause")
        await wait_until(pilot, lambda: "PAUSED" in label_text(app.screen.query_one("#run-header")),
                         what="the header to say PAUSED")
        await wait_until(pilot, lambda: "run paused" in log_text(app.screen), what="the pause event")
        render_eta = app.screen.query_one("#stage-render", StageProgress).query_one(".stage-eta")
        assert label_text(render_eta) == "paused"  # 15 renders left, but no ETA counting down
        assert label_text(app.screen.query_one("#stage-analyze", StageProgress).query_one(".stage-eta")) == "done"
        await pilot.press("p")
        await wait_until(pilot, lambda: paused() == 0, what="the resume")
        await wait_until(pilot, lambda: label_text(render_eta) != "paused", what="the ETA to come back")


async def test_follows_another_connection_live(seeded_db, frozen_app):
    app = frozen_app(seeded_db, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        assert stage_numbers(app.screen, "render")["done"] == "7"
        store = open_store(str(seeded_db))
        try:
            rows = ops.claim(store, "render", worker="other", n=3)
            ops.complete_many(store, "render", [(r["id"], {"path": "x.png"}) for r in rows], worker="other")
            ops.log_event(store, 1, "render batch finished on another machine", stage="render")
        finally:
            store.close()
        await wait_until(pilot, lambda: stage_numbers(app.screen, "render")["done"] == "10", what="the new count")
        await wait_until(pilot, lambda: "another machine" in log_text(app.screen), what="the new event")


async def test_missing_database_says_so_and_recovers(tmp_path, seeded_template, frozen_app):
    from pilot_helpers import copy_db

    db = tmp_path / "later.db"
    app = frozen_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        banner = app.screen.query_one(ProblemBanner)
        assert banner.display and "No m2i database" in label_text(banner)
        copy_db(seeded_template, db)
        await refreshed(pilot)
        assert not banner.display
        assert stage_numbers(app.screen, "analyze")["done"] == "5"


async def test_locked_database_keeps_retrying(seeded_db, frozen_app):
    con = sqlite3.connect(seeded_db, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("BEGIN EXCLUSIVE")
    app = frozen_app(seeded_db, busy_ms=50)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await refreshed(pilot, after=0)
            banner = app.screen.query_one(ProblemBanner)
            assert banner.display and "locked" in label_text(banner)
            con.execute("COMMIT")
            await refreshed(pilot)
            assert not banner.display
            assert stage_numbers(app.screen, "score")["done"] == "23"
    finally:
        con.close()


async def test_older_schema_is_explained(tmp_path, frozen_app):
    from alembic import command

    from m2i.store import open_store
    from m2i.store.engine import alembic_config, resolve_url

    db = tmp_path / "old.db"
    command.upgrade(alembic_config(resolve_url(str(db))), "0001")
    before = db.read_bytes()
    app = frozen_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        banner = app.screen.query_one(ProblemBanner)
        text = label_text(banner)
        assert banner.display and "older schema (0001)" in text and "m2i init" in text
        assert db.read_bytes() == before  # the read-only dashboard never upgrades it
        open_store(db).close()  # what `m2i init` does
        await refreshed(pilot)
        assert "older schema" not in label_text(banner)  # it retried and now reads the upgraded file


async def test_sample_detail_states_no_key_or_melody_that_was_not_heard(seeded_db, frozen_app):
    # clip 0 as m2i analyses a drum loop: its key and melody were measured at confidence 0
    with sqlite3.connect(seeded_db) as con:
        con.execute("UPDATE sample SET features = json_set(features, '$.confidence.key', 0.0, "
                    "'$.confidence.melody_contour', 0.0) WHERE idx = 0")
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await refreshed(pilot)
        await pilot.press("enter")
        await refreshed(pilot)
        feats = label_text(app.screen.query_one("#detail-features", Static))
        assert "72 BPM" in feats and "i-iv-V-i" not in feats and "minor" not in feats
        assert label_text(app.screen.query_one("#detail-abc", Static)) == "(no melody heard, so no ABC)"


async def test_sample_detail_shows_features_abc_prompts_and_image(seeded_db, frozen_app):
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await refreshed(pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, SampleDetailScreen)
        await refreshed(pilot)
        feats = label_text(app.screen.query_one("#detail-features", Static))
        assert "D" in feats and "72 BPM" in feats and "i-iv-V-i" in feats and "tense, driving" in feats
        assert "K:Dm" in label_text(app.screen.query_one("#detail-abc", Static))
        prompts = label_text(app.screen.query_one("#detail-prompts", Static))
        assert prompts.count("convergent T=0.4") == 3 and prompts.count("divergent T=0.8") == 2
        assert "529 overloaded" in prompts and "overall" in prompts
        view = app.screen.query_one(ImageView)
        assert "no image yet" in label_text(view.query_one(".image-body"))  # prompt 0 failed
        await pilot.press("right_square_bracket", "right_square_bracket")  # prompt 2: rendered... or failed render
        await pilot.press("right_square_bracket")  # prompt 3 has a PNG on disk
        body = view.query_one(".image-body")
        assert "image-missing" not in body.classes, label_text(body)
        assert type(body).__module__.startswith("textual_image")
        await pilot.press("escape")
        assert isinstance(app.screen, SamplesScreen)


async def test_a_report_of_another_shape_does_not_break_compare(seeded_db, frozen_app):
    """A run imported from the earlier scripts carries its own report layout: show what fits, no crash."""
    save_report(seeded_db, {"convergent_metrics": {"originality_avg": 1.0}, "metrics": "n/a"})
    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.query_one(MetricsTable).row_count == 0
        assert "0 clips paired" in label_text(app.screen.query_one("#compare-summary", Static))


async def test_compare_says_why_a_run_of_one_mode_compares_nothing(seeded_db, frozen_app):
    from m2i.scoring.stats import compare_modes

    rows = [{"sample_id": c, "mode": "convergent", "originality": 0.5 + 0.01 * c} for c in range(4)]
    save_report(seeded_db, compare_modes(rows, metrics=("originality",), n_boot=10))
    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        summary = " ".join(label_text(app.screen.query_one("#compare-summary", Static)).split())  # wrapped at 80
        assert summary == "no clip has scored prompts of both modes (convergent 4, divergent 0), so nothing is compared"


async def test_compare_says_why_a_pilot_of_three_clips_has_no_interval_and_no_significance(seeded_db, frozen_app):
    from m2i.scoring.stats import compare_modes

    rows = [{"sample_id": c, "mode": m, "originality": 0.5 + 0.1 * c * (m == "divergent")}
            for c in range(3) for m in ("convergent", "divergent")]
    save_report(seeded_db, compare_modes(rows, metrics=("originality",), n_boot=10))
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 24)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        summary = " ".join(label_text(app.screen.query_one("#compare-summary", Static)).split())
        assert summary.startswith("3 clips paired") and summary.endswith(
            "no 95% CI with 3 clips paired: resampling fewer than 5 cannot cover 95 % · with 3 clips paired nothing "
            "can be significant: the Wilcoxon test's smallest p is 0.25 (0.25 after Holm over 1 metric); 6 or more "
            "clips are needed")
        table = app.screen.query_one(MetricsTable)
        assert str(table.get_row_at(0)[4]) == "-"


async def test_compare_updates_when_a_new_report_arrives(unscored_db, frozen_app):
    """The score stage writes a newer report while Compare is open: the table fills in by itself."""
    from seeding import save_modes_report, score_values

    now = [0.0]
    app = frozen_app(unscored_db, refresh_s=0.1, clock=lambda: now[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        table = app.screen.query_one(MetricsTable)
        assert table.row_count == 0
        store = open_store(str(unscored_db))
        try:
            meta = {pid: (mode, idx, slot) for pid, mode, idx, slot in sqlite3.connect(unscored_db).execute(
                "SELECT p.id, p.mode, s.idx, p.slot FROM prompt p JOIN sample s ON s.id = p.sample_id").fetchall()}
            rows = ops.claim(store, "score", worker="scorer", n=1000)
            ops.complete_many(store, "score", [(r["id"], score_values(*meta[r["prompt_id"]])) for r in rows],
                              worker="scorer")
            save_modes_report(store, 1)
        finally:
            store.close()
        now[0] += 10.0
        await wait_until(pilot, lambda: table.row_count == 6, what="the new report on screen")
        assert "5 clips paired" in label_text(app.screen.query_one("#compare-summary", Static))


def long_run(db) -> None:
    """A run of 102 clips: two pages on the Samples screen."""
    from seeding import make_clips

    store = open_store(str(db))
    try:
        ops.add_samples(store, ops.create_run(store, name="long", config={"seed": 0}), make_clips(102))
    finally:
        store.close()


async def test_samples_pages_forward_and_back(tmp_path, frozen_app):
    db = tmp_path / "long.db"
    long_run(db)
    app = frozen_app(db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await refreshed(pilot)
        summary = app.screen.query_one("#samples-summary", Static)
        table = app.screen.query_one(SamplesTable)
        assert "page 1/2" in label_text(summary) and table.row_count == 100
        await pilot.press("n")
        await wait_until(pilot, lambda: "page 2/2" in label_text(summary), what="the second page")
        assert table.row_count == 2 and table.get_row_at(0)[1] == "clip100.flac"
        await pilot.press("n")  # past the last page: stays there
        await refreshed(pilot)
        assert "page 2/2" in label_text(summary)
        await pilot.press("b")
        await wait_until(pilot, lambda: "page 1/2" in label_text(summary), what="the first page again")
        assert table.row_count == 100


async def test_opening_a_clip_says_loading_until_its_data_comes(seeded_db, frozen_app):
    """Never "sample N is not in this run" for a clip that is: the detail waits for its own read."""
    import threading

    app = frozen_app(seeded_db)
    gate = threading.Event()
    read = app.reader.snapshot

    def slow_snapshot(want):
        if want.detail is not None:
            gate.wait(10)
        return read(want)

    app.reader.snapshot = slow_snapshot
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        await refreshed(pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, SampleDetailScreen)
        await pilot.pause(0.2)
        features = app.screen.query_one("#detail-features", Static)
        assert label_text(features) == "loading…"
        gate.set()
        await wait_until(pilot, lambda: "72 BPM" in label_text(features), what="the clip's features")


async def test_follows_a_newer_run_started_meanwhile(seeded_db, frozen_app):
    app = frozen_app(seeded_db, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        header = app.screen.query_one("#run-header")
        assert "(#1)" in label_text(header) and "CUDA out of memory" in log_text(app.screen)
        store = open_store(str(seeded_db))
        try:
            ops.log_event(store, ops.create_run(store, name="second", config={"seed": 0}), "second run started")
        finally:
            store.close()
        await wait_until(pilot, lambda: "run second (#2)" in label_text(header), what="the header to follow run 2")
        await wait_until(pilot, lambda: "second run started" in log_text(app.screen), what="run 2's event")
        assert "CUDA out of memory" not in log_text(app.screen)  # run 1's events are gone from the log
        assert stage_numbers(app.screen, "generate")["failed"] == "0"


async def test_the_header_says_whether_anything_works_on_the_run(seeded_db, frozen_app):
    """The header said "active" whenever work was left, also after the runner was killed or stopped:
    over SSH that is the one question the dashboard must answer at a glance. A runner killed outright
    leaves its rows 'running': that read "working" for as long as nobody ran m2i again."""
    import os
    import socket
    import sqlite3
    import subprocess

    app = frozen_app(seeded_db, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        header = app.screen.query_one("#run-header")
        first = label_text(header).splitlines()[0]
        assert first.endswith("(#1)  nothing running · 15 to do"), first
        store = open_store(str(seeded_db))
        try:  # a runner starts: it loads SDXL first (minutes), holding no row
            ops.runner_seen(store, 1, "box:9", state="starting")
            await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  starting · 15 to do"),
                             what="the header to say starting")
            ops.runner_seen(store, 1, "box:9", state="working")  # between two claims it holds none either
            await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  working"),
                             what="the header to say working")
            ops.runner_left(store, 1, "box:9")
            await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  nothing running · 15 to do"),
                             what="the header to say nothing runs")
        finally:
            store.close()
        with sqlite3.connect(seeded_db) as con:  # a runner claims an image
            con.execute("UPDATE image SET status = 'running', worker = 'box:1', lease_until = '2100-01-01' "
                        "WHERE id = (SELECT min(id) FROM image WHERE status = 'pending')")
        await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  working"),
                         what="the header to say working")
        with sqlite3.connect(seeded_db) as con:  # that box is lost: the lease runs out
            con.execute("UPDATE image SET lease_until = '2000-01-01' WHERE status = 'running'")
        await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  runner gone · 15 to do"),
                         what="the header to say the runner is gone")
        gone = subprocess.Popen(["true"])
        gone.wait()
        with sqlite3.connect(seeded_db) as con:  # a runner of this machine, held again
            con.execute("UPDATE image SET worker = ?, lease_until = '2100-01-01' WHERE status = 'running'",
                        (f"{socket.gethostname()}:{os.getpid()}",))
        await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  working"),
                         what="the header to say working")
        with sqlite3.connect(seeded_db) as con:  # ... is killed (kill -9, the OOM killer): its lease still runs
            con.execute("UPDATE image SET worker = ? WHERE status = 'running'", (f"{socket.gethostname()}:{gone.pid}",))
        await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  runner gone · 15 to do"),
                         what="the header to say the runner is gone at once")
        with sqlite3.connect(seeded_db) as con:  # everything finished (or given up)
            con.execute("UPDATE image SET status = 'cancelled' WHERE status IN ('pending', 'running')")
            for table in ("sample", "prompt", "score"):
                con.execute(f"UPDATE {table} SET status = 'cancelled' WHERE status IN ('pending', 'running')")
        await wait_until(pilot, lambda: label_text(header).splitlines()[0].endswith("(#1)  idle"),
                         what="the header to say idle")


async def test_a_long_run_name_gives_way_in_the_header_so_its_state_stays_in_view(seeded_db, frozen_app):
    import sqlite3

    with sqlite3.connect(seeded_db) as con:
        con.execute("UPDATE run SET name = 'legacy:visual_prompts_complete.json-imported-from-the-old-box'")
    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        lines = label_text(app.screen.query_one("#run-header")).splitlines()
        assert len(lines) == 2 and lines[1].startswith(" LLM "), lines
        assert "run legacy:visual_prompts_co… (#1)" in lines[0] and len(lines[0]) == 80 and lines[0].endswith("(#1)  nothing running · 15 to do"), lines


async def test_a_database_replaced_at_the_same_path_is_read_afresh(seeded_db, unscored_template, frozen_app):
    from pilot_helpers import copy_db

    app = frozen_app(seeded_db, refresh_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        assert stage_numbers(app.screen, "score")["done"] == "23"
        for path in seeded_db.parent.glob(seeded_db.name + "*"):  # m2i.db and its -wal / -shm
            path.unlink()
        copy_db(unscored_template, seeded_db)
        header = app.screen.query_one("#run-header")
        await wait_until(pilot, lambda: "run fresh (#1)" in label_text(header), what="the new file's run")
        assert stage_numbers(app.screen, "score")["done"] == "0"
        assert "CUDA out of memory" not in log_text(app.screen)


def contrast_of(app, text: str) -> float:
    """WCAG contrast ratio of the screen cells showing ``text``, as the terminal receives them (filters applied)."""
    from textual.color import Color

    def luminance(c: Color) -> float:
        lin = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c.normalized]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    for strip in app.screen._compositor.render_strips():
        for f in app.get_line_filters():
            strip = strip.apply_filter(f, Color(0, 0, 0))
        for seg in strip:
            if text in seg.text:
                fg, bg = Color.from_rich_color(seg.style.color), Color.from_rich_color(seg.style.bgcolor)
                if seg.style.reverse:
                    fg, bg = bg, fg
                hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
                return (hi + 0.05) / (lo + 0.05)
    raise AssertionError(f"{text!r} is not on the screen")


async def test_errors_stay_legible_without_colour(seeded_db, frozen_app, monkeypatch):
    """NO_COLOR: error lines, the failed counts and the Failures error column keep a readable contrast."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await refreshed(pilot, after=0)
        await pilot.pause()
        assert contrast_of(app, "CUDA out of memory") >= 4.5  # an error event
        failed = app.screen.query_one("#stage-generate", StageProgress).query_one(".stage-failed")
        assert failed.styles.text_style.reverse  # "2" failed prompts, in reverse video
        await pilot.press("f")
        await refreshed(pilot)

        def legible() -> bool:  # the error column, once the Failures screen has settled (under load it lags)
            try:
                return isinstance(app.screen, FailuresScreen) and contrast_of(app, "529 overloaded") >= 4.5
            except AssertionError:  # not drawn yet: read again, as the app's once-a-second refresh would
                app.request_refresh()  # (this app is frozen: a read taken before the screen showed is not redone)
                return False

        await wait_until(pilot, legible, what="a legible error column")


async def test_a_file_that_is_not_a_database_gets_the_banner(tmp_path, frozen_app):
    env = tmp_path / "env.sh"
    env.write_text("export M2I_DB=runs/a.db\n")
    app = frozen_app(env)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        await refreshed(pilot)
        banner = app.screen.query_one(ProblemBanner)
        assert banner.display and "is not an m2i database (not a SQLite file)" in label_text(banner)
        assert not app._notifications  # no "file is not a database" toasts


async def test_a_failed_read_is_reported_once(seeded_db, frozen_app):
    """An unexpected error in a worker: one toast, and one line in the event log (not two toasts)."""
    from tui.app import _logs_to

    app = frozen_app(seeded_db)
    read = app.reader.snapshot
    calls = []

    def failing_once(want):
        calls.append(want)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return read(want)

    app.reader.snapshot = failing_once
    with _logs_to(app):
        async with app.run_test(size=(80, 24)) as pilot:
            await refreshed(pilot, after=0)
            app.request_refresh()
            await wait_until(pilot, lambda: "disk on fire" in log_text(app.screen), what="the error in the event log")
            await refreshed(pilot)
            assert [n.message for n in app._notifications] == ["RuntimeError: disk on fire"]


async def test_ctrl_z_with_the_runner_inside_says_how_to_leave_it_running(seeded_db, frozen_app, monkeypatch):
    """`m2i tui --run`: a stopped process would stop its runner too (its rows held until their leases
    ran out), so Ctrl-Z there says how to leave the run working instead of suspending."""

    class WorkingRunner:  # RunnerHost while its runner works
        running = True

        def start(self, done):
            pass

        def stop(self):
            self.running = False

    app = frozen_app(seeded_db)
    app.host = WorkingRunner()
    suspended = []
    monkeypatch.setattr(app, "action_suspend_process", lambda: suspended.append(True))
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert not suspended
        assert [n.message for n in app._notifications] == [
            "Ctrl-Z would stop the runner inside this dashboard too: detach tmux (Ctrl-b d) to leave it working, "
            "or quit with q."]
        app.host.running = False  # the runner finished: now Ctrl-Z suspends
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert suspended == [True]


async def test_sigterm_and_sighup_quit_like_q(seeded_db, frozen_app):
    import os
    import signal

    from tui.app import _quits_on_signals

    for sig in (signal.SIGTERM, signal.SIGHUP):
        app = frozen_app(seeded_db)
        with _quits_on_signals(app):
            async with app.run_test(size=(80, 24)) as pilot:
                await refreshed(pilot, after=0)
                os.kill(os.getpid(), sig)
                await wait_until(pilot, lambda app=app: app._exit, what=f"the app to quit on {sig.name}")
        assert app.return_code == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers went with the app


async def test_ctrl_c_quits_and_help_lists_it(seeded_db, frozen_app):
    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, after=0)
        await pilot.press("question_mark")
        assert "q,ctrl+c" in label_text(app.screen.query_one("#help-keys", Static))
        await pilot.press("escape")
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: app._exit, what="ctrl+c to quit")
    assert app.return_code == 0


async def test_a_long_error_can_be_read_to_its_end(seeded_db, frozen_app):
    traceback = "\n".join(["Traceback (most recent call last):"] + [f'  File "x.py", line {i}' for i in range(30)]
                          + ["RuntimeError: the real cause"])
    with sqlite3.connect(seeded_db) as con:
        con.execute("UPDATE prompt SET error = ? WHERE id = 1", (traceback,))
    app = frozen_app(seeded_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f")
        await refreshed(pilot)
        await pilot.press("down")  # the failed prompt 1
        box = app.screen.query_one("#failure-error-box")
        assert "RuntimeError: the real cause" in label_text(app.screen.query_one("#failure-error", Static))
        assert box.region.height < 12 and box.max_scroll_y > 0  # the table keeps its room; the error scrolls
        await pilot.press("tab")
        assert box.has_focus
        await pilot.press("end")
        await wait_until(pilot, lambda: box.scroll_y == box.max_scroll_y, what="the error to scroll to its end")


async def test_compare_shows_no_holm_p_for_diversity(seeded_db, frozen_app):
    """Diversity has only an unadjusted p-value: the "p (Holm)" column says "-", as `m2i report` does."""
    import json

    report = json.loads(sqlite3.connect(seeded_db).execute("SELECT data FROM report").fetchone()[0])
    report["diversity"] = {**report["diversity"], "mean_convergent": 0.3, "mean_divergent": 0.4, "p_value": 0.0123}
    save_report(seeded_db, report)
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        await refreshed(pilot)
        table = app.screen.query_one(MetricsTable)
        p_holm = [str(table.get_row(key)[5]) for key in ("originality", "diversity")]
        assert p_holm[0] != "-" and p_holm[1] == "-"
        assert str(table.get_row("diversity")[2]) == "0.400"  # the new report's row


async def test_the_dashboard_fits_60_columns_and_the_log_rewraps(seeded_db, frozen_app):
    store = open_store(str(seeded_db))
    try:
        ops.log_event(store, 1, "a long line " * 12 + "THE END", level="error", stage="render")
    finally:
        store.close()
    app = frozen_app(seeded_db)
    async with app.run_test(size=(120, 30)) as pilot:
        await refreshed(pilot, after=0)
        log = app.screen.query_one(EventLog)
        assert "THE END" in log_text(app.screen)
        heading = app.screen.query_one(".stage-heading")

        def headings() -> list[str]:
            return [label_text(x) for x in heading.query("Label") if x.display][-3:]

        def failed_rate_eta_shown() -> bool:
            cells = [app.screen.query_one(f"#stage-{stage}", StageProgress).query_one(col)
                     for stage in ("analyze", "render") for col in (".stage-failed", ".stage-rate", ".stage-eta")]
            return all(c.region.width > 0 and c.region.right <= 60 for c in cells)

        assert failed_rate_eta_shown() is False  # at 120 columns they sit further right
        await pilot.resize_terminal(60, 24)
        await wait_until(pilot, lambda: headings() == ["fail", "/min", "ETA"] and failed_rate_eta_shown(),
                         what="the compact stage table")
        assert stage_numbers(app.screen, "render")["failed"] == "1"
        await wait_until(pilot, lambda: max(line.cell_length for line in log.lines)
                         <= log.scrollable_content_region.width, what="the log to wrap at the new width")
        assert "THE END" in log_text(app.screen).replace("\n", " ")  # nothing cut off
        await pilot.resize_terminal(120, 30)
        await wait_until(pilot, lambda: headings() == ["failed", "/min", "ETA"], what="the full stage table")


async def test_a_snapshot_that_arrives_while_a_screen_is_still_being_built_waits_for_it(seeded_db, frozen_app):
    """A refresh lands between a screen becoming current and its widgets being mounted (a loaded
    machine, the first visit to a screen): the app must not reach into the half-built screen (it
    crashed with NoMatches on the run header); the screen shows the run once it is built."""
    app = frozen_app(seeded_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await refreshed(pilot, after=0)
        done = app.switch_mode("samples")  # first visit: the screen is composed from here on
        screen = app.screen
        assert isinstance(screen, SamplesScreen) and not screen.is_mounted
        app._show()  # what a Refreshed message arriving now does
        await done
        header = screen.query_one("#run-header")
        await wait_until(pilot, lambda: "(#1)" in label_text(header), what="the samples screen to show the run")


async def test_a_snapshot_that_arrives_while_textual_shuts_the_app_down_is_dropped(seeded_db, frozen_app):
    """Textual can shut an app down without exit() (run_test does): it stops the app running, then
    removes each screen's widgets while the reader thread's last snapshot may still arrive. Showing
    it then crashed with NoMatches on the run header (a CI failure of
    test_a_database_replaced_at_the_same_path_is_read_afresh). This does what the shutdown does,
    in its order, and delivers a snapshot in between."""
    app = frozen_app(seeded_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await refreshed(pilot, after=0)
        screen = app.screen
        app._running = False  # the first thing App._shutdown does
        await screen.query_one("#run-header").remove()  # then its screens' widgets go
        try:
            app._show()  # what a Refreshed message arriving now does
        finally:
            app._running = True  # hand the app back to run_test's own shutdown
        assert screen.is_mounted and not screen.query("#run-header")


async def test_the_run_picker_switches_every_screen_to_another_run_and_back_to_the_newest(seeded_db, frozen_app):
    """A database with several runs (one per model, say): `o` lists them and the choice is what
    every screen follows, without leaving the dashboard; `n` goes back to following the newest."""
    from textual.widgets import OptionList

    from tui.screens.runs import RunsScreen

    store = open_store(seeded_db)
    newer = ops.create_run(store, name="ollama-llama3", config={"seed": 2, "llm": "ollama", "model": "llama3.1"})
    ops.runner_seen(store, 1, "box:1", state="working")  # the older run is being worked on
    store.close()
    app = frozen_app(seeded_db)
    async with app.run_test(size=(140, 40)) as pilot:
        await refreshed(pilot)
        assert app.view.snap.run.id == newer, "without --run-id the newest run is followed"
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                         and app.screen.query_one(OptionList).option_count == 3, what="the runs listed")
        listing = app.screen.query_one(OptionList)
        texts = [str(listing.get_option_at_index(i).prompt) for i in range(3)]
        assert texts[0] == "follow the newest run (as now)"
        assert texts[1].startswith(f"▶ #{newer} ollama-llama3 · ") and "ollama llama3.1 · clips 0/0" in texts[1]
        assert texts[1].endswith("images 0/0"), texts[1]
        assert texts[2].startswith("  #1 bach-vs-folk · ") and "anthropic claude-sonnet-4-5 · clips 5/6" in texts[2]
        assert texts[2].endswith(" · 1 runner at work"), texts[2]
        await pilot.press("down", "down", "enter")
        await wait_until(pilot, lambda: app.view.snap.run is not None and app.view.snap.run.id == 1,
                         what="the older run shown")
        await pilot.press("c")
        await refreshed(pilot)
        assert app.screen.query_one(MetricsTable).row_count > 0, "the Compare screen shows the chosen run's scores"
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                         and app.screen.query_one(OptionList).option_count == 3, what="the runs listed")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.view.snap.run.id == newer, what="the newest run followed again")
        assert app.reader.run is None
