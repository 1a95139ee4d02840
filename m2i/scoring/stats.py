"""Convergent-vs-divergent analysis: paired per-clip differences with honest statistics.

Conventions
-----------
- The unit of analysis is the clip: for each clip that has prompts in both modes, the metric's
  mean over its divergent prompts minus the mean over its convergent prompts is one paired
  difference ``d`` (positive = divergent higher). Prompts of one clip are not independent, so
  prompt-level tests would overstate the evidence.
- For each metric: mean of ``d``, a seeded bootstrap 95 % confidence interval of that mean
  (Hesterberg's expanded percentile interval, :func:`bootstrap_ci`; none under
  :data:`MIN_CI_PAIRS` clips), the two-sided Wilcoxon signed-rank p-value (zero differences dropped, scipy's exact
  distribution for small samples), Holm's step-down adjustment across the metrics compared, and
  two effect sizes: Cohen's ``d_z = mean(d) / sd(d)`` and the matched-pairs rank-biserial
  correlation ``r = (R+ - R-) / (R+ + R-)``.
- Within-clip diversity is ``1 - mean pairwise cosine`` of a clip's prompt embeddings (all
  prompts, or one mode's), read from each score's ``details`` (``sim_clip_mean``,
  ``sim_mode_mean``); it is compared across modes the same way but outside the Holm family.
- Averaging leaves floating-point noise (``0.35`` may come out as ``0.35 + 5.6e-17``): the test
  and the effect sizes see the differences rounded to 9 decimals (:func:`denoise`), so such
  values are tied again and noise around 0 is 0.
- A value that cannot be computed (no pairs, one pair for a standard deviation) is ``None``;
  so is ``d_z`` when the differences do not vary (sd 0) but are not all 0: the standardized
  effect is then unbounded, and the mean difference and ``r`` describe it instead.

Formulas are in docs/metrics.md.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from m2i.errors import InputError

COMPARE_METHOD = "m2i-compare/2"  # 2: the expanded percentile interval, none under MIN_CI_PAIRS
DEFAULT_METRICS = ("originality", "elaboration", "alignment", "coherence", "overall")
MODES = ("convergent", "divergent")


def _f(x: float | None, nd: int = 6) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else round(x, nd) + 0.0  # + 0.0: -1e-17 is 0.0, not -0.0


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values; ``None`` entries stay ``None`` and are not counted.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = round(running, 12)
    return out


NOISE_DECIMALS = 9
"""Differences are compared to this many decimals (fewer above 1 in size: 9 significant digits); see :func:`denoise`."""


def denoise(d: np.ndarray) -> np.ndarray:
    """``d`` rounded to :data:`NOISE_DECIMALS` decimals (one fewer per digit of ``max|d|`` above 1).

    Averaging leaves float noise: ``0.35`` may come out as ``0.35 + 5.6e-17``. Rounded, such
    values are equal again (a tie, an sd of 0) and noise around 0 is 0 (dropped by the test).

    Examples
    --------
    >>> x = np.array([0.1, 0.2, 0.3]) + 0.35 - np.array([0.1, 0.2, 0.3])
    >>> bool(np.ptp(x) > 0), denoise(x).tolist()
    (True, [0.35, 0.35, 0.35])
    """
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return d
    big = float(np.max(np.abs(d)))
    digits = int(math.ceil(math.log10(big))) if math.isfinite(big) and big > 1.0 else 0
    return np.round(d, max(0, NOISE_DECIMALS - digits)) + 0.0  # + 0.0: no -0.0


def rank_biserial(d: np.ndarray) -> float | None:
    """Matched-pairs rank-biserial correlation of differences ``d`` (zeros dropped).

    ``(R+ - R-) / (R+ + R-)`` where ``R+`` (``R-``) sums the ranks of ``|d|`` over positive
    (negative) differences; in [-1, 1]; ``0.0`` when every difference is zero; ``None`` when empty.
    """
    from scipy.stats import rankdata

    d = denoise(d)
    if d.size == 0:
        return None
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0
    r = rankdata(np.abs(nz))
    rp, rm = r[nz > 0].sum(), r[nz < 0].sum()
    return float((rp - rm) / (rp + rm))


def cohen_dz(d: np.ndarray) -> float | None:
    """``mean(d) / sd(d)`` (ddof=1); ``0.0`` if all differences are 0, ``None`` if undefined.

    Undefined: fewer than two differences, or differences that do not vary (sd 0 after
    :func:`denoise`) but are not all 0, where the ratio is unbounded (float noise would otherwise
    make it a number like 6e15).

    Examples
    --------
    >>> cohen_dz(np.array([1.0, 2.0, 3.0]))
    2.0
    >>> cohen_dz(np.array([0.1, 0.2, 0.3]) + 0.35 - np.array([0.1, 0.2, 0.3])) is None
    True
    """
    d = denoise(d)
    if d.size < 2:
        return None
    if np.all(d == d[0]):  # the differences do not vary
        return 0.0 if d[0] == 0.0 else None
    return float(d.mean() / d.std(ddof=1))


MIN_CI_PAIRS = 5
"""Fewest paired clips a confidence interval is given for. Resampling 2-4 clips cannot cover 95 %:
every resampled mean lies between the smallest and the largest difference, and that range held the
true mean 50 % of the time for 2 normal differences, 75 % for 3, 81 % for 4 (46 %, 72 %, 73 % for
skewed ones; ``benchmarks/bench_ci.py``)."""


def bootstrap_ci(d: np.ndarray, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95,
                 expanded: bool = True) -> list[float] | None:
    """Expanded percentile bootstrap confidence interval of ``mean(d)`` (clips resampled with replacement).

    The plain percentile interval is too narrow for few clips: at ``level`` 0.95 it held the true
    mean 84 % of the time for 5 normal differences, 90 % for 10, 79 % / 87 % for skewed ones
    (``benchmarks/bench_ci.py``). Hesterberg's expanded percentile interval ("What teachers should know
    about the bootstrap", The American Statistician 69(4), 2015, arXiv:1411.5279; ``ExpandProbs``
    in his R package ``resample``) reads the bootstrap means at the tail
    probability ``Phi(-sqrt(n / (n - 1)) * t_{n-1, (1 + level) / 2})`` instead of ``(1 - level) / 2``,
    which brings those to 92 % / 95 % and 86 % / 90 %, the Student t interval's coverage (96 % / 95 %
    and 88 % / 90 %), while keeping the bootstrap's asymmetry for skewed differences; from 50 clips
    the two bootstrap intervals cover within a point of each other. None for fewer than
    :data:`MIN_CI_PAIRS` clips. ``expanded=False`` gives the plain percentile interval (for the
    benchmark that compares them).
    """
    from scipy.stats import norm, t

    d = np.asarray(d, dtype=float)
    if d.size < MIN_CI_PAIRS or n_boot < 1:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // d.size)
    for start in range(0, n_boot, step):
        k = min(step, n_boot - start)
        means[start : start + k] = d[rng.integers(0, d.size, size=(k, d.size))].mean(1)
    n = d.size
    tail = float(norm.sf(np.sqrt(n / (n - 1)) * t.ppf((1.0 + level) / 2.0, n - 1))) if expanded else (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return [float(lo), float(hi)]


def wilcoxon_p(d: np.ndarray) -> tuple[float | None, float | None]:
    """Two-sided Wilcoxon signed-rank test of ``d`` (after :func:`denoise`): ``(statistic, p)``; ``(0, 1)`` if all zero."""
    from scipy.stats import wilcoxon

    d = denoise(d)
    if d.size == 0:
        return None, None
    if not np.any(d != 0):
        return 0.0, 1.0
    res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def paired_test(d: np.ndarray, *, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """All statistics of one set of paired differences (see module conventions)."""
    d = np.asarray(d, dtype=float)
    stat, p = wilcoxon_p(d)
    ci = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    return {
        "n_pairs": int(d.size),
        "mean_diff": _f(d.mean()) if d.size else None,
        "median_diff": _f(np.median(d)) if d.size else None,
        "sd_diff": _f(d.std(ddof=1)) if d.size > 1 else None,
        "ci95": [_f(ci[0]), _f(ci[1])] if ci else None,
        "wilcoxon_stat": _f(stat),
        "p_value": _f(p, 10),
        "cohen_dz": _f(cohen_dz(d)),
        "rank_biserial": _f(rank_biserial(d)),
    }


def _details(row: dict[str, Any]) -> dict[str, Any]:
    d = row.get("details")
    if isinstance(d, str):
        try:
            d = json.loads(d)
        except json.JSONDecodeError:
            return {}
    return d if isinstance(d, dict) else {}


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _describe(values: list[float]) -> dict[str, Any]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"n": 0, "mean": None, "sd": None, "median": None, "min": None, "max": None}
    return {
        "n": int(a.size),
        "mean": _f(a.mean()),
        "sd": _f(a.std(ddof=1)) if a.size > 1 else None,
        "median": _f(np.median(a)),
        "min": _f(a.min()),
        "max": _f(a.max()),
    }


def compare_modes(
    rows: list[dict[str, Any]],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Compare convergent against divergent prompts, per clip, per run and paired across clips.

    Parameters
    ----------
    rows : list of dict
        One per scored prompt: ``sample_id``, ``mode`` and a value per metric (``None`` values are
        skipped); optional ``details`` (dict or JSON text, as written by
        :func:`m2i.scoring.score_prompts`) enables the diversity analysis.
    metrics : sequence of str
        Metric keys to compare; they form the Holm family.
    n_boot : int >= 0
        Bootstrap resamples for each confidence interval.
    seed : int
        Seed of the bootstrap generator (results are reproducible).
    alpha : float in (0, 1)
        Level at which ``significant`` is set from the Holm-adjusted p-value.

    Returns
    -------
    dict
        JSON-able: ``method``, ``direction``, ``n_prompts``, ``n_clips``, ``n_pairs``, ``metrics``
        (per metric: ``n_pairs, mean_convergent, mean_divergent, mean_diff, median_diff, sd_diff,
        ci95, wilcoxon_stat, p_value, p_holm, significant, cohen_dz, rank_biserial``),
        ``diversity`` (same statistics for within-clip diversity, outside the Holm family),
        ``clips`` (per clip: counts, per-metric means overall and per mode, diversity) and ``run``
        (per metric: distribution overall and per mode).

    Raises
    ------
    InputError
        If a row lacks ``sample_id`` or ``mode``, or ``metrics`` is empty.

    Examples
    --------
    >>> rep = compare_modes(rows, metrics=("originality",), n_boot=2000)  # doctest: +SKIP
    >>> rep["metrics"]["originality"]["p_holm"]  # doctest: +SKIP
    0.41
    """
    metrics = tuple(metrics)
    if not metrics:
        raise InputError("compare_modes needs at least one metric name.")
    if not 0 < alpha < 1:
        raise InputError(f"alpha {alpha!r} is out of range; use a level between 0 and 1 such as 0.05.")
    by_clip: dict[Any, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: {m: [] for m in MODES})
    n_prompts = 0
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or "sample_id" not in r or "mode" not in r:
            raise InputError(f"rows[{i}] lacks sample_id or mode; pass one dict per scored prompt.")
        if r["mode"] not in MODES:
            continue
        by_clip[r["sample_id"]][r["mode"]].append(r)
        n_prompts += 1

    clips_out: list[dict[str, Any]] = []
    diffs: dict[str, list[float]] = {m: [] for m in metrics}
    pair_means: dict[str, dict[str, list[float]]] = {m: {"convergent": [], "divergent": []} for m in metrics}
    div_diffs: list[float] = []
    div_pairs: dict[str, list[float]] = {"convergent": [], "divergent": []}
    run_vals: dict[str, dict[str, list[float]]] = {m: {"all": [], **{md: [] for md in MODES}} for m in metrics}

    for sid in sorted(by_clip, key=lambda s: (str(type(s)), s)):
        groups = by_clip[sid]
        clip = {"sample_id": sid, "n": {md: len(groups[md]) for md in MODES}, "means": {}, "diversity": {}}
        for m in metrics:
            vals = {md: [v for v in (_num(r.get(m)) for r in groups[md]) if v is not None] for md in MODES}
            for md in MODES:
                run_vals[m][md] += vals[md]
                run_vals[m]["all"] += vals[md]
            allv = vals["convergent"] + vals["divergent"]
            clip["means"][m] = {
                "all": _f(np.mean(allv)) if allv else None,
                **{md: (_f(np.mean(vals[md])) if vals[md] else None) for md in MODES},
            }
            if vals["convergent"] and vals["divergent"]:
                c, d = float(np.mean(vals["convergent"])), float(np.mean(vals["divergent"]))
                diffs[m].append(d - c)
                pair_means[m]["convergent"].append(c)
                pair_means[m]["divergent"].append(d)
        # diversity: 1 - mean pairwise cosine, from each prompt's mean similarity to the others
        sims_all = [_num(_details(r).get("sim_clip_mean")) for md in MODES for r in groups[md]]
        sims_all = [s for s in sims_all if s is not None]
        clip["diversity"]["all"] = _f(1.0 - np.mean(sims_all)) if sims_all else None
        for md in MODES:
            s = [_num(_details(r).get("sim_mode_mean")) for r in groups[md]]
            s = [x for x in s if x is not None]
            clip["diversity"][md] = _f(1.0 - np.mean(s)) if s else None
        if clip["diversity"]["convergent"] is not None and clip["diversity"]["divergent"] is not None:
            div_pairs["convergent"].append(clip["diversity"]["convergent"])
            div_pairs["divergent"].append(clip["diversity"]["divergent"])
            div_diffs.append(clip["diversity"]["divergent"] - clip["diversity"]["convergent"])
        clips_out.append(clip)

    metrics_out: dict[str, dict[str, Any]] = {}
    for j, m in enumerate(metrics):
        d = np.asarray(diffs[m], dtype=float)
        res = paired_test(d, n_boot=n_boot, seed=seed + j)
        res["mean_convergent"] = _f(np.mean(pair_means[m]["convergent"])) if d.size else None
        res["mean_divergent"] = _f(np.mean(pair_means[m]["divergent"])) if d.size else None
        metrics_out[m] = res
    adjusted = holm([metrics_out[m]["p_value"] for m in metrics])
    for m, p in zip(metrics, adjusted):
        metrics_out[m]["p_holm"] = _f(p, 10)
        metrics_out[m]["significant"] = bool(p is not None and p < alpha)

    dd = np.asarray(div_diffs, dtype=float)
    diversity = paired_test(dd, n_boot=n_boot, seed=seed + len(metrics))
    diversity["mean_convergent"] = _f(np.mean(div_pairs["convergent"])) if dd.size else None
    diversity["mean_divergent"] = _f(np.mean(div_pairs["divergent"])) if dd.size else None
    all_div = [c["diversity"]["all"] for c in clips_out if c["diversity"]["all"] is not None]
    diversity["mean_clip_diversity"] = _f(np.mean(all_div)) if all_div else None

    run = {m: {k: _describe(v) for k, v in run_vals[m].items()} for m in metrics}
    return {
        "method": COMPARE_METHOD,
        "direction": "divergent - convergent",
        "alpha": alpha,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "n_prompts": n_prompts,
        "n_clips": len(clips_out),
        "n_pairs": max((metrics_out[m]["n_pairs"] for m in metrics), default=0),
        "metrics": metrics_out,
        "diversity": diversity,
        "run": run,
        "clips": clips_out,
    }


