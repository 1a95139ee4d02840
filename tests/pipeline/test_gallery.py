"""The gallery states what the analysis heard, as the LLM's message does."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from m2i.gallery import write_gallery
from m2i.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))  # as tests/tui/conftest.py does
from seeding import render_previews, seed_store  # noqa: E402 - the dashboard tests' realistic run stores


def _gallery_page(db: Path, run_id: int, out: Path) -> str:
    store = open_store(str(db))
    try:
        return write_gallery(store, run_id, out).read_text()
    finally:
        store.close()


def test_a_clip_with_no_key_or_melody_heard_shows_neither(tmp_path):
    db = tmp_path / "m2i.db"
    run_id = seed_store(db, clips=2, fail_analyze=(), fail_generate=0, fail_render=0, render=0, report=False)
    with sqlite3.connect(db) as con:  # clip 0 as m2i analyses a drum loop: no key, no melody heard
        con.execute("UPDATE sample SET features = json_set(features, '$.confidence.key', 0.0, "
                    "'$.confidence.melody_contour', 0.0) WHERE idx = 0")
    page = _gallery_page(db, run_id, tmp_path / "gallery.html")
    drums, music = page.split("<section class='clip'>")[1:3]
    assert "<dt>key</dt><dd>—</dd>" in drums and "<dt>harmonic progression</dt><dd>—</dd>" in drums
    assert "<pre class='abc'></pre>" in drums and "<dt>tempo</dt><dd>72 BPM</dd>" in drums
    assert "<dt>key</dt><dd>G</dd>" in music and "X:1" in music


def _render_previews(db: Path, out: Path, clips: int) -> int:
    db.parent.mkdir(parents=True, exist_ok=True)
    run_id = seed_store(db, clips=clips, fail_analyze=(), fail_generate=0, fail_render=0, render=0, report=False)
    render_previews(db, run_id, out)
    return run_id


CLI = [sys.executable, str(Path(__file__).resolve().parents[2] / "cli.py")]


def _gallery_srcs(db: Path, cwd: Path) -> list[str]:
    """`m2i gallery` of ``db`` into ``cwd``/sheet.html: its pictures' links, relative to ``cwd``."""
    import subprocess

    r = subprocess.run([*CLI, "gallery", "--db", str(db), "--out", str(cwd / "sheet.html")],
                       capture_output=True, text=True, timeout=120, cwd=cwd)
    assert r.returncode == 0 and "not reachable" not in r.stderr, r.stderr
    page = (cwd / "sheet.html").read_text()
    return [part.split('"', 1)[0] for part in page.split('<img loading="lazy" src="')[1:]]


def _dashboard_images(db: Path) -> list[str]:
    """Where the dashboard's clip page finds the images of the first clip."""
    from tui.data import Reader, Want

    reader = Reader(str(db))
    try:
        with sqlite3.connect(db) as con:
            sample_id = con.execute("SELECT min(id) FROM sample").fetchone()[0]
        return [p.image_path for p in reader.snapshot(Want(detail=sample_id)).detail.prompts]
    finally:
        reader.close()


