"""The whole product as a user runs it: the real CLI on demo clips through all four stages."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd, timeout=600, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_args(db, out, gguf, samples=2):
    # the tiny test model writes random characters, one token each: keep them rather than reject
    # them as gibberish, and give its three lines room (an answer cut off at the limit is asked again)
    cfg = db.parent / "m2i.toml"
    if not cfg.exists():
        cfg.write_text("max_tokens = 700\nprompt_settings = { drop_gibberish = false }\n")
    return ["run", "--db", str(db), *(("--out", str(out)) if out is not None else ()), "--samples", str(samples),
            "--llm", "local", "--model", str(gguf), "--images", "preview", "--config", str(cfg)]


def check_complete(db: Path, out: Path, n_clips: int) -> None:
    con = sqlite3.connect(db)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    assert q("SELECT status, count(*) FROM sample GROUP BY status") == [("done", n_clips)]
    for table in ("prompt", "score", "image"):
        assert q(f"SELECT status, count(*) FROM {table} GROUP BY status") == [("done", n_clips * 5)], table
    # exactly 5 prompts per clip, 3 convergent at 0.4 and 2 divergent at 0.8, one score and image each
    assert q("SELECT count(*) FROM (SELECT sample_id FROM prompt GROUP BY sample_id HAVING count(*) = 5)") == [(n_clips,)]
    assert q("SELECT mode, temperature, count(*) FROM prompt GROUP BY mode, temperature") == [
        ("convergent", 0.4, 3 * n_clips), ("divergent", 0.8, 2 * n_clips)]
    assert q("SELECT count(DISTINCT prompt_id), count(*) FROM score") == [(n_clips * 5, n_clips * 5)]
    assert q("SELECT count(DISTINCT prompt_id), count(*) FROM image") == [(n_clips * 5, n_clips * 5)]
    # no file without a row and no row without its file
    paths = {Path(p) for (p,) in q("SELECT path FROM image")}
    assert all(p.is_file() for p in paths)
    on_disk = set((out / "images").rglob("*.png"))
    assert on_disk == paths
    assert not list(out.rglob("*.tmp*")) and not list(out.rglob(".m2i-tmp-*"))
    con.close()


def test_fresh_run_through_all_stages(tmp_path, tiny_gguf):
    db, out = tmp_path / "m2i.db", tmp_path / "out"
    r = cli(*run_args(db, out, tiny_gguf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "database:" in r.stdout and "images:" in r.stdout
    assert f"report: {out / 'report.txt'}" in r.stdout and f"gallery: {out / 'gallery.html'}" in r.stdout
    assert "originality" in (out / "report.txt").read_text() and (out / "gallery.html").stat().st_size > 1000
    check_complete(db, out, 2)
    con = sqlite3.connect(db)
    feats = [json.loads(f) for (f,) in con.execute("SELECT features FROM sample")]
    assert all(f["key"] and f["time_signature"] in ("2/4", "3/4", "4/4", "6/8") for f in feats)
    abcs = [a for (a,) in con.execute("SELECT abc FROM sample")]
    assert all(a.startswith("X:") and "\nK:" in a for a in abcs)
    assert con.execute("SELECT count(*) FROM image WHERE backend = 'preview'").fetchone() == (10,)
    assert con.execute("SELECT count(*) FROM report WHERE kind = 'modes'").fetchone()[0] >= 1

    rep = cli("report", "--json", "--db", str(db), cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    assert data["counts"]["render"]["done"] == 10
    assert set(data["modes"]["metrics"]) >= {"originality", "elaboration", "alignment", "coherence", "overall"}
    assert data["images"][0]["backend"] == "preview"
    text = cli("report", "--db", str(db), cwd=tmp_path).stdout
    assert "PREVIEW renderer (not SDXL)" in text and "originality" in text

    g = cli("gallery", "--db", str(db), "--out", str(tmp_path / "g" / "index.html"), cwd=tmp_path)
    assert g.returncode == 0, g.stderr
    assert "not finished" not in g.stderr, "a finished run's gallery is its result"
    html = (tmp_path / "g" / "index.html").read_text()
    assert html.count("<section class='clip'>") == 2 and html.count("<img ") == 10
    for src in __import__("re").findall(r'src="([^"]+)"', html):
        assert (tmp_path / "g" / src).resolve().is_file()

    # running again redoes nothing
    again = cli(*run_args(db, out, tiny_gguf), cwd=tmp_path)
    assert again.returncode == 0
    con = sqlite3.connect(db)
    assert con.execute("SELECT max(attempts) FROM prompt").fetchone() == (1,)


def test_a_second_run_in_one_database_does_not_overwrite_the_first_runs_images(tmp_path, tiny_gguf):
    """m2i run, then m2i run --new into the same database and folder: each run keeps its own files."""
    from PIL import Image

    db, out = tmp_path / "m2i.db", tmp_path / "out"
    for extra in ((), ("--new",)):
        r = cli(*run_args(db, out, tiny_gguf, samples=1), *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
    assert f"report: {out / 'run-2' / 'report.txt'}" in r.stdout
    con = sqlite3.connect(db)
    rows = con.execute("SELECT run_id, path, seed FROM image WHERE status = 'done' ORDER BY id").fetchall()
    assert [run for run, _, _ in rows] == [1] * 5 + [2] * 5
    assert len({path for _, path, _ in rows}) == 10  # no file shared by the two runs
    for run, path, seed in rows:
        assert Path(path).is_relative_to(out / "run-2") == (run == 2)
        assert Image.open(path).text["seed"] == str(seed)  # the file is still the one its row describes
    assert (out / "report.txt").read_text().startswith("run 1 ")
    assert (out / "run-2" / "report.txt").read_text().startswith("run 2 ")
    # continuing run 2 with the same explicit --out (how a requeue is finished) keeps to its own folder
    r = cli(*run_args(db, out, tiny_gguf, samples=1), cwd=tmp_path)
    assert r.returncode == 0 and f"report: {out / 'run-2' / 'report.txt'}" in r.stdout, r.stdout + r.stderr[-2000:]
    assert (out / "report.txt").read_text().startswith("run 1 ")


def test_two_databases_in_one_folder_keep_their_images_apart(tmp_path, tiny_gguf):
    """`m2i run --db claude.db`, then `m2i run --db local.db` in the same folder, no --out: both drew
    into m2i-output/images/sample_000/..., the second run's pictures over the first's, whose gallery
    then showed them. Each database's runs now write beside it, named after it."""
    from PIL import Image

    for name in ("claude", "local"):
        r = cli(*run_args(tmp_path / f"{name}.db", None, tiny_gguf, samples=1), cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"images: {tmp_path / f'{name}-output' / 'images'}" in r.stdout
    for name in ("claude", "local"):
        rows = sqlite3.connect(tmp_path / f"{name}.db").execute(
            "SELECT path, seed FROM image WHERE status = 'done'").fetchall()
        assert len(rows) == 5
        for path, seed in rows:
            assert Path(path).is_relative_to(tmp_path / f"{name}-output")
            assert Image.open(path).text["seed"] == str(seed)
    assert not (tmp_path / "m2i-output").exists()


def test_kill_9_three_times_then_finish(tmp_path, tiny_gguf):
    """kill -9 the runner at random points three times; the fourth run completes everything exactly once."""
    db, out = tmp_path / "m2i.db", tmp_path / "out"
    rng = random.Random(7)
    killed_with_work_left = 0
    for _ in range(3):
        (tmp_path / "m2i.toml").write_text("lease_s = 3.0\nmax_tokens = 700\nprompt_settings = { drop_gibberish = false }\n")
        p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *run_args(db, out, tiny_gguf)],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 12.0))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            killed_with_work_left += 1
        p.wait()
        time.sleep(3.2)  # let the dead runner's leases expire
    assert killed_with_work_left >= 1
    r = cli(*run_args(db, out, tiny_gguf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    check_complete(db, out, 2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_cleanly_and_resumes(tmp_path, tiny_gguf, signum):
    db, out = tmp_path / "m2i.db", tmp_path / "out"
    p = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *run_args(db, out, tiny_gguf)],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if db.exists():
            try:
                n = sqlite3.connect(db).execute("SELECT count(*) FROM prompt WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n >= 1:
                break
        time.sleep(0.2)
    p.send_signal(signum)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    con = sqlite3.connect(db)
    for table in ("sample", "prompt", "score", "image"):
        assert con.execute(f"SELECT count(*) FROM {table} WHERE status='running'").fetchone() == (0,), table
    r = cli(*run_args(db, out, tiny_gguf), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    check_complete(db, out, 2)
