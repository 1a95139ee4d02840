"""``migrate_db``: a run copied SQLite -> PostgreSQL -> SQLite comes back identical, row for row."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from store_helpers import make_clips, seed_run

from m2i.errors import StoreError
from m2i.store import open_store, ops
from m2i.store.migrate import COPY_ORDER, _read_statement, _tables, migrate_db


def _dump(url: str) -> dict[str, list[dict]]:
    """Every row of every copied table, JSON columns as their stored text."""
    tables = _tables()
    s = open_store(url, readonly=True)
    try:
        with s.read() as conn:
            return {n: [dict(r) for r in conn.execute(_read_statement(tables[n])).mappings()] for n in COPY_ORDER}
    finally:
        s.close()


def _busy_run(store) -> int:
    """A run in mid-flight: done, running, failed and pending rows, events, a report, JSON nulls."""
    run_id = seed_run(store, 4, config={"seed": 7, "max_attempts": 1, "note": None})
    bad = make_clips(1, seed=9)[0]
    bad.pcm, bad.error, bad.source = None, "broken.wav is truncated.", "broken.wav"
    ops.add_samples(store, run_id, [bad])
    rows = ops.claim(store, "analyze", worker="boxA:11:cpu", n=3, run_id=run_id)
    ops.complete_many(store, "analyze", [(rows[0]["id"], {"features": {"key": "C", "tempo": 101.5, "x": None},
                                                          "abc": "X:1\nK:C\nCDEF|"}),
                                         (rows[1]["id"], {"features": {"key": "A", "tempo": 88.25}})], worker="boxA:11:cpu")
    ops.fail(store, "analyze", rows[2]["id"], worker="boxA:11:cpu", error="model crashed")
    prompts = ops.claim(store, "generate", worker="boxB:22:cpu", n=4, run_id=run_id)
    ops.complete_many(store, "generate", [(p["id"], {"text": f"a quiet lake {p['id']}", "palette": ["#102030", "#ffeedd"],
                                                     "tokens_in": 120, "cost_usd": 0.00123}) for p in prompts[:3]],
                      worker="boxB:22:cpu")
    ops.complete(store, "generate", prompts[3]["id"], worker="boxB:22:cpu", values={"text": "no palette", "palette": None})
    with store.read() as conn:  # a JSON null, which must not turn into SQL NULL on the way
        assert conn.execute(text("SELECT palette FROM prompt WHERE id = :i"), {"i": prompts[3]["id"]}).scalar() == "null"
    img = ops.claim(store, "render", worker="boxB:22:cuda:1", n=1, run_id=run_id)[0]
    ops.complete(store, "render", img["id"], worker="boxB:22:cuda:1",
                 values={"path": "/shared/out/img1.png", "host": "boxB", "device": "cuda:1", "seed": 5, "refiner": False})
    ops.save_report(store, run_id, "compare", {"convergent": {"mean": 0.5}, "divergent": None})
    return run_id


def test_sqlite_to_postgresql_and_back_loses_nothing(tmp_path, pg_url):
    src = str(tmp_path / "src.db")
    store = open_store(src)
    run_id = _busy_run(store)
    second = seed_run(store, 2, name="second")
    store.close()

    out = migrate_db(src, pg_url)
    assert out["runs"] == 2 and out["tables"]["sample"] == 7 and out["tables"]["clip"] == 4  # run 2 reuses the same audio
    original = _dump(src)
    assert _dump(pg_url) == original

    back = str(tmp_path / "back.db")
    migrate_db(pg_url, back)
    assert _dump(back) == original

    # The copy is a working store: same counts, the run goes on, new ids do not collide.
    a, b = open_store(src, readonly=True), open_store(pg_url)
    assert ops.status_counts(b, run_id) == ops.status_counts(a, run_id)
    assert ops.status_counts(b, second) == ops.status_counts(a, second)
    with b.read() as conn:
        assert conn.execute(text("SELECT features FROM sample WHERE status = 'pending' LIMIT 1")).scalar() is None
        assert conn.execute(text("SELECT pg_typeof(features)::text FROM sample LIMIT 1")).scalar() == "json"
    rows = ops.claim(b, "generate", worker="boxC:33:cpu", n=50, run_id=run_id)
    assert len(rows) == ops.status_counts(a, run_id)["generate"]["pending"]
    new_run = ops.create_run(b, name="after", config={})
    assert new_run == max(run_id, second) + 1
    a.close()
    b.close()


def test_destination_with_data_is_refused_and_untouched(tmp_path, pg_url):
    src = str(tmp_path / "src.db")
    seed_run(open_store(src), 2)
    dst = open_store(pg_url)
    run_id = seed_run(dst, 1, name="already here")
    before = ops.status_counts(dst, run_id)
    with pytest.raises(StoreError, match="already holds data"):
        migrate_db(src, pg_url)
    assert ops.status_counts(dst, run_id) == before and len(ops.list_runs(dst)) == 1
    dst.close()


def test_same_database_on_both_sides_is_refused(tmp_path):
    db = tmp_path / "m2i.db"
    seed_run(open_store(db), 1)
    with pytest.raises(StoreError, match="same database"):
        migrate_db(str(db), f"sqlite:///{db}")


def test_missing_source_is_one_sentence(tmp_path):
    with pytest.raises(StoreError, match="No m2i database"):
        migrate_db(str(tmp_path / "nope.db"), str(tmp_path / "dst.db"))
    assert not (tmp_path / "dst.db").exists()
