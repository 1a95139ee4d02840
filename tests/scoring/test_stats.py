"""Paired convergent-vs-divergent statistics on inputs with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from m2i.errors import InputError
from m2i.scoring.stats import (
    bootstrap_ci,
    cohen_dz,
    compare_modes,
    format_report,
    holm,
    rank_biserial,
    unpaired_note,
    wilcoxon_p,
)


def rows_with_shift(shift: float, *, n_clips: int = 30, seed: int = 1, noise: float = 0.05):
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_clips):
        base = rng.uniform(0.3, 0.7)
        for _ in range(3):
            rows.append({"sample_id": c, "mode": "convergent", "originality": base + rng.normal(0, noise),
                         "details": {"sim_clip_mean": 0.6, "sim_mode_mean": 0.7}})
        for _ in range(2):
            rows.append({"sample_id": c, "mode": "divergent", "originality": base + shift + rng.normal(0, noise),
                         "details": json.dumps({"sim_clip_mean": 0.6, "sim_mode_mean": 0.5})})
    return rows


def test_holm_golden_values():
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5, None, 0.01]) == [0.5, None, 0.02]
    assert holm([]) == []


def test_rank_biserial_golden_values():
    # |d| ranks 1, 2, 3, 4 ; positives 1 + 3 + 4 = 8 ; negative 2 -> (8 - 2) / 10
    assert rank_biserial(np.array([0.1, -0.2, 0.3, 0.4])) == pytest.approx(0.6)
    assert rank_biserial(np.array([0.0, 0.0])) == 0.0
    assert rank_biserial(np.array([])) is None


def test_cohen_dz_golden_values():
    d = np.array([1.0, 2.0, 3.0])
    assert cohen_dz(d) == pytest.approx(2.0 / 1.0)
    assert cohen_dz(np.array([0.0, 0.0])) == 0.0
    assert cohen_dz(np.array([1.0])) is None


def test_wilcoxon_matches_scipy_and_handles_all_zero():
    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, 0.2, -0.05, 0.33])
    stat, p = wilcoxon_p(d)
    ref = sps.wilcoxon(d)
    assert (stat, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert wilcoxon_p(np.zeros(5)) == (0.0, 1.0)
    assert wilcoxon_p(np.array([])) == (None, None)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    d = np.random.default_rng(3).normal(0.2, 0.1, 40)
    a = bootstrap_ci(d, n_boot=3000, seed=7)
    assert a == bootstrap_ci(d, n_boot=3000, seed=7)
    assert a[0] < d.mean() < a[1]
    assert a[1] - a[0] == pytest.approx(2 * 1.96 * d.std(ddof=1) / np.sqrt(d.size), rel=0.25)
    assert bootstrap_ci(np.array([]), n_boot=100) is None


def test_the_interval_of_few_clips_is_widened_to_its_coverage_and_none_under_five():
    """A percentile bootstrap of a handful of clips covered 79-90 % instead of 95 % (benchmarks/bench_ci.py):
    a pilot of 6 clips whose interval excluded 0 while the Wilcoxon p was 0.09 read as an effect."""
    from scipy.stats import t

    d = np.array([-0.05, 0.02, 0.11, 0.16, 0.09, 0.21])
    plain = bootstrap_ci(d, n_boot=10_000, seed=1, expanded=False)
    lo, hi = bootstrap_ci(d, n_boot=10_000, seed=1)
    assert lo < 0 < plain[0] < plain[1] < hi
    half_t = t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    assert hi - lo == pytest.approx(2 * half_t, rel=0.15)  # about the Student t interval's width
    for n in (1, 2, 4):
        assert bootstrap_ci(d[:n], n_boot=100) is None
    assert bootstrap_ci(d[:5], n_boot=100) is not None

    rows = []
    for sid, diff in enumerate((0.3, 0.1, 0.2)):
        rows += [{"sample_id": sid, "mode": "convergent", "originality": 0.5},
                 {"sample_id": sid, "mode": "divergent", "originality": 0.5 + diff}]
    rep = compare_modes(rows, metrics=("originality",), n_boot=200)
    assert rep["method"] == "m2i-compare/2" and rep["metrics"]["originality"]["ci95"] is None
    text = format_report(rep)
    orig = next(line for line in text.splitlines() if line.startswith("originality"))
    assert "[" not in orig and "no 95% CI with 3 clips paired: resampling fewer than 5 cannot cover 95 %." in text
    assert ("with 3 clips paired nothing can be significant: the Wilcoxon test's smallest p is 0.25 (0.25 after Holm "
            "over 1 metric); 6 or more clips are needed.") in text


@pytest.mark.parametrize("n, significant", [(7, False), (8, True)])
def test_a_run_of_fewer_than_eight_clips_is_told_it_cannot_be_significant(n, significant):
    """The demo's 6 clips can never show a `*`: every clip higher gives the exact p 2/2**6 = 0.031, and
    Holm over the five metrics makes it 0.156. The report says so, and says it no more from 8 clips on."""
    metrics = ("originality", "elaboration", "alignment", "coherence", "overall")
    rows = []
    for sid in range(n):
        for mode, shift in (("convergent", 0.0), ("divergent", 0.1 + 0.01 * sid)):
            rows.append({"sample_id": sid, "mode": mode, **{m: 0.4 + shift for m in metrics}})
    rep = compare_modes(rows, metrics=metrics, n_boot=200)
    o = rep["metrics"]["originality"]
    assert o["p_value"] == pytest.approx(2.0 ** (1 - n)) and o["significant"] is significant
    assert ("nothing can be significant" in format_report(rep)) is not significant


def test_a_real_shift_is_found_and_no_shift_is_not():
    shifted = compare_modes(rows_with_shift(0.1), metrics=("originality",), n_boot=2000)
    m = shifted["metrics"]["originality"]
    assert m["n_pairs"] == 30 and m["significant"] and m["p_holm"] < 0.001
    assert m["mean_diff"] == pytest.approx(m["mean_divergent"] - m["mean_convergent"], abs=1e-6)
    assert m["ci95"][0] > 0.05 and m["rank_biserial"] > 0.9 and m["cohen_dz"] > 1
    flat = compare_modes(rows_with_shift(0.0), metrics=("originality",), n_boot=2000)["metrics"]["originality"]
    assert not flat["significant"] and flat["ci95"][0] < 0 < flat["ci95"][1]


def test_holm_adjusts_across_the_metrics_compared():
    rows = rows_with_shift(0.02, seed=5)
    for r in rows:
        r["elaboration"] = r["originality"]
        r["alignment"] = r["originality"]
    rep = compare_modes(rows, metrics=("originality", "elaboration", "alignment"), n_boot=500)
    p = rep["metrics"]["originality"]["p_value"]
    assert rep["metrics"]["originality"]["p_holm"] == pytest.approx(min(1.0, 3 * p), rel=1e-6)


def test_diversity_per_clip_and_paired_across_modes():
    rep = compare_modes(rows_with_shift(0.0), metrics=("originality",), n_boot=200)
    clip = rep["clips"][0]
    assert clip["n"] == {"convergent": 3, "divergent": 2}
    assert clip["diversity"] == {"all": pytest.approx(0.4), "convergent": pytest.approx(0.3), "divergent": pytest.approx(0.5)}
    assert rep["diversity"]["mean_diff"] == pytest.approx(0.2)


def test_unpaired_clips_none_values_and_unknown_modes_are_skipped():
    rows = [
        {"sample_id": 1, "mode": "convergent", "originality": 0.4},
        {"sample_id": 1, "mode": "divergent", "originality": None},
        {"sample_id": 2, "mode": "convergent", "originality": 0.5},
        {"sample_id": 2, "mode": "divergent", "originality": 0.7},
        {"sample_id": 2, "mode": "other", "originality": 0.9},
    ]
    rep = compare_modes(rows, metrics=("originality",), n_boot=100)
    m = rep["metrics"]["originality"]
    assert rep["n_prompts"] == 4 and m["n_pairs"] == 1
    assert m["mean_diff"] == pytest.approx(0.2) and m["ci95"] is None  # one clip: no interval
    assert m["sd_diff"] is None and m["cohen_dz"] is None
    assert rep["run"]["originality"]["convergent"]["n"] == 2


def test_empty_input_gives_an_empty_but_complete_report():
    rep = compare_modes([], n_boot=10)
    assert rep["n_pairs"] == 0
    assert all(m["p_value"] is None and m["significant"] is False for m in rep["metrics"].values())
    json.dumps(rep)  # JSON-able
    assert "0 clips paired" in format_report(rep)


def test_a_run_of_one_mode_says_why_nothing_is_compared_and_gives_its_means():
    """A run with `divergent = 0` (a convergent-only pilot) printed a table of dashes: its own scores
    were nowhere in the report, and nothing said why the comparison was empty."""
    rows = [r for r in rows_with_shift(0.1, n_clips=4) if r["mode"] == "convergent"]
    rep = compare_modes(rows, metrics=("originality",), n_boot=100)
    assert unpaired_note(rep) == "no clip has scored prompts of both modes (convergent 12, divergent 0), so nothing is compared"
    lines = format_report(rep).splitlines()
    mean = np.mean([r["originality"] for r in rows])
    assert lines[2].split()[:3] == ["originality", f"{mean:.3f}", "-"]
    assert lines[-1] == unpaired_note(rep) + ": conv and div above are the run's means per mode."
    assert unpaired_note(compare_modes(rows_with_shift(0.1), n_boot=10)) is None  # paired: the usual table
    assert unpaired_note(compare_modes([], n_boot=10)) is None  # nothing scored: nothing to explain


def test_bad_rows_raise_input_error():
    with pytest.raises(InputError, match="sample_id or mode"):
        compare_modes([{"mode": "convergent"}])
    with pytest.raises(InputError):
        compare_modes([], metrics=())


def test_format_report_has_one_line_per_metric():
    text = format_report(compare_modes(rows_with_shift(0.1), metrics=("originality",), n_boot=200))
    lines = text.splitlines()
    assert lines[2].startswith("originality") and lines[2].endswith("*")
    assert lines[3].startswith("diversity")
    # diversity has no Holm-adjusted p: its "-" stays in the p_holm column, the columns after it do not shift
    header, div = lines[1], lines[3]
    assert div[header.index("p_holm") + len("p_holm") - 1] == "-"


def test_differences_that_do_not_vary_have_no_effect_size_and_float_noise_is_no_difference():
    # originality: every clip's divergent prompt is 0.35 above its convergent one; the subtraction leaves
    # noise of ~1e-16 in the differences, which used to give d_z = 6e15.
    # overall: the same three scores in both modes, listed in another order; averaging leaves differences
    # of +1e-16 in all six clips, which used to be "significant" (p 0.031).
    base = [0.1, 0.2, 0.3, 0.41, 0.58, 0.7]
    triples = [(0.34, 0.44, 0.12), (0.49, 0.81, 0.85), (0.42, 0.26, 0.17), (0.53, 0.45, 0.84),
               (0.43, 0.75, 0.6), (0.58, 0.78, 0.22)]
    rows = []
    for sid, (a, t) in enumerate(zip(base, triples), start=1):
        for k in range(3):
            rows.append({"sample_id": sid, "mode": "convergent", "originality": a, "overall": t[k]})
            rows.append({"sample_id": sid, "mode": "divergent", "originality": a + 0.35, "overall": t[2 - k]})
    raw_orig = np.array([(a + 0.35) - a for a in base])
    raw_overall = np.array([np.mean(t[::-1]) - np.mean(t) for t in triples])
    assert raw_orig.std(ddof=1) > 0 and np.all(raw_overall > 0)  # the noise is really there

    assert cohen_dz(raw_orig) is None and cohen_dz(raw_overall) == 0.0
    assert wilcoxon_p(raw_overall) == (0.0, 1.0) and rank_biserial(raw_overall) == 0.0

    rep = json.loads(json.dumps(compare_modes(rows, metrics=("originality", "overall"), n_boot=500)))
    o, v = rep["metrics"]["originality"], rep["metrics"]["overall"]
    assert o["cohen_dz"] is None and o["sd_diff"] == 0.0  # null in JSON: undefined, not a huge number
    assert o["mean_diff"] == 0.35 and o["ci95"] == [0.35, 0.35] and o["rank_biserial"] == 1.0
    assert o["p_value"] == pytest.approx(2 / 2**6)  # six of six clips higher: the exact two-sided p
    assert (v["mean_diff"], v["ci95"], v["p_value"], v["cohen_dz"], v["rank_biserial"]) == (0.0, [0.0, 0.0], 1.0, 0.0, 0.0)
    assert v["significant"] is False

    lines = format_report(rep).splitlines()
    header, orig, overall = lines[1], lines[2], lines[3]
    dz_col = slice(header.index("d_z") - 3, header.index("d_z") + 3)
    assert orig[dz_col] == "   n/a" and overall[dz_col] == " +0.00"
    assert "e+" not in orig and len(orig) == len(overall)
    assert "+0.350  [+0.350, +0.350]" in orig and "+0.000  [+0.000, +0.000]   1.0000" in overall
    assert lines[-1].startswith("d_z n/a: every clip's difference is the same for originality (sd 0)")
