"""The dashboard's plain parts: throughput and ETA, report condensing, import weight, the in-process runner."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pilot_helpers import refreshed, wait_until

from tui.data import RateTracker, Reader, Want, condense_report, format_eta


def test_rate_and_eta_from_successive_counts():
    now = [0.0]
    tracker = RateTracker(window_s=60.0, clock=lambda: now[0])
    counts = {"render": {"pending": 100, "running": 2, "done": 0, "failed": 0, "cancelled": 0}}
    assert tracker.update(counts)["render"] == (None, None)  # one sample: no rate yet
    now[0] = 30.0
    counts = {"render": {"pending": 70, "running": 2, "done": 29, "failed": 1, "cancelled": 0}}
    rate, eta = tracker.update(counts)["render"]
    assert rate == 60.0  # 30 rows finished in 30 s
    assert eta == 72.0  # 72 rows left at one per second
    now[0] = 200.0  # nothing finished for a long time: the old samples leave the window
    rate, eta = tracker.update(counts)["render"]
    assert rate == 0.0 and eta is None


def test_eta_formatting():
    assert [format_eta(x) for x in (None, 0, 59, 61, 3599, 7322)] == ["-", "0s", "59s", "1m01s", "59m59s", "2h02m"]


def test_sqlite_report_reading_matches_the_full_report(seeded_db):
    full = json.loads(sqlite3.connect(seeded_db).execute("SELECT data FROM report").fetchone()[0])
    expected = condense_report(full)
    snap = Reader(str(seeded_db)).snapshot(Want(report=True))
    assert snap.report_changed and snap.report == expected
    assert len(expected["clip_diffs"]["originality"]) == 5
    # the report is read only when asked for, and not again once the app holds it
    again = Reader(str(seeded_db)).snapshot(Want(report=True, report_id=snap.report_id))
    assert again.report is None and again.report_id == snap.report_id
    assert Reader(str(seeded_db)).snapshot(Want()).report is None


def test_times_are_shown_in_the_machines_local_time(seeded_db, monkeypatch):
    """Stored in UTC and shown as stored, the dashboard's events and the report's dates sat 5 h 30
    away from the clock in Bangalore, and from the runner's log lines, which are local."""
    import time

    from m2i.report import build_report, format_text
    from m2i.store import open_store

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        snap = Reader(str(seeded_db)).snapshot(Want())
        store = open_store(str(seeded_db), readonly=True)
        try:
            text = format_text(build_report(store, snap.run.id))
        finally:
            store.close()
    finally:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
    assert snap.run.created_at == "2026-11-27 02:30:00"  # stored 2026-11-26 21:00 UTC
    assert {e.ts for e in snap.events} == {"2026-11-27 02:30:00"}
    assert "(created 2026-11-27 02:30:00)" in text.splitlines()[0]


def test_importing_the_app_stays_light():
    code = ("import sys, tui.app; heavy = [m for m in ('torch', 'librosa', 'diffusers', 'transformers', "
            "'llama_cpp', 'sentence_transformers', 'sqlalchemy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2]).stdout.strip()
    assert out == "[]"


async def test_run_flag_starts_the_pipeline_in_this_process(tmp_path):
    from m2i.config import Settings
    from tui.app import make_app

    sr = 16000
    t = np.arange(sr * 2) / sr
    np.save(tmp_path / "clips.npy", np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (220.0, 330.0)]).astype(np.float32))
    db = tmp_path / "inproc.db"
    settings = Settings(db=str(db), dataset=str(tmp_path / "clips.npy"), stages=["render"], images="preview",
                        run_name="in-process")
    app = make_app(None, None, settings=settings, refresh_s=0.2)
    assert app.host is not None
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: not app.host.running and app.host.result is not None, timeout=30,
                         what="the in-process runner to finish")
        await refreshed(pilot)
        header = str(app.screen.query_one("#run-header").content)
        assert "run in-process (#1)" in header and "preview" in header
        from tui.widgets.event_log import EventLog

        lines = "\n".join(line.text for line in app.screen.query_one(EventLog).lines)
        assert "images: preview" in lines and "runner finished" in lines
        await pilot.press("q")
    assert app.host.error is None


