"""The m2i command line on real database files: one sentence and a non-zero exit for user errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from store_helpers import RecordingStage, all_stages, seed_run

from m2i.store import open_store, ops

ROOT = Path(__file__).resolve().parents[2]


def m2i(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, **(env or {})}, timeout=120,
    )


def test_init_status_and_json(tmp_path):
    r = m2i("init", "--db", str(tmp_path / "a.db"))
    assert r.returncode == 0 and "ready" in r.stdout
    store = open_store(tmp_path / "a.db")
    seed_run(store, 3)
    r = m2i("status", "--json", "--db", str(tmp_path / "a.db"))
    data = json.loads(r.stdout)
    assert data["stages"]["analyze"]["pending"] == 3
    r = m2i("status", env={"M2I_DB": str(tmp_path / "a.db")})
    assert "analyze" in r.stdout and r.returncode == 0


def test_version_prints_what_a_run_records_as_its_software(tmp_path):
    """`m2i --version` said "No such option"; a bug report or a methods section needs m2i's version
    and commit and the versions of the packages that change results, the line a run records."""
    from m2i import __version__
    from m2i.provenance import SOFTWARE_PREFIX, software_line

    for flag in ("--version", "-V"):
        r = m2i(flag, cwd=tmp_path)
        assert (r.returncode, r.stderr) == (0, "")
        assert r.stdout == software_line().removeprefix(SOFTWARE_PREFIX) + "\n"
        assert r.stdout.startswith(f"m2i {__version__} (git ") and " · python 3.11" in r.stdout
    assert m2i("status", "--db", str(tmp_path / "none.db")).stderr.startswith("error: No m2i database")


def test_status_names_the_image_backend_that_drew_the_images(tmp_path):
    from m2i.runner import Runner

    class PreviewRender(RecordingStage):  # what --images auto falls back to without a GPU
        def _values(self, row):
            return {**super()._values(row), "backend": "preview"}

    db = tmp_path / "a.db"
    store = open_store(db)
    run_id = seed_run(store, 2, config={"seed": 1, "llm": "local", "images": "auto"})
    r = m2i("status", "--db", str(db))
    assert r.returncode == 0 and "images: auto " in r.stdout  # nothing drawn yet: the setting
    assert json.loads(m2i("status", "--json", "--db", str(db)).stdout)["images_used"] == {}
    asyncio.run(Runner(store, run_id, [*all_stages()[:3], PreviewRender("render")], poll_s=0.02).run())
    r = m2i("status", "--db", str(db))
    assert r.returncode == 0 and "images: preview (auto) " in r.stdout
    data = json.loads(m2i("status", "--json", "--db", str(db)).stdout)
    assert data["config"]["images"] == "auto" and data["images_used"] == {"preview": 10}  # a field added, none changed
    assert data["stages"]["render"]["done"] == 10


def test_status_says_when_running_rows_were_left_by_a_runner_that_is_gone(tmp_path):
    """A runner killed outright (the OOM killer, kill -9) leaves its rows 'running'; status showed
    them as running, which reads as work in progress, for as long as nobody ran m2i again. The
    runners at work are named."""
    import socket

    db = tmp_path / "a.db"
    store = open_store(db)
    run_id = seed_run(store, 3)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid of this machine that no longer runs
    ops.claim(store, "analyze", worker=f"{socket.gethostname()}:{gone.pid}", n=2, lease_s=600, run_id=run_id)
    r = m2i("status", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert " ".join(r.stdout.split()).endswith(
        f"2 running row(s) were left by a runner that is no longer running ({socket.gethostname()}:{gone.pid}); "
        "`m2i run` takes them back."), r.stdout
    data = json.loads(m2i("status", "--json", "--db", str(db)).stdout)
    assert data["stages"]["analyze"]["running"] == 2 and data["running"] == {
        "held": 0, "left": 2, "left_by": [f"{socket.gethostname()}:{gone.pid}"]}
    ops.claim(store, "analyze", worker=f"{socket.gethostname()}:{os.getpid()}", n=1, lease_s=600, run_id=run_id)
    r = m2i("status", "--db", str(db))  # a live runner's row is not called left
    assert "2 running row(s) were left" in " ".join(r.stdout.split())
    assert json.loads(m2i("status", "--json", "--db", str(db)).stdout)["running"]["held"] == 1
    ops.runner_seen(store, run_id, f"{socket.gethostname()}:{os.getpid()}", state="starting")
    r = m2i("status", "--db", str(db))  # and the runners at work are named, with what they do
    assert f"runner {socket.gethostname()}:{os.getpid()}: loading its models since 20" in r.stdout, r.stdout
    [seen] = json.loads(m2i("status", "--json", "--db", str(db)).stdout)["runners"]
    assert (seen["worker"], seen["state"]) == (f"{socket.gethostname()}:{os.getpid()}", "starting")


def test_sql_reads_and_refuses_writes(tmp_path):
    db = tmp_path / "a.db"
    store = open_store(db)
    seed_run(store, 2)
    r = m2i("sql", "SELECT count(*) AS n FROM sample", "--json", "--db", str(db))
    assert json.loads(r.stdout) == {"n": 2}
    before = ops.status_counts(store)
    for stmt in ("DELETE FROM sample", "UPDATE sample SET status='done'", "DROP TABLE sample",
                 "INSERT INTO run(name, config, created_at, paused, cancelled) VALUES ('x','{}','2020-01-01',0,0)"):
        r = m2i("sql", stmt, "--db", str(db))
        assert r.returncode == 1 and "read-only" in r.stderr and "Traceback" not in r.stderr, stmt
    assert ops.status_counts(store) == before
    r = m2i("sql", "SELEC nonsense", "--db", str(db))
    assert r.returncode == 1 and r.stderr.startswith("error: SQL error")


def test_sql_answers_the_sqlite3_shells_tables_and_schema(db_url):
    """`m2i sql .tables` and `m2i sql ".schema sample"`, typed out of habit from the sqlite3 shell,
    were "SQL error: near ".": syntax error"; they list the tables and views, and a table's columns,
    on either backend."""
    store = open_store(db_url)
    seed_run(store, 2)
    store.close()
    r = m2i("sql", ".tables", "--db", db_url)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0] == "name\ttype"
    assert {"sample\ttable", "prompt\ttable", "v_prompt_scores\tview", "v_mode_summary\tview"} <= set(lines[1:])
    assert not any(line.startswith("alembic_version") for line in lines)
    r = m2i("sql", ".schema sample;", "--db", db_url, "--json")
    columns = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and {c["table"] for c in columns} == {"sample"}
    assert {c["column"]: c["null"] for c in columns if c["column"] in ("id", "source", "features")} == {
        "id": "NOT NULL", "source": "NOT NULL", "features": ""}
    assert {json.loads(line)["table"] for line in m2i("sql", ".schema", "--db", db_url, "--json").stdout.splitlines()} \
        == {line.split("\t")[0] for line in lines[1:]}
    for query, said in ((".schema sampel", "error: No table or view 'sampel'; did you mean sample?\n"),
                        (".dump", "error: .dump is a command of the sqlite3 shell, not SQL; m2i sql knows .tables "
                                  "and .schema [TABLE] besides SQL statements.\n"),
                        (".tables samp", "error: .tables lists every table and view and takes no pattern; "
                                         ".schema samp gives the columns of one.\n")):
        r = m2i("sql", query, "--db", db_url)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", said)


def test_sql_names_the_table_or_column_meant(tmp_path):
    """A misspelt name got only SQLite's "no such table: samples"; the nearest real names follow it."""
    db = tmp_path / "a.db"
    seed_run(open_store(db), 1)
    said = {q: m2i("sql", q, "--db", str(db)).stderr for q in (
        "SELECT * FROM samples", "SELECT nme FROM run", "SELECT zzz FROM run", "SELECT * FROM foo")}
    assert said["SELECT * FROM samples"] == "error: SQL error: no such table: samples. Did you mean sample?\n"
    assert said["SELECT nme FROM run"] == "error: SQL error: no such column: nme. Did you mean name?\n"
    assert "run has id, name, created_at" in said["SELECT zzz FROM run"]
    assert "The tables and views are: clip, event, image," in said["SELECT * FROM foo"]
    assert "alembic_version" not in said["SELECT * FROM foo"]


