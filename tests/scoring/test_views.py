"""The SQL views on a real m2i SQLite store (created by open_store, i.e. the migrations)."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, text

from m2i.scoring import compare_modes
from m2i.scoring.views import VIEW_NAMES, create_statements, drop_statements
from m2i.store import open_store
from m2i.store.models import Image, Prompt, Sample, Score

FULL = {"key": "F#", "tonality": "minor", "tempo": 96.0,
        "mood": {"valence": 0.3, "arousal": 0.7, "words": ["tense", "driving"]}}


@pytest.fixture
def store_with_scores(tmp_path, legacy_data):
    from m2i.store import ops

    store = open_store(tmp_path / "views.db")
    run_id = ops.create_run(store, name="views", config={})
    rows = []
    with store.transaction() as conn:
        for s in legacy_data["samples"][:6]:
            features = FULL if s["idx"] == 5 else s["features"]
            sid = conn.execute(insert(Sample.__table__).values(
                run_id=run_id, idx=s["idx"], source=s["source"], meta=s["meta"], features=features,
                abc=s["abc"], status="done")).inserted_primary_key[0]
            for q in s["prompts"]:
                pid = conn.execute(insert(Prompt.__table__).values(
                    run_id=run_id, sample_id=sid, slot=q["slot"], mode=q["mode"], temperature=q["temperature"],
                    seed=q["slot"], text=q["text"], status="done")).inserted_primary_key[0]
                if q["slot"] == 4 and s["idx"] == 0:
                    continue  # one prompt not scored yet
                v = {m: round(0.1 * ((s["idx"] + q["slot"] + k) % 9) + 0.05, 3)
                     for k, m in enumerate(("originality", "elaboration", "alignment", "coherence", "overall"))}
                details = {"orig_run": v["originality"], "orig_clip": 0.5, "details": 12, "adjacent_sim": 0.4,
                           "sim_mode_mean": 0.7, "sim_clip_mean": 0.65}
                conn.execute(insert(Score.__table__).values(run_id=run_id, prompt_id=pid, status="done",
                                                            method="m2i-score/1", details=details, **v))
                conn.execute(insert(Image.__table__).values(run_id=run_id, prompt_id=pid, status="done",
                                                            path=f"images/{pid}.png"))
                rows.append({"sample_id": sid, "mode": q["mode"], **v})
    ops.save_report(store, run_id, "modes", compare_modes(rows, n_boot=200))
    yield store, run_id, rows
    store.close()


def test_prompt_scores_view_has_one_row_per_prompt_with_features(store_with_scores):
    store, run_id, _ = store_with_scores
    with store.read() as conn:
        got = conn.execute(text(
            "SELECT sample_idx, slot, mode, key, tonality, tempo, mood, score_status, originality, image_path "
            "FROM v_prompt_scores WHERE run_id = :r ORDER BY sample_idx, slot"), {"r": run_id}).all()
    assert len(got) == 30
    first = got[0]
    assert first[:7] == (0, 0, "convergent", "F", "minor", 125.0, "upbeat, dark")
    assert first.score_status == "done" and first.image_path.endswith(".png")
    unscored = got[4]
    assert (unscored.slot, unscored.score_status, unscored.originality, unscored.image_path) == (4, None, None, None)
    full = got[25]
    assert (full.key, full.tempo, full.mood) == ("F#", 96.0, '["tense","driving"]')


def test_mode_summary_agrees_with_compare_modes(store_with_scores):
    store, run_id, rows = store_with_scores
    with store.read() as conn:
        got = {r.mode: r for r in conn.execute(text("SELECT * FROM v_mode_summary WHERE run_id = :r"), {"r": run_id})}
    assert set(got) == {"convergent", "divergent"}
    assert (got["convergent"].n_prompts, got["convergent"].n_scored, got["convergent"].n_samples) == (18, 18, 6)
    assert (got["divergent"].n_prompts, got["divergent"].n_scored) == (12, 11)
    run = compare_modes(rows, n_boot=10)["run"]
    for mode in ("convergent", "divergent"):
        for m in ("originality", "elaboration", "alignment", "coherence", "overall"):
            assert getattr(got[mode], f"mean_{m}") == pytest.approx(run[m][mode]["mean"], abs=1e-6)
            assert getattr(got[mode], f"max_{m}") == pytest.approx(run[m][mode]["max"], abs=1e-6)


def test_views_drop_cleanly(store_with_scores):
    store, _, _ = store_with_scores
    with store.transaction() as conn:
        for stmt in drop_statements("sqlite"):
            conn.execute(text(stmt))
        names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'view'"))}
    assert not names & set(VIEW_NAMES)


def test_postgresql_text_uses_jsonb_access():
    pg = "\n".join(create_statements("postgresql"))
    assert "jsonb_typeof" in pg and "json_extract" not in pg
    with pytest.raises(ValueError):
        create_statements("mysql")


def test_every_query_in_the_sql_cookbook_runs_and_returns_rows(store_with_scores):
    """docs/sql.md's worked queries, run read-only through ``m2i sql``'s own function."""
    import re
    from pathlib import Path

    from m2i.store.sql import run_readonly_query

    store, run_id, _ = store_with_scores
    assert run_id == 1  # the cookbook's queries name run 1
    doc = (Path(__file__).resolve().parents[2] / "docs" / "sql.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", doc, flags=re.S)
    assert len(queries) >= 10
    ro = open_store(store.path, readonly=True)
    try:
        for q in queries:
            cols, rows = run_readonly_query(ro, q)
            assert cols and rows, q
    finally:
        ro.close()


@pytest.fixture(scope="module")
def pg_url():
    """A throwaway PostgreSQL server (scripts/pg.sh); skipped where PostgreSQL is not installed."""
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'm2i[pg]'); PostgreSQL view test skipped")
    url = os.environ.get("M2I_TEST_PG_URL")
    if url:
        yield url
        return
    if not (shutil.which("initdb") or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); PostgreSQL view test skipped")
    pg_sh = Path(__file__).resolve().parents[2] / "scripts" / "pg.sh"
    workdir = tempfile.mkdtemp(prefix="m2i-pgviews-")
    os.chmod(workdir, 0o755)
    r = subprocess.run(["bash", str(pg_sh), "start", workdir], capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"could not start a throwaway PostgreSQL server: {r.stderr.strip()}")
    try:
        yield r.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(pg_sh), "stop", workdir], capture_output=True, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)


def test_views_on_postgresql(pg_url):
    """The PostgreSQL text gives the same rows as SQLite for legacy and full-form features."""
    from m2i.store import ops

    store = open_store(pg_url)
    try:
        run_id = ops.create_run(store, name="pg views", config={})
        feats = [{"key": "F", "tonality": "minor", "tempo": 125.0, "mood": "upbeat, dark"}, FULL]
        with store.transaction() as conn:
            for idx, f in enumerate(feats):
                sid = conn.execute(insert(Sample.__table__).values(
                    run_id=run_id, idx=idx, source="s", meta={}, features=f, status="done")).inserted_primary_key[0]
                for slot, mode in enumerate(("convergent", "convergent", "divergent")):
                    pid = conn.execute(insert(Prompt.__table__).values(
                        run_id=run_id, sample_id=sid, slot=slot, mode=mode, temperature=0.4, seed=1, text="t",
                        status="done")).inserted_primary_key[0]
                    conn.execute(insert(Score.__table__).values(
                        run_id=run_id, prompt_id=pid, status="done", originality=0.1 * slot, elaboration=0.5,
                        alignment=0.5, coherence=0.5, overall=0.5))
        with store.read() as conn:
            rows = conn.execute(text("SELECT sample_idx, slot, key, tempo, mood, originality, image_path "
                                     "FROM v_prompt_scores WHERE run_id = :r ORDER BY 1, 2"), {"r": run_id}).all()
            summary = {r.mode: r for r in conn.execute(text("SELECT * FROM v_mode_summary WHERE run_id = :r"),
                                                       {"r": run_id})}
        assert [tuple(r) for r in rows[:1]] == [(0, 0, "F", 125.0, "upbeat, dark", 0.0, None)]
        assert (rows[3].key, rows[3].tempo, rows[3].mood) == ("F#", 96.0, '["tense", "driving"]')
        assert (summary["convergent"].n_scored, summary["divergent"].n_scored) == (4, 2)
        assert summary["convergent"].mean_originality == pytest.approx(0.05)
    finally:
        store.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_migration_creates_exactly_these_views(dialect):
    """Migration 0004 froze the SQL of m2i.scoring.views; a change to the views needs a new revision."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0004_views.py"
    spec = importlib.util.spec_from_file_location("m2i_migration_0004", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.CREATE[dialect] == create_statements(dialect)
    assert mod.DROP == drop_statements(dialect)
