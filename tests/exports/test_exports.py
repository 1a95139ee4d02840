"""Legacy import and exports in the earlier system's layout, on a real store with real data."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from m2i.errors import InputError
from m2i.exports import EXPORT_FILES, export_run, import_legacy
from m2i.scoring.legacy import load_legacy
from m2i.store import ops
from m2i.store.models import Image, Prompt, Sample, Score


def test_import_real_file_creates_a_scorable_run(store, legacy_dir):
    res = import_legacy(store, legacy_dir / "visual_prompts_complete.json")
    assert res["existing"] is False and (res["samples"], res["prompts"]) == (100, 500)
    counts = ops.status_counts(store, res["run_id"])
    assert counts["analyze"]["done"] == 100 and counts["generate"]["done"] == 500
    assert counts["score"]["pending"] == 500 and counts["render"]["pending"] == 500
    with store.read() as conn:
        s0 = conn.execute(select(Sample.__table__).where(Sample.__table__.c.idx == 0)).mappings().one()
        p0 = conn.execute(select(Prompt.__table__).where(Prompt.__table__.c.sample_id == s0["id"],
                                                         Prompt.__table__.c.slot == 0)).mappings().one()
    assert s0["features"]["mood"] == "upbeat, dark" and s0["abc"].startswith("X:1")
    assert s0["meta"]["slice_pos"] == [45, 55]
    assert p0["mode"] == "convergent" and p0["temperature"] == 0.4 and p0["title"] == "Ethereal Dreamscape in F minor"
    assert p0["text"].startswith("Title: Ethereal Dreamscape") and p0["image_prompt"] is None
    again = import_legacy(store, legacy_dir)  # the earlier system's output folder names its file
    assert again["existing"] is True and again["run_id"] == res["run_id"]


def test_export_round_trips_the_legacy_file_and_its_summary(store, legacy_dir, tmp_path):
    run_id = import_legacy(store, legacy_dir / "visual_prompts_complete.json")["run_id"]
    paths = export_run(store, run_id, tmp_path / "out")
    assert set(paths) == set(EXPORT_FILES)
    assert all(p.is_file() for p in paths.values())
    # the exported visual_prompts_complete.json reads back to the same samples and prompts
    orig = load_legacy(legacy_dir / "visual_prompts_complete.json")
    back = load_legacy(paths["visual_prompts_complete"])
    assert back["metadata"]["generation_timestamp"] == orig["metadata"]["generation_timestamp"]
    for a, b in zip(orig["samples"], back["samples"], strict=True):
        assert (a["idx"], a["features"], a["abc"], a["meta"]) == (b["idx"], b["features"], b["abc"], b["meta"])
        assert [(q["slot"], q["mode"], q["temperature"], q["text"]) for q in a["prompts"]] == \
               [(q["slot"], q["mode"], q["temperature"], q["text"]) for q in b["prompts"]]
    # generation_summary.json matches the one the earlier system wrote
    ours = json.loads(paths["generation_summary"].read_text())
    theirs = json.loads((legacy_dir / "generation_summary.json").read_text())
    for k in ("total_samples", "total_prompts", "convergent_prompts", "divergent_prompts",
              "generation_timestamp", "samples_with_errors"):
        assert ours[k] == theirs[k], k
    assert [(s["sample_idx"], s["features"], s["prompt_count"], sorted(s["modes"])) for s in ours["sample_summary"]] == \
           [(s["sample_idx"], s["features"], s["prompt_count"], sorted(s["modes"])) for s in theirs["sample_summary"]]
    flat = json.loads(paths["prompts_for_image_generation"].read_text())
    assert len(flat) == 500 and set(flat[0]) == {"sample_idx", "prompt_id", "mode", "temperature", "visual_prompt",
                                                 "features", "abc_notation"}
    # nothing scored or rendered yet: empty but valid creativity and image files
    assert json.loads(paths["creativity_prompt_scores"].read_text()) == []
    assert json.loads(paths["image_generation_summary"].read_text())["pending"] == 500


def _score_run(store, run_id):
    """Score every prompt of a run with the real scorer and store the results (what the score stage does)."""
    from m2i.scoring import score_prompts

    p, s, sc = Prompt.__table__, Sample.__table__, Score.__table__
    with store.read() as conn:
        prompts = [dict(r) for r in conn.execute(select(p.c.id, p.c.sample_id, p.c.slot, p.c.mode, p.c.title,
                                                        p.c.text, p.c.image_prompt).where(p.c.run_id == run_id))
                   .mappings()]
        samples = {r.id: r.features for r in conn.execute(select(s.c.id, s.c.features).where(s.c.run_id == run_id))}
    results = score_prompts(prompts, context=prompts, samples=samples)
    with store.transaction() as conn:
        for q, r in zip(prompts, results):
            conn.execute(update(sc).where(sc.c.prompt_id == q["id"]).values(status="done", **r))
    return prompts, results


def test_creativity_files_of_a_scored_run(store, small_legacy, tmp_path):
    run_id = import_legacy(store, small_legacy)["run_id"]
    prompts, results = _score_run(store, run_id)
    paths = export_run(store, run_id, tmp_path / "out")
    scores = json.loads(paths["creativity_prompt_scores"].read_text())
    assert len(scores) == 30
    assert set(scores[0]) >= {"sample_idx", "prompt_id", "mode", "temperature", "originality", "elaboration",
                              "alignment", "coherence", "overall", "prompt_text"}
    assert scores[0]["method"] == "m2i-score/1"
    summaries = json.loads(paths["creativity_sample_summaries"].read_text())
    assert [s["sample_idx"] for s in summaries] == list(range(6))
    assert summaries[0]["convergent_count"] == 3 and summaries[0]["divergent_count"] == 2
    conv0 = [r["originality"] for q, r in zip(prompts, results) if q["mode"] == "convergent"
             and q["sample_id"] == prompts[0]["sample_id"]]
    assert summaries[0]["convergent_originality"] == pytest.approx(sum(conv0) / 3)
    assert 0 < summaries[0]["diversity"]["all"] < 1
    report = json.loads(paths["creativity_comparison_report"].read_text())
    conv = [r["originality"] for q, r in zip(prompts, results) if q["mode"] == "convergent"]
    # the keys the old README reads, which the old file lacked
    assert report["convergent_metrics"]["originality_avg"] == pytest.approx(sum(conv) / len(conv))
    assert report["convergent_metrics"]["count"] == 18 and report["divergent_metrics"]["count"] == 12
    assert report["by_dimension"]["originality"]["convergent"] == pytest.approx(sum(conv) / len(conv))
    assert set(report["convergent_vs_divergent"]) >= {"convergent_mean", "divergent_mean", "difference",
                                                      "convergent_count", "divergent_count"}
    pa = report["paired_analysis"]
    assert pa["n_pairs"] == 6 and 0 <= pa["metrics"]["originality"]["p_holm"] <= 1
    stats = json.loads(paths["creativity_dataset_stats"].read_text())
    assert stats["total_prompts"] == 30 and stats["convergent_count"] == 18
    assert stats["std_originality"] > 0 and -1 <= stats["correlations"]["tempo"]["alignment"] <= 1


def test_image_files_list_every_image_row(store, small_legacy, tmp_path):
    run_id = import_legacy(store, small_legacy)["run_id"]
    im = Image.__table__
    with store.transaction() as conn:
        ids = [r[0] for r in conn.execute(select(im.c.id).where(im.c.run_id == run_id).order_by(im.c.id))]
        conn.execute(update(im).where(im.c.id.in_(ids[:4])).values(
            status="done", path="images/x.png", width=1024, height=1024, steps=30, guidance=7.0, seed=1,
            backend="preview", model="m2i-preview", device="cpu", seconds=0.5))
        conn.execute(update(im).where(im.c.id == ids[4]).values(status="failed", error="out of memory"))
    paths = export_run(store, run_id, tmp_path / "out")
    log = json.loads(paths["image_generation_log"].read_text())
    assert len(log) == 30 and log[4]["status"] == "failed" and log[4]["error"] == "out of memory"
    summary = json.loads(paths["image_generation_summary"].read_text())
    assert (summary["total_images_generated"], summary["failed"], summary["pending"]) == (4, 1, 25)
    assert summary["image_dimensions"] == "1024x1024" and summary["device"] == "cpu"
    assert summary["success_rate"] == pytest.approx(100 * 4 / 30)


def test_export_errors_are_one_clear_sentence(store, small_legacy, tmp_path):
    with pytest.raises(InputError, match="No run 42"):
        export_run(store, 42, tmp_path / "out")
    run_id = import_legacy(store, small_legacy)["run_id"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="Cannot write exports"):
        export_run(store, run_id, blocker)
    with pytest.raises(InputError, match="does not exist"):
        import_legacy(store, tmp_path / "missing.json")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(InputError, match="is a folder without a visual_prompts_complete.json; pass the path of"):
        import_legacy(store, tmp_path / "elsewhere")


def test_an_imported_run_has_no_unusable_clips(store, small_legacy):
    """Legacy samples have no audio but are done: `m2i run --stages score` on one used to end with
    "6 clip(s) of the dataset are unusable" and "-6 row(s) failed"."""
    from m2i.pipeline import summary_lines

    run_id = import_legacy(store, small_legacy)["run_id"]
    assert ops.unusable_samples(store, run_id) == 0
    with store.read() as conn:
        ids = list(conn.execute(select(Sample.__table__.c.id).where(Sample.__table__.c.run_id == run_id)).scalars())
    assert set(ops.row_statuses(store, "analyze", ids, run_id=run_id).values()) == {"done"}
    lines = summary_lines(store, run_id, ops.status_counts(store, run_id))
    assert not any("unusable" in line or "failed" in line for line in lines), lines


def test_report_and_dashboard_name_who_wrote_an_imported_run(store, small_legacy, tmp_path, capsys):
    """They read "llm: legacy None ... $0.0000, mean latency 0 ms" and "LLM ?/default"."""
    from m2i.report import build_report, format_text
    from tui.data import Reader

    run_id = import_legacy(store, small_legacy)["run_id"]
    text = format_text(build_report(store, run_id))
    assert ("llm: legacy  30 prompts imported, written by OllamaClient; model, tokens, cost and latency were not "
            "recorded") in text.splitlines()
    run = Reader(str(tmp_path / "exports.db")).snapshot().run
    assert (run.llm, run.model) == ("legacy", "OllamaClient")
    import cli

    cli.main(["status", "--db", str(tmp_path / "exports.db")])
    assert "llm: legacy (OllamaClient)   images: none yet" in capsys.readouterr().out


def test_import_legacy_from_a_wrong_path_creates_no_database(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "import-legacy", str(tmp_path), "--db", "m.db"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr == (f"error: {str(tmp_path)!r} is a folder without a "
                                              "visual_prompts_complete.json; pass the path of that file.\n")
    assert not (tmp_path / "m.db").exists()


@pytest.mark.slow
def test_imported_run_goes_through_the_score_stage_report_and_export(tmp_path, small_legacy):
    """End to end through the runner: import-legacy, the score stage, the report, the export."""
    from m2i.api import Runs

    runs = Runs(str(tmp_path / "e2e.db"))
    try:
        run_id = import_legacy(runs.store, small_legacy)["run_id"]
        run = runs.run(run_id)
        run.process(["score"])
        assert ops.status_counts(runs.store, run_id)["score"]["done"] == 30
        modes = run.report()["modes"]
        assert modes["n_pairs"] == 6 and set(modes["metrics"]) >= {"originality", "overall"}
        paths = export_run(runs.store, run_id, tmp_path / "out")
        report = json.loads(paths["creativity_comparison_report"].read_text())
        assert report["convergent_metrics"]["count"] == 18
        assert report["paired_analysis"]["metrics"]["originality"]["p_value"] == pytest.approx(
            modes["metrics"]["originality"]["p_value"])
    finally:
        runs.close()