def test_sql_piped_prints_whole_tab_separated_rows(tmp_path):
    db = tmp_path / "a.db"
    seed_run(open_store(db), 2)
    r = m2i("sql", "SELECT * FROM sample ORDER BY id", "--db", str(db))  # stdout is a pipe here
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    con = sqlite3.connect(db)
    cur = con.execute("SELECT * FROM sample ORDER BY id")
    names, rows = [d[0] for d in cur.description], cur.fetchall()
    con.close()
    assert lines[0].split("\t") == names and len(lines) == 1 + len(rows)  # every column, nothing cut to "…"
    assert lines[1].split("\t")[names.index("source")] == rows[0][names.index("source")]
    assert "…" not in r.stdout


@pytest.mark.parametrize("kind", ["not_sqlite", "other_sqlite", "newer_schema", "missing_dir", "empty_path_is_dir"])
def test_bad_databases_one_sentence_and_untouched(tmp_path, kind):
    db = tmp_path / "x.db"
    if kind == "not_sqlite":
        db.write_text("just some text\n")
    elif kind == "other_sqlite":
        with sqlite3.connect(db) as c:
            c.execute("CREATE TABLE t (a)")
    elif kind == "newer_schema":
        open_store(db).close()
        with sqlite3.connect(db) as c:
            c.execute("UPDATE alembic_version SET version_num='9999'")
    elif kind == "missing_dir":
        db = tmp_path / "missing" / "x.db"
    elif kind == "empty_path_is_dir":
        db.mkdir()
    before = db.read_bytes() if db.is_file() else None
    for cmd in (["status"], ["run", "--samples", "1"], ["init"]):
        r = m2i(*cmd, "--db", str(db))
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    if before is not None:
        assert db.read_bytes() == before
    assert not (tmp_path / "missing").exists()


