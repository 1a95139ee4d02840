"""The render stage under the real runner: two batches in flight on one device."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from m2i.runner import Runner, run_blocking
from m2i.stages import RenderStage
from m2i.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))  # as tests/tui/conftest.py does
from seeding import render_previews, seed_store  # noqa: E402 - the dashboard tests' realistic run stores


def test_limit_renders_exactly_that_many_images_with_two_batches_in_flight(tmp_path):
    # 15 prompts wait for images; --limit 5 at batch size 2 with two batches in flight must render
    # five images, not six: each batch counts the rows the other batch is still rendering.
    db, out = tmp_path / "m2i.db", tmp_path / "out"
    run_id = seed_store(db, clips=3, fail_analyze=(), fail_generate=0, fail_render=0, render=0, report=False)
    stage = RenderStage(backend="preview", settings={"batch_size": 2}, out_dir=out, limit=5)
    assert stage.concurrency == 2
    store = open_store(str(db))
    try:
        run_blocking(Runner(store, run_id, [stage], poll_s=0.02), handle_signals=False)
    finally:
        store.close()
    with sqlite3.connect(db) as con:
        statuses = dict(con.execute("SELECT status, count(*) FROM image GROUP BY status").fetchall())
        paths = [Path(p) for (p,) in con.execute("SELECT path FROM image WHERE status = 'done'")]
    assert statuses == {"done": 5, "cancelled": 10}
    # only rows that may still be rendering are remembered, so a --limit of 50,000 never sends
    # the database a 50,000-value IN list (SQLite refuses more than 32,766 values)
    assert len(stage._granted) <= 2 * 2
    assert all(p.is_file() for p in paths) and sorted((out / "images").rglob("*.png")) == sorted(paths)


def test_a_full_disk_stops_the_render_stage_and_keeps_every_row_to_do(tmp_path, monkeypatch):
    """A full output disk used to fail each of the run's remaining images in seconds (480 of 500 in
    one run), each needing a requeue; no image can be written until space is freed, so the stage
    stops with one sentence, and the images not written are pending, with no attempt counted."""
    import errno

    import pytest

    from m2i.images import png
    from m2i.runner import StageStop

    db, out = tmp_path / "m2i.db", tmp_path / "out"
    run_id = seed_store(db, clips=3, fail_analyze=(), fail_generate=0, fail_render=0, render=0, report=False)
    real_fsync, written = png.os.fsync, []

    def fsync(fd):
        if len(written) >= 4:  # the disk fills after four images
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(png.os, "fsync", fsync)
    store = open_store(str(db))
    try:
        with pytest.raises(StageStop, match=r"^cannot write images to .*out/images/sample_\d+ \(No space left on "
                                            r"device\): free space on that disk or choose another --out, then run "
                                            r"again; the images not written yet are still to do\.$"):
            run_blocking(Runner(store, run_id, [RenderStage(backend="preview", settings={}, out_dir=out)], poll_s=0.02),
                         handle_signals=False)
    finally:
        store.close()
    with sqlite3.connect(db) as con:
        statuses = dict(con.execute("SELECT status, count(*) FROM image GROUP BY status").fetchall())
        attempts = con.execute("SELECT max(attempts) FROM image WHERE status = 'pending'").fetchone()[0]
    assert statuses == {"done": 4, "pending": 11} and not attempts
    assert len(list((out / "images").rglob("*.png"))) == 4, "no half-written file is left"
    monkeypatch.setattr(png.os, "fsync", real_fsync)  # space freed: the same command finishes the run
    render_previews(db, run_id, out)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT status, count(*) FROM image GROUP BY status").fetchall() == [("done", 15)]
