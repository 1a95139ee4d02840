"""The run store: opening, schema checks, claiming with leases, completion, requeue, pause."""

from __future__ import annotations

import contextlib
import sqlite3
import time

import pytest
from sqlalchemy import text
from store_helpers import make_clips, seed_run

from m2i.errors import OlderSchemaError, StoreError
from m2i.store import models, open_store, ops

# The ``store`` and ``db_url`` fixtures (tests/store/conftest.py) run each test that takes them on
# SQLite and on PostgreSQL.


def test_new_database_is_wal_with_foreign_keys(tmp_path):
    store = open_store(tmp_path / "m2i.db")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_a_copy_of_the_file_alone_holds_a_closed_runs_rows_while_a_dashboard_reads(tmp_path):
    """With a dashboard still reading, the runner's close did not fold the write-ahead log in: a
    ``cp m2i.db`` taken after the run ended had no rows at all (they sat in m2i.db-wal)."""
    import shutil

    store = open_store(tmp_path / "m2i.db")
    dashboard = sqlite3.connect(f"file:{tmp_path / 'm2i.db'}?mode=ro", uri=True)
    assert dashboard.execute("SELECT count(*) FROM sample").fetchone() == (0,)
    seed_run(store, 3)
    store.close()
    shutil.copy(tmp_path / "m2i.db", tmp_path / "copy.db")
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT count(*) FROM sample").fetchone() == (3,)
    assert dashboard.execute("SELECT count(*) FROM sample").fetchone() == (3,)
    copy.close()
    dashboard.close()