@contextlib.contextmanager
def read_only(path: Path):
    """Make ``path`` read-only for this user (root: chattr +i, else mode 0444, 0555 for a folder);
    undone on exit. A read-only folder keeps its files as they are, but no file can be added to it."""
    immutable = False
    if os.geteuid() == 0:
        # root may write any file whatever its mode; an immutable file is read-only even for root
        r = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("root cannot make a read-only file here (chattr +i unsupported)")
        immutable = True
    else:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        elif path.is_dir():
            path.chmod(0o755)


@pytest.fixture
def closed_db():
    """``m2i.db`` with a run of 2 clips, closed (no -wal or -shm), alone in a folder outside the
    pytest tree (which ``read_only`` may lock), removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="m2i-ro-"))
    db = work / "m2i.db"
    store = open_store(db)
    seed_run(store, 2)
    store.close()
    for side in ("-wal", "-shm"):
        Path(str(db) + side).unlink(missing_ok=True)
    yield db
    shutil.rmtree(work, ignore_errors=True)


def test_read_only_database_file(closed_db):
    """As a user who may not write the file: writing commands refuse in one sentence; reading works."""
    db = closed_db
    before = db.read_bytes()
    with read_only(db):
        r = m2i("requeue", "--db", str(db), cwd=db.parent)
        assert r.returncode == 1 and "read-only" in r.stderr and "Traceback" not in r.stderr, r.stderr
        r = m2i("status", "--json", "--db", str(db), cwd=db.parent)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["stages"]["analyze"]["pending"] == 2
    assert db.read_bytes() == before


def test_a_database_in_a_folder_that_cannot_be_written_is_read(closed_db, tmp_path):
    """A finished run in a colleague's folder, on a read-only mount or unpacked from an archive: SQLite
    reads a WAL database through a -shm file it creates beside it, so status, report, sql and the
    dashboard all failed with "unable to open database file". Writing commands say why."""
    from tui.data import Reader

    db = closed_db
    reader = Reader(str(db))
    try:
        with read_only(db.parent):
            r = m2i("status", "--json", "--db", str(db), cwd=tmp_path)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["stages"]["analyze"]["pending"] == 2
            r = m2i("sql", "SELECT count(*) AS n FROM sample", "--json", "--db", str(db), cwd=tmp_path)
            assert r.returncode == 0 and json.loads(r.stdout) == {"n": 2}, r.stderr
            r = m2i("report", "--db", str(db), cwd=tmp_path)
            assert r.returncode == 0 and "analyze: 0/2" in r.stdout, r.stderr
            snap = reader.snapshot()
            assert snap.problem is None and snap.counts["analyze"]["pending"] == 2
            r = m2i("requeue", "--failed", "--db", str(db), cwd=tmp_path)
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
            assert f"The folder {db.parent} is not writable" in r.stderr and "copy the database" in r.stderr, r.stderr
            assert sorted(p.name for p in db.parent.iterdir()) == ["m2i.db"]  # nothing was written beside it
        store = open_store(db)  # the folder's owner runs m2i on it: the open dashboard follows
        try:
            row = ops.claim(store, "analyze", worker="owner:1", n=1, run_id=1)[0]
            ops.fail(store, "analyze", row["id"], worker="owner:1", error="late", retryable=False)
            assert reader.snapshot().counts["analyze"]["failed"] == 1
        finally:
            store.close()
    finally:
        reader.close()


def test_a_run_of_an_older_m2i_in_a_folder_that_cannot_be_written_is_read_as_it_is(closed_db, tmp_path):
    """Every run finished before the `runner` table (0005) has an older schema, which a reading command
    upgraded first; where the folder cannot be written that failed, and the sentence told the user
    to use `m2i status`, the very command that failed. Read as it is, it lacks only that table."""
    from alembic import command

    from m2i.store.engine import alembic_config
    from tui.data import Reader

    db = closed_db
    command.downgrade(alembic_config(f"sqlite:///{db}"), "0004")  # as an m2i of yesterday left it
    for side in ("-wal", "-shm"):
        Path(str(db) + side).unlink(missing_ok=True)
    with read_only(db.parent):
        r = m2i("status", "--json", "--db", str(db), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["stages"]["analyze"]["pending"] == 2 and data["runners"] == []
        assert r.stderr == (f"note: {db} has an older schema (0004), read as it is: it cannot be upgraded where it "
                            "is (not writable).\n")
        reader = Reader(str(db))
        try:
            snap = reader.snapshot()
        finally:
            reader.close()
        assert snap.problem is None and snap.counts["analyze"]["pending"] == 2 and snap.runners == []
        assert sorted(p.name for p in db.parent.iterdir()) == ["m2i.db"]
    command.downgrade(alembic_config(f"sqlite:///{db}"), "0002")  # older than m2i reads as it is
    for side in ("-wal", "-shm"):
        Path(str(db) + side).unlink(missing_ok=True)
    with read_only(db.parent):
        r = m2i("status", "--db", str(db), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "has an older schema (0002) that must be upgraded" in r.stderr and "copy the file somewhere writable" in r.stderr


def test_a_read_only_folder_whose_log_holds_writes_is_read_with_them_or_refused_in_one_sentence(closed_db, tmp_path):
    """A database copied while a runner had it open keeps its latest rows in m2i.db-wal: read through
    the -shm beside it they are all there; without one they cannot be read, and reading the file
    alone would silently show the run as it was before them."""
    db = closed_db
    subprocess.run([sys.executable, "-c", (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA wal_autocheckpoint=0')\n"
        "c.execute(\"UPDATE sample SET status = 'failed', error = 'late' WHERE id = 1\")\n"
        "os._exit(0)  # killed: the update stays in the log\n"), str(db)], check=True)
    assert Path(f"{db}-wal").stat().st_size > 0 and Path(f"{db}-shm").exists()
    with read_only(db.parent):
        r = m2i("status", "--json", "--db", str(db), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["stages"]["analyze"]["failed"] == 1
    Path(f"{db}-shm").unlink()
    with read_only(db.parent):
        r = m2i("status", "--json", "--db", str(db), cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    assert "latest writes are in m2i.db-wal" in r.stderr and "copy m2i.db and m2i.db-wal together" in r.stderr


def test_a_database_path_may_hold_any_character(tmp_path):
    """SQLite reads a read-only path as a URI, which ends at "#" or "?", and SQLAlchemy decodes %XX:
    a database in a folder "run#2" was "an empty database" (and a stray file "run" was made), one in
    "what?" was missing, one in "p%20c" was looked for in "p c"."""
    from tui.data import Reader

    folders = ["run#2", "what?", "50% done", "p%20c"]
    for name in folders:
        db = tmp_path / name / "m2i.db"
        db.parent.mkdir()
        r = m2i("init", "--db", str(db))
        assert r.returncode == 0, r.stderr
        store = open_store(db)
        seed_run(store, 2)
        store.close()
        r = m2i("sql", "SELECT count(*) AS n FROM sample", "--json", "--db", str(db))
        assert r.returncode == 0 and json.loads(r.stdout) == {"n": 2}, (name, r.stderr)
        r = m2i("doctor", "--db", str(db))
        assert f"database: {db}: 1 run(s)" in r.stdout, (name, r.stdout)
        reader = Reader(str(db))
        try:
            snap = reader.snapshot()
        finally:
            reader.close()
        assert snap.problem is None and snap.counts["analyze"]["pending"] == 2 and reader.where == str(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(folders)  # no file at a path cut short


def test_sql_on_an_older_database_upgrades_it_and_reads(tmp_path):
    """`m2i sql` (read-only) on an older schema upgrades it first, copying the file aside, then answers."""
    from alembic import command

    from m2i.store.engine import alembic_config, head_revision

    db = tmp_path / "m2i.db"
    command.upgrade(alembic_config(f"sqlite:///{db}"), "0001")
    if head_revision() == "0001":
        pytest.skip("only one revision so far")
    r = m2i("sql", "SELECT version_num FROM alembic_version", "--json", "--db", str(db))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout) == {"version_num": head_revision()}
    assert (tmp_path / "m2i.db.bak-0001").exists()


def test_read_only_older_database_says_what_to_do(tmp_path):
    """An older schema that may not be upgraded because the file is read-only: one sentence with
    the way out, not a pointer back to the read-only command the user just ran; file untouched."""
    from alembic import command

    from m2i.store.engine import alembic_config, head_revision

    if head_revision() == "0001":
        pytest.skip("only one revision so far")
    work = Path(tempfile.mkdtemp(prefix="m2i-ro-old-"))
    try:
        db = work / "m2i.db"
        command.upgrade(alembic_config(f"sqlite:///{db}"), "0001")
        before = db.read_bytes()
        with read_only(db):
            r = m2i("status", "--db", str(db), cwd=work)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "older schema (0001)" in r.stderr and "read-only" in r.stderr and "copy the file" in r.stderr
        assert "m2i status" not in r.stderr
        assert db.read_bytes() == before and not (work / "m2i.db.bak-0001").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_requeue_or_cancel_by_id_says_which_rows_it_left_alone(tmp_path):
    """`--id` on a done row or a missing id said only "requeued generate: 0" and exit 0."""
    db = tmp_path / "a.db"
    store = open_store(db)
    run_id = seed_run(store, 2)
    rows = ops.claim(store, "analyze", worker="w", run_id=run_id, n=2)
    ops.complete_many(store, "analyze", [(rows[0]["id"], {})], worker="w")
    ops.fail(store, "analyze", rows[1]["id"], worker="w", error="boom", retryable=False)
    done_id, failed_id = rows[0]["id"], rows[1]["id"]
    store.close()
    r = m2i("requeue", "--stage", "analyze", "--id", str(done_id), "--id", "9999", "--db", str(db))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{done_id} (done)" in r.stderr and "9999 (no such analyze row in this run)" in r.stderr
    assert "requeue takes only failed rows" in r.stderr
    # one of two acted on: exit 0, the other named
    r = m2i("requeue", "--stage", "analyze", "--id", str(failed_id), "--id", str(done_id), "--db", str(db))
    assert r.returncode == 0 and "requeued analyze: 1" in r.stdout and f"{done_id} (done)" in r.stderr
    r = m2i("cancel", "--stage", "analyze", "--id", str(done_id), "--db", str(db))
    assert r.returncode == 1 and "cancel takes only pending or running rows" in r.stderr


def test_requeue_says_which_failed_clips_it_cannot_bring_back(tmp_path):
    """Clips refused at ingest (silence, NaN) have no audio to analyse again: requeue said only
    "requeued analyze: 0", which reads as if nothing had failed."""
    import numpy as np
    import soundfile as sf

    sr = 16000
    (tmp_path / "set").mkdir()
    sf.write(tmp_path / "set" / "quiet.wav", np.zeros(sr * 2, np.float32), sr)
    sf.write(tmp_path / "set" / "tone.wav", 0.3 * np.sin(np.arange(sr * 2) / 10.0), sr)
    db = tmp_path / "a.db"
    assert m2i("ingest", str(tmp_path / "set"), "--db", str(db)).returncode == 0
    r = m2i("requeue", "--db", str(db))
    assert r.returncode == 0 and "requeued analyze: 0" in r.stdout
    assert "1 clip(s) stay failed: their audio was unusable at ingest" in r.stdout


def test_requeue_by_error_text_says_what_it_took_back_or_that_nothing_matched(tmp_path):
    db = tmp_path / "a.db"
    store = open_store(db)
    run_id = seed_run(store, 2, config={"seed": 1, "max_attempts": 1})
    for err in ("CUDA out of memory", "refused"):
        r = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
        ops.fail(store, "analyze", r["id"], worker="w", error=err, retryable=False)
    r = m2i("requeue", "--error", "Out of memory", "--db", str(db))
    assert r.returncode == 0 and r.stdout.startswith("requeued analyze: 1, generate: 0") and \
        r.stdout.rstrip().endswith("(errors containing 'Out of memory')"), r.stdout
    r = m2i("requeue", "--stage", "render", "--error", "timeout", "--db", str(db))
    assert r.returncode == 1 and r.stderr == ("error: No failed row of run test at the render stage has an error "
                                              "containing 'timeout'; nothing was requeued (`m2i tui`, f, lists the "
                                              "errors).\n"), r.stderr


def test_requeue_needs_stage_with_id(tmp_path):
    db = tmp_path / "a.db"
    seed_run(open_store(db), 1)
    r = m2i("requeue", "--id", "3", "--db", str(db))
    assert r.returncode == 1 and "--stage" in r.stderr


def test_pause_resume_cancel_requeue(tmp_path):
    db = tmp_path / "a.db"
    store = open_store(db)
    run_id = seed_run(store, 2)
    assert "paused" in m2i("pause", "--db", str(db)).stdout
    assert ops.get_run(store, run_id)["paused"] is True
    assert "resumed" in m2i("resume", "--db", str(db)).stdout
    assert ops.get_run(store, run_id)["paused"] is False
    # render rows are added as prompts are written: cancelling the stage now cannot reach those
    out = m2i("cancel", "--stage", "render", "--db", str(db)).stdout
    assert out == ("cancelled render: 0\nrender rows added from now on (as analyze goes on) are not cancelled; to leave "
                   "render out, stop the runner and run it again with --stages analyze,generate,score\n")
    out = m2i("cancel", "--stage", "analyze", "--db", str(db)).stdout
    assert out == "cancelled analyze: 2\n"  # nothing comes before analyze
    assert "analyze: 2" in m2i("requeue", "--all", "--db", str(db)).stdout
    assert ops.status_counts(store, run_id)["analyze"]["pending"] == 2


def test_cancelling_a_finished_run_leaves_it_finished(tmp_path):
    """`m2i cancel` on a run with nothing left used to mark it [cancelled] in status and report."""
    db = tmp_path / "a.db"
    store = open_store(db)
    run_id = seed_run(store, 1)
    ops.cancel(store, run_id=run_id, stage="analyze")  # its one clip: the run has nothing left to do
    out = m2i("cancel", "--db", str(db)).stdout
    assert out == "run test has no pending or running work: nothing to cancel (it stays as it is)\n"
    assert ops.get_run(store, run_id)["cancelled"] is False
    assert "[cancelled]" not in m2i("status", "--db", str(db)).stdout


def test_no_run_yet(tmp_path):
    db = tmp_path / "a.db"
    open_store(db).close()
    r = m2i("pause", "--db", str(db))
    assert r.returncode == 1 and "no run yet" in r.stderr


@pytest.mark.parametrize("flag, value, says", [
    ("--llm", "antropic", "LLM provider 'antropic' is unknown: use one of anthropic, local, ollama, openai."),
    ("--images", "sdlx", "unknown image backend 'sdlx'; use one of auto, sdxl, preview."),
])
def test_misspelt_llm_or_images_stops_before_a_run_is_created(tmp_path, flag, value, says):
    db = tmp_path / "a.db"
    r = m2i("run", "--db", str(db), "--samples", "1", flag, value, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == f"error: {says}\n"  # one sentence, no ingest or runner lines first
    assert not db.exists() and not list(tmp_path.glob("*-output"))


@pytest.mark.parametrize("cmd", ["ingest", "run"])
def test_an_unusable_dataset_stops_before_a_run_is_created(tmp_path, cmd):
    """A typo in the path, an empty folder or a refused .npy: one sentence, and no empty run left behind."""
    (tmp_path / "empty").mkdir()
    import numpy as np

    np.save(tmp_path / "names.npy", np.array(["a", "b"]))
    db = tmp_path / "a.db"
    for path, says in (("musci", "does not exist"), ("empty", "contains no audio"), ("names.npy", "not audio")):
        args = [cmd, path] if cmd == "ingest" else [cmd, "--dataset", path, "--images", "preview"]
        r = m2i(*args, "--db", str(db), cwd=tmp_path)
        assert r.returncode == 1 and r.stderr.startswith("error: ") and says in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert not db.exists(), path
    store = open_store(db)
    seed_run(store, 1, name="alpha")
    r = m2i(*(["ingest", "musci"] if cmd == "ingest" else ["run", "--dataset", "musci"]), "--db", str(db),
            cwd=tmp_path)
    assert r.returncode == 1 and [x["name"] for x in ops.list_runs(store)] == ["alpha"]


def test_run_summary_tells_unusable_clips_from_failed_work(tmp_path):
    """A clip rejected at ingest cannot be requeued: the summary says so instead of advising requeue."""
    import numpy as np
    import soundfile as sf

    (tmp_path / "music").mkdir()
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "music" / "ok.wav", (0.2 * rng.standard_normal(32000)).astype(np.float32), 16000)
    sf.write(tmp_path / "music" / "short.wav", (0.2 * rng.standard_normal(4000)).astype(np.float32), 16000)
    db = str(tmp_path / "a.db")
    r = m2i("run", "--dataset", "music", "--stages", "render", "--images", "preview", "--db", db, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ('1 clip(s) of the dataset are unusable and were skipped: '
            '`m2i sql "SELECT source, error FROM sample WHERE audio_sha256 IS NULL AND status = \'failed\'"` says why') in r.stdout
    assert "requeue" not in r.stdout


def test_run_summary_names_the_image_folder_this_run_wrote_to(tmp_path):
    from m2i.pipeline import summary_lines

    store = open_store(tmp_path / "a.db")
    run_id = seed_run(store, 1, config={"out_dir": "m2i-output"})
    counts = {st: {"pending": 0, "running": 0, "done": 1, "failed": 0, "cancelled": 0} for st in ops.STAGE_ORDER}
    lines = summary_lines(store, run_id, counts, out_dir=str(tmp_path / "elsewhere"))
    assert f"images: {(tmp_path / 'elsewhere' / 'images').resolve()}" in lines
    # a relative folder is shown absolute, as the report and gallery are
    lines = summary_lines(store, run_id, counts)
    assert f"images: {(Path.cwd() / 'm2i-output' / 'images').resolve()}" in lines


def test_an_unknown_run_is_named_with_the_runs_there_are(tmp_path):
    db = tmp_path / "a.db"
    store = open_store(db)
    seed_run(store, 1, name="alpha")
    seed_run(store, 1, name="beta")
    for cmd in ("status", "report", "export", "gallery"):
        r = m2i(cmd, "--run", "9", "--db", str(db), cwd=tmp_path)
        assert r.returncode == 1, cmd
        assert r.stderr == "error: No run '9' in this database (its runs: 1 (alpha), 2 (beta)).\n", cmd


def test_run_with_a_misspelt_run_name_starts_nothing(tmp_path):
    db = tmp_path / "a.db"
    store = open_store(db)
    seed_run(store, 2, name="alpha")
    r = m2i("run", "--db", str(db), "--run", "alpah", "--images", "preview", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == ("error: No run 'alpah' in this database (its runs: 1 (alpha)); "
                        "add --new to start a new run with that name.\n")
    assert [x["name"] for x in ops.list_runs(store)] == ["alpha"]
    r = m2i("run", "--db", str(db), "--new", "--run", "alpah", "--images", "preview", "--stages", "render",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x["name"] for x in ops.list_runs(store)] == ["alpha", "alpah"]
    # --new with a name that is taken would make `--run alpha` quietly mean the newer run
    r = m2i("run", "--db", str(db), "--new", "--run", "alpha", "--images", "preview", "--stages", "render",
            cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == ("error: A run named 'alpha' already exists (run 1); drop --new to continue it, "
                        "or choose another name.\n")
    assert [x["name"] for x in ops.list_runs(store)] == ["alpha", "alpah"]


def test_a_run_name_of_only_digits_is_refused(tmp_path):
    says = ("error: A run name cannot be all digits ('5'), because `--run 5` means run id 5; "
            "choose a name with a letter in it, such as run-5.\n")
    fresh = tmp_path / "fresh.db"
    r = m2i("run", "--db", str(fresh), "--new", "--run", "5", "--images", "preview", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == says and not fresh.exists()
    db = tmp_path / "a.db"
    store = open_store(db)
    seed_run(store, 1, name="alpha")
    r = m2i("run", "--db", str(db), "--new", "--run", "5", "--images", "preview", "--stages", "render", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == says
    r = m2i("ingest", "demo", "--db", str(fresh), "--run", "5", cwd=tmp_path)  # the first run of a database too
    assert r.returncode == 1 and r.stderr == says
    assert [x["name"] for x in ops.list_runs(store)] == ["alpha"] and ops.list_runs(open_store(fresh)) == []
    r = m2i("run", "--db", str(db), "--new", "--run", "run-5", "--images", "preview", "--stages", "render",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x["name"] for x in ops.list_runs(store)] == ["alpha", "run-5"]


def test_tui_without_a_terminal_says_so_instead_of_hanging(tmp_path):
    db = tmp_path / "a.db"
    seed_run(open_store(db), 1)
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "tui", "--db", str(db)], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""  # no escape codes in the pipe
    assert r.stderr.startswith("error: m2i tui needs an interactive terminal") and r.stderr.count("\n") == 1


def test_tui_on_a_dumb_terminal_says_so(tmp_path):
    import os
    import pty

    db = tmp_path / "a.db"
    seed_run(open_store(db), 1)
    parent, child = pty.openpty()
    try:
        r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "tui", "--db", str(db)], stdin=child, stdout=child,
                           stderr=subprocess.PIPE, text=True, timeout=60, env={**os.environ, "TERM": "dumb"})
    finally:
        os.close(parent)
        os.close(child)
    assert r.returncode == 1
    assert r.stderr.startswith("error: m2i tui needs a terminal that can draw") and r.stderr.count("\n") == 1


def test_import_m2i_stays_light():
    code = ("import sys, m2i, m2i.store, m2i.runner, m2i.config, m2i.pipeline, m2i.stages;"
            "heavy = [m for m in ('torch', 'librosa', 'diffusers', 'transformers', 'llama_cpp', 'textual', 'cli', 'tui')"
            " if m in sys.modules]; print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_status_sql_and_requeue_on_postgresql_while_runners_are_live(tmp_path, pg_url):
    """Against PostgreSQL the same commands work unchanged, and a requeue issued while two
    runners are working is picked up by them: every row ends done, each processed once (a score
    written before the requeued clips' prompts finished is computed once more, with them)."""
    import collections
    import time

    from test_runner import _assert_complete, _spawn

    store = open_store(pg_url)
    run_id = seed_run(store, 12, config={"seed": 1, "max_attempts": 1})
    for row in ops.claim(store, "analyze", worker="earlier", n=3, run_id=run_id):
        ops.fail(store, "analyze", row["id"], worker="earlier", error="model crashed", retryable=False)
    log = tmp_path / "log"
    procs = [_spawn(pg_url, run_id, log, 0.05, lease="60") for _ in range(2)]
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (log.exists() and log.read_text().count("generate") >= 5):
            time.sleep(0.05)
        r = m2i("status", "--json", "--db", pg_url)
        assert r.returncode == 0, r.stderr
        stages = json.loads(r.stdout)["stages"]
        assert sum(stages["analyze"].values()) == 12 and stages["analyze"]["failed"] == 3
        r = m2i("requeue", "--db", pg_url)
        assert r.returncode == 0 and "analyze: 3" in r.stdout, (r.stdout, r.stderr)
        r = m2i("sql", "SELECT count(*) AS n FROM sample", "--json", "--db", pg_url)
        assert json.loads(r.stdout) == {"n": 12}
        r = m2i("sql", "DELETE FROM sample", "--db", pg_url)
        assert r.returncode == 1 and "read-only" in r.stderr and "Traceback" not in r.stderr
    finally:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    # The requeue may land after both runners decided they were finished; a third one mops up.
    p = _spawn(pg_url, run_id, log, 0.0, lease="60")
    p.communicate(timeout=120)
    _assert_complete(store, run_id, 12)
    entries = collections.Counter(tuple(line.split()[:2]) for line in log.read_text().splitlines())
    again = {row for row, n in entries.items() if n > 1}
    assert max(entries.values()) <= 2 and all(stage == "score" for stage, _ in again)
    assert ops.stale_scores(store, run_id) == 0
    store.close()


def test_sql_refuses_attach_and_setting_pragmas_before_they_run(tmp_path):
    """`m2i sql "ATTACH DATABASE 'x.db' AS e"` used to create x.db (then say "returns no rows"), and
    `PRAGMA query_only=OFF` ran before the refusal; reading pragmas still works."""
    db = tmp_path / "a.db"
    seed_run(open_store(db), 1)
    target = tmp_path / "created.db"
    for stmt in (f"ATTACH DATABASE '{target}' AS e", "PRAGMA writable_schema=ON", "PRAGMA query_only=OFF"):
        r = m2i("sql", stmt, "--db", str(db))
        assert r.returncode == 1 and r.stderr.startswith("error: m2i sql is read-only") and r.stderr.count("\n") == 1, stmt
    assert not target.exists()
    r = m2i("sql", "PRAGMA table_info(sample)", "--json", "--db", str(db))
    assert r.returncode == 0 and any(json.loads(line)["name"] == "status" for line in r.stdout.splitlines())
    assert json.loads(m2i("sql", "PRAGMA journal_mode", "--json", "--db", str(db)).stdout) == {"journal_mode": "wal"}


def test_report_of_a_cancelled_run_says_so(tmp_path):
    """`m2i status` marked a cancelled run; the report did not."""
    db = tmp_path / "a.db"
    store = open_store(db)
    run_id = seed_run(store, 1)
    ops.cancel(store, run_id=run_id)
    store.close()
    r = m2i("report", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "[cancelled]" in r.stdout.splitlines()[0]


def test_ctrl_c_says_so_and_exits_130(tmp_path, monkeypatch, capsys):
    """Typer turns a Ctrl-C into return code 130, which `m2i ingest` passed on in silence."""
    import cli
    import m2i.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(m2i.pipeline, "ingest", interrupted)
    with pytest.raises(SystemExit) as exc:
        cli.main(["ingest", "demo", "--db", str(tmp_path / "m.db")])
    assert exc.value.code == 130
    assert capsys.readouterr().err == "interrupted; what was written before it is kept\n"
