"""Scores stay true to the whole run when prompts finish after scoring (a requeue, clips added later).

A real SQLite run with the real score stage and all-MiniLM-L6-v2: clips are analysed and prompts
written by test stages (varied, readable texts), 11 of the 30 prompts fail, the other 19 are
scored; `m2i requeue --failed` and a second run write the 11, and the score stage runs again.
Every stored score must then equal a fresh computation over the 30 finished prompts, and
`m2i report` must show exactly that. The same when clips are added to a scored run.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))  # the store's test stages

from store_helpers import RecordingStage, make_clips, seed_run  # noqa: E402

from m2i.runner import Runner  # noqa: E402
from m2i.stages import ScoreStage  # noqa: E402
from m2i.store import open_store, ops  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

SUBJECTS = ["a red fox", "an old lighthouse", "a violin maker", "a glass whale", "children flying kites",
            "a sleeping dragon", "a neon tram", "a monk in saffron robes", "a field of sunflowers", "a broken piano"]
PLACES = ["in a snowy forest", "on a stormy coast", "in a candlelit workshop", "above a desert city",
          "on a windy hill", "inside a ruined cathedral", "through a rainy night street", "in a mountain monastery"]
LIGHTS = ["at dawn", "under moonlight", "in golden hour haze", "lit by lightning", "in soft blue fog"]
CALM = {"key": "C", "tonality": "major", "tempo": 72.0, "mood": "calm, gentle, bright"}
WILD = {"key": "F", "tonality": "minor", "tempo": 150.0, "mood": "energetic, dark, tense"}

# prompt ids 1-30 (clip k has prompts 5k+1 .. 5k+5): the whole last clip and six others fail
FAILING = {26, 27, 28, 29, 30, 2, 5, 9, 13, 17, 21}


class Analyse(RecordingStage):
    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"features": CALM if row["idx"] % 2 else WILD, "abc": "X:1\nK:C\nC"}


class Write(RecordingStage):
    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        i = row["id"]
        scene = f"{SUBJECTS[(3 * i) % 10]} {PLACES[(5 * i) % 8]} {LIGHTS[i % 5]}"
        return {"title": scene.title(), "image_prompt": f"{scene}, detailed painting",
                "text": f"A picture of {scene}. The colours follow the music.", "provider": "test"}


def _run(store, run_id: int, impls) -> None:
    asyncio.run(Runner(store, run_id, impls, poll_s=0.02).run())


def m2i(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _stored(db: Path) -> dict[int, dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT prompt_id, status, originality, alignment, overall FROM score ORDER BY prompt_id").fetchall()
    con.close()
    return {r["prompt_id"]: dict(r) for r in rows}


def _fresh(db: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's finished prompts, and their scores computed now over all of them."""
    from m2i.scoring import score_prompts

    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    prompts = [dict(r) for r in con.execute(
        "SELECT id, sample_id, slot, mode, title, text, image_prompt FROM prompt WHERE status = 'done' ORDER BY id")]
    samples = {r["id"]: json.loads(r["features"]) for r in con.execute("SELECT id, features FROM sample")}
    con.close()
    return prompts, score_prompts(prompts, context=prompts, samples=samples)


def test_requeued_prompts_that_finish_after_scoring_are_scored_with_the_whole_run(tmp_path):
    db = tmp_path / "m2i.db"
    store = open_store(db)
    try:
        run_id = seed_run(store, 6)
        _run(store, run_id, [Analyse("analyze"), Write("generate", fail_ids=FAILING, fatal=True), ScoreStage()])
        first = _stored(db)
        assert sorted(p for p, s in first.items() if s["status"] == "done") == sorted(set(range(1, 31)) - FAILING)
        assert json.loads(m2i("report", "--json", "--db", str(db)).stdout)["modes"]["n_prompts"] == 19

        assert "generate: 11" in m2i("requeue", "--failed", "--db", str(db)).stdout
        _run(store, run_id, [Analyse("analyze"), Write("generate")])  # the prompts, not yet the scores
        # the 19 scores compared each prompt with 19 prompts, not 30: nothing shows them any more
        between = _stored(db)
        assert len(between) == 30 and {s["status"] for s in between.values()} == {"pending"}
        assert all(s["originality"] is None and s["overall"] is None for s in between.values())
        rep = json.loads(m2i("report", "--json", "--db", str(db)).stdout)
        assert rep["modes"] is None and rep["stale_scores"] == 0
        assert "30 score(s) wait for the score stage" in m2i("report", "--db", str(db)).stdout

        _run(store, run_id, [ScoreStage()])
    finally:
        store.close()

    stored = _assert_fresh(db, 30)
    changed = [p for p in first if first[p]["status"] == "done" and abs(first[p]["originality"] - stored[p]["originality"]) > 1e-3]
    assert len(changed) >= 15  # the first 19 were recomputed, not kept

    _assert_report_is_fresh(db, 30)


def test_clips_added_by_a_second_run_after_scoring_rescore_the_whole_run(tmp_path):
    db = tmp_path / "m2i.db"
    store = open_store(db)
    try:
        run_id = seed_run(store, 3)
        stages = lambda: [Analyse("analyze"), Write("generate"), ScoreStage()]  # noqa: E731
        _run(store, run_id, stages())
        first = _stored(db)
        ops.add_samples(store, run_id, make_clips(2, seed=7))  # as `m2i ingest` or `m2i run --dataset` on this run
        _run(store, run_id, stages())
    finally:
        store.close()
    stored = _assert_fresh(db, 25)
    assert all(abs(first[p]["originality"] - stored[p]["originality"]) > 1e-4 for p in first)
    _assert_report_is_fresh(db, 25)


def _assert_fresh(db: Path, n: int) -> dict[int, dict[str, Any]]:
    """Every score of the run is done and equals a fresh computation over its ``n`` finished prompts."""
    stored = _stored(db)
    prompts, fresh = _fresh(db)
    assert len(prompts) == n and len(stored) == n and {s["status"] for s in stored.values()} == {"done"}
    for p, f in zip(prompts, fresh):
        s = stored[p["id"]]
        for m in ("originality", "alignment", "overall"):
            assert abs(s[m] - f[m]) < 1e-6, (p["id"], m, s[m], f[m])
    return stored


def _assert_report_is_fresh(db: Path, n: int) -> None:
    """`m2i report` compares the modes on exactly those fresh scores and says nothing is left out."""
    from m2i.scoring import compare_modes

    prompts, fresh = _fresh(db)
    rep = json.loads(m2i("report", "--json", "--db", str(db)).stdout)
    assert rep["stale_scores"] == 0 and rep["modes"]["n_prompts"] == n and rep["modes"]["scores_until"]
    expected = compare_modes([{**p, **f} for p, f in zip(prompts, fresh)])
    for key in ("mean_convergent", "mean_divergent", "mean_diff"):
        assert abs(rep["modes"]["metrics"]["originality"][key] - expected["metrics"]["originality"][key]) < 1e-9
    text = m2i("report", "--db", str(db)).stdout
    assert f"{n} prompts" in text and "left out" not in text and "wait for the score stage" not in text