def test_a_run_copied_to_another_machine_shows_its_images_where_they_are_now(tmp_path):
    """`rsync gpu-box:project/ .` brings m2i.db and m2i-output/ along, but each image is recorded by
    its path on the GPU box: the gallery linked files that were not there (saying nothing), the
    export listed every image as unreachable, and the dashboard said "image file missing"."""
    import json
    import shutil
    import subprocess

    box = tmp_path / "gpu-box" / "project"
    _render_previews(box / "m2i.db", box / "m2i-output", clips=2)
    laptop = tmp_path / "laptop" / "results"
    laptop.parent.mkdir()
    shutil.move(box, laptop)  # nothing is left at the recorded paths
    db = laptop / "m2i.db"

    srcs = _gallery_srcs(db, tmp_path)
    assert len(srcs) == 10 and all((tmp_path / src).is_file() for src in srcs), srcs
    assert all(src.startswith("laptop/results/m2i-output/images/") for src in srcs)

    r = subprocess.run([*CLI, "export", "--db", str(db), "--out", str(tmp_path / "exports")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "not reachable" not in r.stderr, r.stderr
    log = json.loads((tmp_path / "exports" / "images" / "image_generation_log.json").read_text())
    entries = log if isinstance(log, list) else log.get("results") or log.get("images") or []
    paths = [e["image_path"] for e in entries]
    assert len(paths) == 10 and all(Path(p).is_file() and str(laptop) in p for p in paths), paths

    assert [Path(p).is_file() for p in _dashboard_images(db)] == [True] * 5


def test_an_output_folder_renamed_after_the_run_is_found_beside_the_database(tmp_path):
    """Kept as `results-nov/` rather than `m2i-output/`, the images of a finished run were nowhere for
    the dashboard, the gallery and the export, which look only where the run wrote them."""
    import shutil

    box = tmp_path / "box"
    _render_previews(box / "m2i.db", box / "m2i-output", clips=1)
    shutil.move(box / "m2i-output", box / "results-nov")
    (box / "notes").mkdir()  # other folders beside it are passed over
    db = box / "m2i.db"
    found = _dashboard_images(db)
    assert all(Path(p).is_relative_to(box / "results-nov") and Path(p).is_file() for p in found), found
    srcs = _gallery_srcs(db, tmp_path)
    assert len(srcs) == 5 and all(src.startswith("box/results-nov/images/") for src in srcs), srcs


def test_gallery_out_may_name_a_folder(tmp_path):
    """`m2i gallery --out results/`, as `cp` takes a folder, said "Is a directory"."""
    import subprocess

    db = tmp_path / "m2i.db"
    _render_previews(db, tmp_path / "m2i-output", clips=1)
    (tmp_path / "results").mkdir()
    r = subprocess.run([*CLI, "gallery", "--db", str(db), "--out", "results"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(f"gallery: {tmp_path / 'results' / 'gallery.html'}"), r.stderr
    page = (tmp_path / "results" / "gallery.html").read_text()
    assert page.count('<img loading="lazy" src="../m2i-output/images/') == 5


def test_another_runs_image_of_the_same_name_is_never_shown_instead(tmp_path):
    """Two runs draw sample_000_prompt_00.png and the like, each in its own folder; only the first
    run's folder was copied. Looked for by name alone, the second run's gallery showed the first
    run's pictures; each PNG records its seed, unique to its prompt, so they are told apart."""
    import shutil

    from m2i.store import ops

    box = tmp_path / "box"
    first = _render_previews(box / "m2i.db", box / "out-a", clips=1)
    assert first == 1
    shutil.copytree(box / "out-a", box / "out-b")  # the same file names, the first run's pictures
    store = open_store(str(box / "m2i.db"))
    try:
        with store.transaction() as conn:  # the second run's rows, as if drawn into out-c (not copied)
            conn.exec_driver_sql("UPDATE image SET path = replace(path, 'out-a', 'gone/out-c'), seed = seed + 1")
        finder = ops.ImageFinder([box / "out-b", box])
        located = ops.image_locations(store, first, finder=finder)
    finally:
        store.close()
    assert [x["reachable"] for x in located] == [False] * 5


def test_the_gallery_shows_the_statistics_of_the_current_method_and_scores(tmp_path):
    """The gallery printed whatever comparison was stored last, as `m2i report` did not: one of an
    earlier m2i's method (the plain percentile interval), or one computed before scores changed."""
    db = tmp_path / "m2i.db"
    run_id = seed_store(db, clips=6, fail_analyze=(), fail_generate=0, fail_render=0, render=0)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE report SET data = json_set(data, '$.method', 'm2i-compare/1', "
                    "'$.metrics.originality.ci95', json('[9, 9]'))")
    page = _gallery_page(db, run_id, tmp_path / "gallery.html")
    row = page.split("<tr><td>originality</td>")[1].split("</tr>")[0]
    assert "9.000" not in row and row.count("<td>[") == 1
    with sqlite3.connect(db) as con:  # computed again and stored, for the dashboard too
        assert con.execute("SELECT data ->> '$.method' FROM report ORDER BY id DESC LIMIT 1").fetchone() == ("m2i-compare/2",)


def test_gallery_out_never_replaces_a_device_pipe_or_link(tmp_path):
    """`m2i gallery --out /dev/null`, run as root, renamed its HTML over /dev/null: every program on
    the machine then failed to open it (PostgreSQL's initdb, tmux). Output files are written whole
    beside their target and renamed over a regular file only; a link's file is replaced, the link kept."""
    import os
    import stat
    import subprocess

    from m2i.textfile import write_text_atomic

    db = tmp_path / "runs" / "m2i.db"
    _render_previews(db, tmp_path / "runs" / "m2i-output", clips=1)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = subprocess.run([*CLI, "gallery", "--db", str(db), "--out", str(fifo)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith(
        f"error: Cannot write the gallery to {fifo}: not a regular file (a device or pipe); choose another --out.")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "runs"]

    real, link = tmp_path / "shared" / "sheet.html", tmp_path / "sheet.html"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    link.symlink_to(real)
    r = subprocess.run([*CLI, "gallery", "--db", str(db), "--out", str(link)], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and real.read_text().startswith("<!doctype html>")
    assert stat.S_IMODE(real.stat().st_mode) == 0o640 and os.listdir(real.parent) == ["sheet.html"]
    with pytest.raises(OSError, match="not a regular file"):
        write_text_atomic(tmp_path / "shared", "x")  # a folder is not replaced either