def test_models_and_migrations_agree(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    s = open_store(db_url)
    with s.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    s.close()
    assert diff == []


def test_empty_postgresql_database_is_created_at_head(empty_pg_url):
    from m2i.store.engine import head_revision

    s = open_store(empty_pg_url)
    assert s.dialect == "postgresql"
    with s.read() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    run_id = seed_run(s, 2)
    assert ops.status_counts(s, run_id)["analyze"]["pending"] == 2
    s.close()


def test_postgresql_database_of_another_program_is_refused(empty_pg_url):
    from sqlalchemy import create_engine

    e = create_engine(empty_pg_url)
    with e.begin() as conn:
        conn.execute(text("CREATE TABLE customers (id integer)"))
    with pytest.raises(StoreError, match="not an m2i database"):
        open_store(empty_pg_url)
    with e.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")).scalar() == 1
    e.dispose()


def test_unreachable_postgresql_server_is_one_sentence():
    with pytest.raises(StoreError, match="Cannot open the database") as err:
        open_store("postgresql+psycopg://m2i:s3cret-pw@127.0.0.1:9/none?connect_timeout=2")
    assert "s3cret-pw" not in str(err.value) and "m2i:***@127.0.0.1:9" in str(err.value), "no password on screen"


def test_migrations_go_down_and_up_again_keeping_counts(db_url):
    """Every revision downgrades and upgrades; the stage counts survive the 0003 reshaping."""
    from alembic import command

    from m2i.store.engine import alembic_config

    s = open_store(db_url)
    run_id = seed_run(s, 3)
    ops.claim(s, "analyze", worker="w", n=1, run_id=run_id)
    url = s.url
    s.close()
    command.downgrade(alembic_config(url), "0002")
    command.upgrade(alembic_config(url), "head")
    s = open_store(db_url)
    assert ops.status_counts(s, run_id)["analyze"] == {"pending": 2, "running": 1, "done": 0, "failed": 0, "cancelled": 0}
    r = ops.claim(s, "analyze", worker="w", n=5, run_id=run_id)
    assert len(r) == 2 and ops.status_counts(s, run_id)["analyze"]["running"] == 3
    s.close()


def test_single_alembic_head():
    from alembic.script import ScriptDirectory

    from m2i.store.engine import alembic_config

    assert len(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()) == 1


def test_not_an_m2i_database_is_refused_and_untouched(tmp_path):
    p = tmp_path / "other.db"
    with sqlite3.connect(p) as c:
        c.execute("CREATE TABLE customers (id INTEGER)")
    before = p.read_bytes()
    with pytest.raises(StoreError, match="not an m2i database"):
        open_store(p)
    assert p.read_bytes() == before


def test_a_pipe_or_device_as_database_is_refused_at_once(tmp_path):
    """`--db` naming a FIFO had every command wait for ever (opening a pipe waits for a writer), and
    `m2i init --db /dev/null` left /dev/null-journal beside the device and failed with "disk I/O error"."""
    import os
    import stat
    import threading

    fifo = tmp_path / "m2i.db"
    os.mkfifo(fifo)
    for readonly in (False, True):
        result: list[BaseException | None] = []
        t = threading.Thread(target=lambda ro=readonly, out=result: out.append(_raised(lambda: open_store(fifo, readonly=ro))),
                             daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), "open_store waited on the pipe"
        assert isinstance(result[0], StoreError) and str(result[0]) == (
            f"{fifo} is a device or pipe, not a database file; pass a file path with --db.")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and os.listdir(tmp_path) == ["m2i.db"]
    with pytest.raises(StoreError, match="is a device or pipe"):
        open_store("/dev/null")


def _raised(fn) -> BaseException | None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread to assert on
        return exc
    return None


def test_text_file_is_refused_and_untouched(tmp_path):
    p = tmp_path / "notes.db"
    p.write_text("hello, not sqlite at all\n" * 10)
    with pytest.raises(StoreError, match="not an m2i database"):
        open_store(p)
    assert p.read_text().startswith("hello")


def test_newer_schema_is_refused_and_untouched(tmp_path):
    p = tmp_path / "m2i.db"
    open_store(p).close()
    with sqlite3.connect(p) as c:
        c.execute("UPDATE alembic_version SET version_num='ffffffffffff'")
    before = p.read_bytes()
    with pytest.raises(StoreError, match="newer m2i"):
        open_store(p)
    assert p.read_bytes() == before


def test_read_only_file_is_refused_for_writing_but_readable(tmp_path):
    p = tmp_path / "m2i.db"
    s = open_store(p)
    seed_run(s, 2)
    s.close()
    for side in ("-wal", "-shm"):
        (tmp_path / f"m2i.db{side}").unlink(missing_ok=True)
    p.chmod(0o444)
    try:
        import os

        if os.access(p, os.W_OK):
            pytest.skip("running as a user who can write read-only files")
        with pytest.raises(StoreError, match="read-only"):
            open_store(p)
        ro = open_store(p, readonly=True)
        assert ops.status_counts(ro)["analyze"]["pending"] == 2
    finally:
        p.chmod(0o644)


def test_missing_directory(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope" / "m2i.db")
    assert not (tmp_path / "nope").exists()


def test_older_schema_is_upgraded_with_a_backup(tmp_path):
    from alembic import command

    from m2i.store.engine import alembic_config, head_revision

    p = tmp_path / "m2i.db"
    url = f"sqlite:///{p}"
    command.upgrade(alembic_config(url), "0001")
    if head_revision() == "0001":
        pytest.skip("only one revision so far")
    s = open_store(p)
    with s.read() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    assert (tmp_path / "m2i.db.bak-0001").exists()


@pytest.mark.parametrize("how", [{"readonly": True}, {"upgrade": False}])
def test_older_schema_that_may_not_be_upgraded_names_both_revisions(tmp_path, how):
    """A read-only open (or ``upgrade=False``) refuses an older schema with a typed error; the file is untouched."""
    from alembic import command

    from m2i.store.engine import alembic_config, head_revision

    p = tmp_path / "m2i.db"
    command.upgrade(alembic_config(f"sqlite:///{p}"), "0001")
    if head_revision() == "0001":
        pytest.skip("only one revision so far")
    before = p.read_bytes()
    with pytest.raises(OlderSchemaError) as err:
        open_store(p, **how)
    assert isinstance(err.value, StoreError)
    assert (err.value.location, err.value.revision, err.value.head) == (str(p), "0001", head_revision())
    assert str(err.value) == (f"{p} has an older schema (0001); run any writing m2i command "
                              "(e.g. `m2i init`) to upgrade it.")
    assert p.read_bytes() == before
    assert not (tmp_path / "m2i.db.bak-0001").exists()


def test_other_store_errors_are_not_older_schema_errors(tmp_path):
    with pytest.raises(StoreError) as err:
        open_store(tmp_path / "absent.db", readonly=True)
    assert not isinstance(err.value, OlderSchemaError)


def test_a_full_disk_is_one_sentence_and_keeps_what_was_written(tmp_path):
    """SQLite says "database or disk is full" (here its page limit stands in for the disk): a
    traceback used to end `m2i ingest` on a full disk."""
    from sqlalchemy import event

    store = open_store(tmp_path / "m2i.db")
    run_id = seed_run(store, 2)
    with store.read() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    store.engine.dispose()
    event.listen(store.engine, "connect", lambda dbapi, _rec: dbapi.execute(f"PRAGMA max_page_count = {pages + 3}"))
    with pytest.raises(StoreError, match=r"^Cannot write to the database .*m2i\.db: its disk is full; free space "
                                         r"there, then run the same command again \(what was written before is kept\)\.$"):
        ops.add_samples(store, run_id, make_clips(50, seed=1, samples=16000))
    store.close()
    store = open_store(tmp_path / "m2i.db", readonly=True)
    assert ops.status_counts(store, run_id)["analyze"]["pending"] >= 2, "the clips written before are kept"
    store.close()


@contextlib.contextmanager
def another_programs_write_lock(db):
    """An ``sqlite3`` shell that typed ``BEGIN IMMEDIATE;`` (or DB Browser holding unsaved changes)."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    finally:
        con.execute("ROLLBACK")
        con.close()


def test_a_write_lock_held_past_the_busy_timeout_is_one_sentence_for_a_command(tmp_path, monkeypatch):
    """`m2i requeue` (any one-shot write) while another program keeps a transaction open: a
    traceback ending in "database is locked" used to be all the user got."""
    from m2i.store import engine

    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 200)
    db = tmp_path / "m2i.db"
    store = open_store(db)
    run_id = seed_run(store, 2)
    with another_programs_write_lock(db):
        t0 = time.monotonic()
        with pytest.raises(StoreError, match=(
            r"^The database .*m2i\.db has been locked by another program for 0 s \(an open transaction: an sqlite3 "
            r"shell inside BEGIN, or DB Browser for SQLite with unsaved changes\); commit or close that program, "
            r"then run the same command again\.$")):
            ops.set_paused(store, run_id, True)
        assert time.monotonic() - t0 >= 0.15, "it waited out the busy timeout first"
    assert ops.set_paused(store, run_id, True), "once the lock is let go the same command works"
    store.close()


def test_ingest_is_idempotent_and_bad_clips_fail_with_reason(store):
    run_id = ops.create_run(store, name="r", config={})
    clips = make_clips(3)
    clips.append(type(clips[0])("broken.wav", {}, None, "broken.wav is truncated: no audio frames."))
    assert ops.add_samples(store, run_id, clips) == {"added": 3, "failed": 1, "skipped": 0}
    assert ops.add_samples(store, run_id, clips) == {"added": 0, "failed": 0, "skipped": 4}
    counts = ops.status_counts(store, run_id)["analyze"]
    assert counts["pending"] == 3 and counts["failed"] == 1
    with store.read() as conn:
        err, sid = conn.execute(text("SELECT error, id FROM sample WHERE source='broken.wav'")).one()
    assert "truncated" in err
    # the event log names the bad clip by its sample id, as the Failures list and `m2i sql` do (not its index)
    assert [e["item"] for e in ops.recent_events(store, run_id) if e["level"] == "error"] == [sid]


def test_a_long_ingest_says_how_far_it_is(store, monkeypatch, caplog):
    """`m2i ingest` of a folder of thousands of files sat silent for minutes; it says how far it is
    every ten seconds (here every clip)."""
    monkeypatch.setattr(ops, "INGEST_NEWS_S", 0.0)
    run_id = ops.create_run(store, name="long", config={"seed": 1})
    with caplog.at_level("INFO", logger="m2i"):
        counts = ops.add_samples(store, run_id, make_clips(3))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ingest: ")]
    assert counts["added"] == 3
    assert said == [f"ingest: {n} added, 0 bad, 0 already present so far" for n in range(3)]


def test_samples_limit(store):
    run_id = ops.create_run(store, name="r", config={})
    assert ops.add_samples(store, run_id, make_clips(5), limit=2)["added"] == 2


def test_samples_limit_counts_usable_clips_not_bad_ones(store):
    """--samples 3 on a dataset whose second clip is NaN: 3 clips to analyse, the bad one recorded too."""
    run_id = ops.create_run(store, name="r", config={})
    clips = make_clips(5)
    clips[1].pcm, clips[1].error = None, "the clip contains 1 NaN or infinite samples; repair or drop it."
    assert ops.add_samples(store, run_id, clips, limit=3) == {"added": 3, "failed": 1, "skipped": 0}
    # a later ingest with a larger limit tops the run up to that many usable clips
    assert ops.add_samples(store, run_id, make_clips(6, seed=1), limit=5)["added"] == 2


def test_claim_is_exclusive_and_completion_creates_downstream(store):
    run_id = seed_run(store, 3)
    a = ops.claim(store, "analyze", worker="w1", n=2, run_id=run_id)
    b = ops.claim(store, "analyze", worker="w2", n=5, run_id=run_id)
    assert len(a) == 2 and len(b) == 1
    assert {r["id"] for r in a}.isdisjoint({r["id"] for r in b})
    assert all(r["status"] == "running" and r["attempts"] == 1 for r in a)
    # w2 cannot complete w1's row
    assert ops.complete(store, "analyze", a[0]["id"], worker="w2", values={"abc": "x"}) is False
    assert ops.complete(store, "analyze", a[0]["id"], worker="w1", values={"abc": "X:1", "features": {"key": "C"}})
    with store.read() as conn:
        prompts = conn.execute(
            text("SELECT mode, temperature, slot FROM prompt WHERE sample_id=:s ORDER BY slot"), {"s": a[0]["id"]}
        ).all()
    assert [(m, t) for m, t, _ in prompts] == [("convergent", 0.4)] * 3 + [("divergent", 0.8)] * 2
    p = ops.claim(store, "generate", worker="w1", n=1, run_id=run_id)[0]
    ops.complete(store, "generate", p["id"], worker="w1", values={"text": "t"})
    counts = ops.status_counts(store, run_id)
    assert counts["score"]["pending"] == 1 and counts["render"]["pending"] == 1


def test_modes_are_configurable_per_run(store):
    cfg = {"modes": [{"mode": "convergent", "count": 1, "temperature": 0.2},
                     {"mode": "divergent", "count": 4, "temperature": 1.1}]}
    run_id = seed_run(store, 1, config=cfg)
    r = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
    ops.complete(store, "analyze", r["id"], worker="w", values={})
    with store.read() as conn:
        temps = [t for (t,) in conn.execute(text("SELECT temperature FROM prompt ORDER BY slot"))]
    assert temps == [0.2, 1.1, 1.1, 1.1, 1.1]


def test_expired_lease_is_reclaimed_and_late_result_dropped(store):
    run_id = seed_run(store, 1)
    r = ops.claim(store, "analyze", worker="dead", n=1, lease_s=0.05, run_id=run_id)[0]
    time.sleep(0.1)
    r2 = ops.claim(store, "analyze", worker="alive", n=1, run_id=run_id)
    assert [x["id"] for x in r2] == [r["id"]] and r2[0]["attempts"] == 2
    assert ops.complete(store, "analyze", r["id"], worker="dead", values={}) is False
    assert ops.complete(store, "analyze", r["id"], worker="alive", values={}) is True
    assert ops.status_counts(store, run_id)["generate"]["pending"] == 5


def test_lease_renewal_keeps_the_row(store):
    """Renewed three times, the row outlives its first lease; each renewal has 0.6 s of slack so a
    busy machine does not let a lease run out between two renewals."""
    run_id = seed_run(store, 1)
    t0 = time.monotonic()
    r = ops.claim(store, "analyze", worker="w", n=1, lease_s=1.0, run_id=run_id)[0]
    for _ in range(3):
        time.sleep(0.4)
        assert ops.renew(store, "analyze", [r["id"]], worker="w", lease_s=1.0) == 1
    assert time.monotonic() - t0 > 1.0  # past the first lease
    assert ops.claim(store, "analyze", worker="other", n=1, run_id=run_id) == []


def test_fail_retries_then_fails_and_requeue_brings_back(store):
    run_id = seed_run(store, 1, config={"max_attempts": 2})
    for attempt in (1, 2):
        r = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
        status = ops.fail(store, "analyze", r["id"], worker="w", error=f"bad {attempt}")
    assert status == "failed"
    assert ops.claim(store, "analyze", worker="w", run_id=run_id) == []
    with store.read() as conn:
        row = conn.execute(text("SELECT status, attempts, error FROM sample")).one()
    assert tuple(row) == ("failed", 2, "bad 2")
    assert ops.requeue(store, run_id=run_id, stage="analyze")["analyze"] == 1
    r = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
    assert r["attempts"] == 1


def test_requeue_takes_back_only_the_rows_whose_error_says_so(store):
    """After a night of renders, some failed for a full GPU and some for a refused prompt: only the
    first kind is worth another attempt, and picking their ids out by hand was the only way."""
    run_id = seed_run(store, 4, config={"max_attempts": 1})
    errors = ["CUDA out of memory. Tried to allocate 2.0 GiB", "the provider refused: content policy",
              "torch.OutOfMemoryError: CUDA Out Of Memory", "50% of the 100_000 tokens: over budget"]
    for err in errors:
        r = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
        ops.fail(store, "analyze", r["id"], worker="w", error=err, retryable=False)
    assert ops.requeue(store, run_id=run_id, error="out of MEMORY") == {
        "analyze": 2, "generate": 0, "score": 0, "render": 0}  # any case
    with store.read() as conn:
        left = conn.execute(text("SELECT error FROM sample WHERE status = 'failed' ORDER BY id")).scalars().all()
    assert left == [errors[1], errors[3]]
    assert ops.requeue(store, run_id=run_id, error="of_the")["analyze"] == 0  # "_" and "%" are plain text
    assert ops.requeue(store, run_id=run_id, error="50% of the 100_000")["analyze"] == 1


def test_dead_worker_on_every_attempt_fails_the_row(store):
    run_id = seed_run(store, 1)
    for _ in range(3):
        ops.claim(store, "analyze", worker="w", lease_s=0.01, run_id=run_id)
        time.sleep(0.03)
    assert ops.claim(store, "analyze", worker="w", run_id=run_id) == []
    assert ops.status_counts(store, run_id)["analyze"]["failed"] == 1


def test_pause_hands_out_nothing_and_resume_continues(store):
    run_id = seed_run(store, 2)
    inflight = ops.claim(store, "analyze", worker="w", n=1, run_id=run_id)[0]
    assert ops.set_paused(store, run_id, True) is True
    assert ops.set_paused(store, run_id, True) is False
    assert ops.claim(store, "analyze", worker="w", n=5, run_id=run_id) == []
    assert ops.complete(store, "analyze", inflight["id"], worker="w", values={})  # in flight finishes
    ops.set_paused(store, run_id, False)
    assert len(ops.claim(store, "analyze", worker="w", n=5, run_id=run_id)) == 1


def test_cancel_and_requeue_cancelled(store):
    run_id = seed_run(store, 3)
    assert ops.cancel(store, run_id=run_id, stage="analyze")["analyze"] == 3
    assert ops.claim(store, "analyze", worker="w", run_id=run_id) == []
    assert ops.requeue(store, run_id=run_id, stage="analyze", failed_only=False)["analyze"] == 3


def test_score_waits_for_all_prompts_of_the_run(store):
    run_id = seed_run(store, 1)
    s = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
    ops.complete(store, "analyze", s["id"], worker="w", values={})
    prompts = ops.claim(store, "generate", worker="w", n=5, run_id=run_id)
    ops.complete(store, "generate", prompts[0]["id"], worker="w", values={})
    assert ops.claim(store, "score", worker="w", run_id=run_id) == []
    ops.complete_many(store, "generate", [(p["id"], {}) for p in prompts[1:]], worker="w")
    assert len(ops.claim(store, "score", worker="w", n=10, run_id=run_id)) == 5


def test_score_waits_for_every_clip_of_the_run_to_be_analysed(store):
    """An analysed clip brings five prompts: scoring before it would compare with a smaller run."""
    run_id = seed_run(store, 2)
    s = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
    ops.complete(store, "analyze", s["id"], worker="w", values={})
    prompts = ops.claim(store, "generate", worker="w", n=5, run_id=run_id)
    ops.complete_many(store, "generate", [(p["id"], {}) for p in prompts], worker="w")
    assert ops.claim(store, "score", worker="w", n=10, run_id=run_id) == []  # the second clip is not analysed
    s2 = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
    ops.fail(store, "analyze", s2["id"], worker="w", error="bad clip", retryable=False)
    assert len(ops.claim(store, "score", worker="w", n=10, run_id=run_id)) == 5


def _scored_run(store, *, fail_first: int, in_flight: bool = False):
    """One analysed clip whose first ``fail_first`` prompts failed and whose other prompts are scored
    (claimed by the score stage and not yet finished, when ``in_flight``)."""
    run_id = seed_run(store, 1)
    s = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
    ops.complete(store, "analyze", s["id"], worker="w", values={})
    prompts = ops.claim(store, "generate", worker="w", n=5, run_id=run_id)
    for p in prompts[:fail_first]:
        ops.fail(store, "generate", p["id"], worker="w", error="overloaded", retryable=False)
    ops.complete_many(store, "generate", [(p["id"], {"text": "t"}) for p in prompts[fail_first:]], worker="w")
    rows = ops.claim(store, "score", worker="s", n=10, run_id=run_id)
    if not in_flight:
        ops.complete_many(store, "score", [(r["id"], SCORED) for r in rows], worker="s")
    return run_id, [r["id"] for r in rows]


SCORED = {"originality": 0.4, "elaboration": 0.5, "alignment": 0.6, "coherence": 0.7, "overall": 0.55,
          "details": {"sim_run_mean": 0.3}}


def _scores(store, run_id):
    with store.read() as conn:
        return conn.execute(text(
            "SELECT status, originality, elaboration, alignment, coherence, overall, details FROM score "
            "WHERE run_id = :r ORDER BY id"), {"r": run_id}).all()


def test_a_requeued_prompt_that_finishes_puts_the_runs_scores_back_to_score_again(store):
    run_id, _ = _scored_run(store, fail_first=2)
    assert [r.status for r in _scores(store, run_id)] == ["done"] * 3
    assert ops.requeue(store, run_id=run_id, stage="generate")["generate"] == 2
    assert [r.status for r in _scores(store, run_id)] == ["done"] * 3  # nothing finished yet: still current
    again = ops.claim(store, "generate", worker="w", n=5, run_id=run_id)
    ops.complete(store, "generate", again[0]["id"], worker="w", values={"text": "t"})
    # the three scores compared each prompt with a smaller run: back to pending, without the
    # values that depended on it; elaboration and coherence read the prompt alone and stay
    rows = _scores(store, run_id)
    assert [tuple(r) for r in rows[:3]] == [("pending", None, 0.5, None, 0.7, None, None)] * 3
    assert rows[3].status == "pending" and ops.stale_scores(store, run_id) == 0
    assert any("3 score(s) to recompute" in e["message"] for e in ops.recent_events(store, run_id))
    assert ops.claim(store, "score", worker="s", n=10, run_id=run_id) == []  # one prompt is still being written
    ops.complete(store, "generate", again[1]["id"], worker="w", values={"text": "t"})
    assert len(ops.claim(store, "score", worker="s", n=10, run_id=run_id)) == 5  # the whole run, together


def test_a_score_batch_in_flight_when_a_prompt_finishes_is_scored_again(store):
    from m2i.report import build_report, format_text
    from m2i.stages import mode_rows

    run_id, in_flight = _scored_run(store, fail_first=1, in_flight=True)
    ops.requeue(store, run_id=run_id, stage="generate")  # while the score batch runs
    p = ops.claim(store, "generate", worker="w", run_id=run_id)[0]
    ops.complete(store, "generate", p["id"], worker="w", values={"text": "t"})
    assert all(ops.complete_many(store, "score", [(i, SCORED) for i in in_flight], worker="s"))
    # those four were computed without the new prompt: the report leaves them out and says so ...
    assert ops.stale_scores(store, run_id) == 4 and mode_rows(store, run_id) == []
    rep = build_report(store, run_id)
    assert rep["stale_scores"] == 4 and rep["modes"] is None
    assert "4 score(s) left out: they were computed before other prompts of the run finished" in format_text(rep)
    # ... and the score stage takes them again, with the new prompt's score
    assert len(ops.claim(store, "score", worker="s", n=10, run_id=run_id)) == 5
    assert ops.stale_scores(store, run_id) == 0


def test_status_counts_cover_every_stage_and_status(store):
    run_id = seed_run(store, 2)
    counts = ops.status_counts(store, run_id)
    assert set(counts) == {"analyze", "generate", "score", "render"}
    assert counts["analyze"] == {"pending": 2, "running": 0, "done": 0, "failed": 0, "cancelled": 0}


def test_stage_counts_stay_exact_through_every_change(store):
    """The trigger-maintained counts equal a real COUNT(*) after inserts, claims, failures and deletes."""
    run_id = seed_run(store, 6, config={"max_attempts": 1})
    rows = ops.claim(store, "analyze", worker="w", n=4, run_id=run_id)
    ops.complete_many(store, "analyze", [(r["id"], {}) for r in rows[:3]], worker="w")
    ops.fail(store, "analyze", rows[3]["id"], worker="w", error="x")
    ops.claim(store, "generate", worker="w", n=7, run_id=run_id)
    ops.cancel(store, run_id=run_id, stage="generate", ids=[1, 2])
    with store.transaction() as conn:
        conn.execute(text("DELETE FROM prompt WHERE id = 3"))
    counts = ops.status_counts(store, run_id)
    with store.read() as conn:
        for stage, table in (("analyze", "sample"), ("generate", "prompt"), ("score", "score"), ("render", "image")):
            real = dict(conn.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY status")).all())
            assert {k: v for k, v in counts[stage].items() if v} == real, stage


def test_image_locations_say_which_files_are_not_here(store, tmp_path):
    """Images rendered on two machines: the one whose file is on this machine's disk is
    reachable, the one another host wrote to its own disk is not."""
    run_id = seed_run(store, 1)
    s = ops.claim(store, "analyze", worker="w", run_id=run_id)[0]
    ops.complete(store, "analyze", s["id"], worker="w", values={})
    prompts = ops.claim(store, "generate", worker="w", n=5, run_id=run_id)
    ops.complete_many(store, "generate", [(p["id"], {}) for p in prompts], worker="w")
    here = tmp_path / "out" / "a.png"
    here.parent.mkdir()
    here.write_bytes(b"\x89PNG\r\n\x1a\n")
    imgs = ops.claim(store, "render", worker="boxA:1:cuda:0", n=2, run_id=run_id)
    ops.complete(store, "render", imgs[0]["id"], worker="boxA:1:cuda:0",
                 values={"path": str(here), "host": "boxA", "device": "cuda:0"})
    ops.complete(store, "render", imgs[1]["id"], worker="boxA:1:cuda:0",
                 values={"path": "/scratch/boxB-only/b.png", "host": "boxB", "device": "cuda:1"})
    locs = ops.image_locations(store, run_id)
    assert [(x["host"], x["reachable"]) for x in locs] == [("boxA", True), ("boxB", False)]
    missing = ops.image_locations(store, run_id, missing_only=True)
    assert [x["path"] for x in missing] == ["/scratch/boxB-only/b.png"]
    assert missing[0]["worker"] == "boxA:1:cuda:0" and missing[0]["device"] == "cuda:1"


def test_runners_starting_together_on_an_empty_postgresql_database(empty_pg_url):
    """Four boxes start at once on an empty database: one creates the schema, all four open it."""
    import concurrent.futures

    def opener(_):
        s = open_store(empty_pg_url)
        s.close()
        return s.dialect

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(opener, range(4))) == ["postgresql"] * 4
    s = open_store(empty_pg_url)
    with s.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    s.close()


def test_a_runner_with_a_fast_clock_does_not_steal_live_rows_on_postgresql(pg_url, monkeypatch):
    """Leases are measured by the database server's clock: a box whose own clock runs ten
    minutes ahead sees another box's 60 s lease as live, and still gets the free rows."""
    from datetime import timedelta

    store = open_store(pg_url)
    run_id = seed_run(store, 2)
    mine = ops.claim(store, "analyze", worker="boxA:1", n=1, lease_s=60, run_id=run_id)
    monkeypatch.setattr(ops, "utcnow", lambda: models.utcnow() + timedelta(minutes=10))
    theirs = ops.claim(store, "analyze", worker="boxB:2", n=5, lease_s=60, run_id=run_id)
    assert [r["id"] for r in theirs] != [mine[0]["id"]] and len(theirs) == 1
    assert ops.complete(store, "analyze", mine[0]["id"], worker="boxA:1", values={}) is True
    store.close()


def test_a_report_stored_by_an_earlier_method_is_computed_again(store):
    """A run scored before `m2i-compare/2` kept printing its stored plain-percentile interval: the
    stored comparison is used only when the method that wrote it is the current one."""
    from m2i.report import build_report
    from m2i.scoring.stats import COMPARE_METHOD

    run_id, _ = _scored_run(store, fail_first=0)
    first = build_report(store, run_id)["modes"]
    assert first["method"] == COMPARE_METHOD
    ops.save_report(store, run_id, "modes", {**first, "method": "m2i-compare/1", "n_pairs": 99})
    again = build_report(store, run_id)["modes"]
    assert again["method"] == COMPARE_METHOD and again["n_pairs"] == first["n_pairs"] != 99
    assert ops.latest_report(store, run_id, "modes")["method"] == COMPARE_METHOD  # and stored for the dashboard