@pytest.mark.parametrize("how", ["quit", "sigterm-twice"])
def test_quitting_stops_the_in_process_runner_gracefully(tmp_path, monkeypatch, how):
    """RunnerHost hands the real Runner a stop: in-flight rows finish, the rest stay pending.

    ``sigterm-twice``: `timeout` signals the process, then its group; the same SIGTERM twice within
    half a second is one graceful stop (a second stop would exit the process at once).
    """
    import signal
    import time

    from runner_proc import SleepyStage
    from seeding import make_clips

    from m2i.runner import Runner, run_blocking
    from m2i.store import open_store, ops
    from tui.runner_host import RunnerHost

    db = tmp_path / "host.db"
    store = open_store(str(db))
    run_id = ops.create_run(store, name="host", config={"seed": 0})
    ops.add_samples(store, run_id, make_clips(12))
    store.close()

    def scripted_pipeline(settings, *, db, handle_signals, on_runner):
        assert handle_signals is False  # not on the main thread
        st = open_store(db)
        runner = Runner(st, run_id, [SleepyStage("analyze", delay=0.2)], poll_s=0.05, grace_s=5.0)
        on_runner(runner)
        try:
            return {"counts": run_blocking(runner, handle_signals=False)}
        finally:
            st.close()

    monkeypatch.setattr("m2i.pipeline.run_pipeline", scripted_pipeline)
    ended: list[str | None] = []
    host = RunnerHost(None, db=str(db))  # type: ignore[arg-type]
    host.start(ended.append)

    def done() -> int:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT count(*) FROM sample WHERE status = 'done'").fetchone()[0]

    deadline = time.monotonic() + 20
    while done() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    if how == "quit":
        host.stop()
    else:
        host.signal(signal.SIGTERM)
        host.signal(signal.SIGTERM)
    assert host.join(timeout=15), "the runner did not stop"
    assert ended == [None] and host.error is None
    with sqlite3.connect(db) as con:
        statuses = dict(con.execute("SELECT status, count(*) FROM sample GROUP BY status").fetchall())
    assert 2 <= statuses.get("done", 0) < 12 and statuses.get("running", 0) == 0
    assert statuses.get("pending", 0) == 12 - statuses["done"]


async def test_a_runner_that_cannot_start_says_so_and_fails_the_command(seeded_db, monkeypatch):
    """`m2i tui --run` whose pipeline cannot even be imported: the event log and a toast say so, exit 1."""
    from m2i.config import Settings
    from m2i.errors import M2IError
    from tui.app import make_app, wind_down
    from tui.widgets.event_log import EventLog

    monkeypatch.setitem(sys.modules, "m2i.pipeline", None)  # importing it raises ImportError
    app = make_app(str(seeded_db), None, settings=Settings(db=str(seeded_db), images="preview"), refresh_s=None)
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.screen.query_one(EventLog)
        await wait_until(pilot, lambda: any("runner stopped" in line.text for line in log.lines),
                         what="the runner's error in the event log")
        assert not app.host.running
        assert any("unexpected error" in n.message for n in app._notifications)
        await pilot.press("q")
    with pytest.raises(M2IError, match="The runner stopped with an unexpected error: ModuleNotFoundError"):
        wind_down(app)



def test_the_samples_screen_tells_the_rows_of_the_annotation_file_apart(tmp_path):
    """Every clip of label_data_with_16kHz_audio.npy read "label_data_wit" in the clip column; a
    clip with its audio_meta is named by track and artists, one without by its row."""
    from m2i.audio.datasets import load_dataset
    from m2i.features import clip_label
    from m2i.store import open_store, ops
    from tui.widgets.samples_table import fit_label

    t = np.arange(16000 * 2) / 16000
    rows = np.empty(2, dtype=object)
    rows[:] = [{"audio": (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), "style": np.zeros(4, np.float32),
                "audio_meta": meta} for f, meta in ((220.0, {"artist_name": ["Björk", "坂本龍一"], "track_name": "Jóga"}),
                                                   (330.0, {}))]
    np.save(tmp_path / "label_data_with_16kHz_audio.npy", rows, allow_pickle=True)
    store = open_store(tmp_path / "m2i.db")
    run_id = ops.create_run(store, name="labels", config={})
    ops.add_samples(store, run_id, load_dataset(tmp_path / "label_data_with_16kHz_audio.npy"))
    store.close()
    snap = Reader(str(tmp_path / "m2i.db")).snapshot(Want(samples_page=0))
    assert [r.label for r in snap.samples] == ["Jóga · Björk, 坂本龍一", "label_data_with_16kHz_audio.npy#1"]
    assert [fit_label(r.label, 20) for r in snap.samples] == ["Jóga · Björk, 坂本…", "…h_16kHz_audio.npy#1"]
    assert fit_label("어떻게 이별까지 사랑하겠어", 20) == "어떻게 이별까지 사…"  # two cells a character
    assert clip_label("/music/song.wav@30", {"file": "/music/song.wav"}) == "song.wav@30"