def unpaired_note(report: dict[str, Any]) -> str | None:
    """Why nothing is compared, when no clip has scored prompts of both modes (a run with
    ``divergent = 0``, say, or whose prompts of one mode all failed); None when some clip has."""
    if report.get("n_pairs") or not report.get("n_prompts"):
        return None
    first = next(iter((report.get("run") or {}).values()), {})
    n = {m: (first.get(m) or {}).get("n") or 0 for m in MODES}
    return (f"no clip has scored prompts of both modes (convergent {n['convergent']}, divergent {n['divergent']}), "
            "so nothing is compared")


def few_pairs_note(report: dict[str, Any]) -> str | None:
    """Why the 95 % CI column is empty when 1-4 clips are paired (:data:`MIN_CI_PAIRS`); else None."""
    n = report.get("n_pairs") or 0
    if 0 < n < MIN_CI_PAIRS:
        return (f"no 95% CI with {n} clip{'s' if n > 1 else ''} paired: resampling fewer than {MIN_CI_PAIRS} "
                "cannot cover 95 %")
    return None


def significance_floor_note(report: dict[str, Any]) -> str | None:
    """Why nothing can be significant in a run of few clips, else None: the two-sided Wilcoxon
    signed-rank test of ``n`` differences gives no p under ``2 / 2**n`` (all of one sign; scipy's
    exact and permutation p-values, ties included), and Holm multiplies the smallest by the
    number of metrics. With the five default metrics at alpha 0.05 that takes 8 clips."""
    n = report.get("n_pairs") or 0
    m = max(1, len(report.get("metrics") or {}))
    alpha = report.get("alpha") or 0.05
    def floor(k: int) -> float:  # the smallest two-sided p of k clips, all of one sign
        return 2.0 ** (1 - k)

    if not n or m * floor(n) < alpha:
        return None
    need = next(k for k in range(n + 1, 200) if m * floor(k) < alpha)
    return (f"with {n} clip{'s' if n > 1 else ''} paired nothing can be significant: the Wilcoxon test's smallest "
            f"p is {floor(n):.3g} ({min(1.0, m * floor(n)):.3g} after Holm over {m} metric{'s' if m > 1 else ''}); "
            f"{need} or more clips are needed")


def format_report(report: dict[str, Any]) -> str:
    """Plain-text table of :func:`compare_modes` output, one line per metric (for ``m2i report``).

    When nothing is paired (:func:`unpaired_note`), conv and div are the run's means per mode."""
    unpaired = unpaired_note(report)
    lines = [
        f"convergent vs divergent: {report['n_pairs']} clips paired, {report['n_prompts']} prompts "
        f"(difference = {report['direction']}; p Holm-adjusted over {len(report['metrics'])} metrics)",
        f"{'metric':<12} {'conv':>6} {'div':>6} {'diff':>7} {'95% CI':>17} {'p':>8} {'p_holm':>8} {'d_z':>6} {'r_rb':>6}",
    ]

    def fmt(x: Any, spec: str) -> str:  # a missing value keeps its column's width
        return "-".rjust(len(format(0.0, spec))) if x is None else format(x, spec)

    items = list(report["metrics"].items()) + [("diversity", report["diversity"])]
    constant = []
    for name, s in items:
        ci = s.get("ci95")
        ci_s = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci and None not in ci else "-"
        dz = fmt(s.get("cohen_dz"), "+6.2f")
        if s.get("cohen_dz") is None and (s.get("n_pairs") or 0) >= 2:  # pairs whose differences do not vary
            dz = "n/a".rjust(6)
            constant.append(name)
        conv, div = s.get("mean_convergent"), s.get("mean_divergent")
        if unpaired and name in report.get("run", {}):
            conv, div = (report["run"][name][m]["mean"] for m in MODES)
        lines.append(
            f"{name:<12} {fmt(conv, '6.3f')} {fmt(div, '6.3f')} "
            f"{fmt(s.get('mean_diff'), '+7.3f')} {ci_s:>17} {fmt(s.get('p_value'), '8.4f')} "
            f"{fmt(s.get('p_holm'), '8.4f')} {dz} {fmt(s.get('rank_biserial'), '+6.2f')}"
            + ("  *" if s.get("significant") else "")
        )
    if unpaired:
        lines.append(f"{unpaired}: conv and div above are the run's means per mode.")
    for note in (few_pairs_note(report), significance_floor_note(report)):
        if note:
            lines.append(f"{note}.")
    if constant:
        lines.append(
            f"d_z n/a: every clip's difference is the same for {', '.join(constant)} (sd 0), so the standardized "
            "effect is undefined; diff and r_rb describe it."
        )
    return "\n".join(lines)
