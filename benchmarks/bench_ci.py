"""Coverage of the convergent-vs-divergent confidence interval for few and many clips.

Usage::

    python benchmarks/bench_ci.py [--reps 2000] [--n-boot 2000]

A 95 % interval should hold the true mean difference 95 % of the time. For each number of paired
clips ``n`` and two shapes of per-clip difference (normal, and a right-skewed exponential shifted
to mean 0), it draws ``--reps`` samples whose true mean is 0 and prints the share of intervals
that contain 0 for: the plain percentile bootstrap (what ``m2i report`` printed before
``m2i-compare/2``), the expanded percentile bootstrap it prints now
(``m2i.scoring.stats.bootstrap_ci``), and the Student t interval for reference. Seeded; each
figure's standard error is about 0.005 at 2000 reps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = (2, 3, 4, 5, 6, 8, 10, 20, 50, 100)


def student_t(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import t

    h = t.ppf((1 + level) / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    return d.mean() - h, d.mean() + h


def main(argv: list[str] | None = None) -> int:
    from m2i.scoring.stats import MIN_CI_PAIRS, bootstrap_ci

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args(argv)
    t0 = time.time()
    rng = np.random.default_rng(20261128)
    print(f"coverage of 95 % intervals of the mean difference ({args.reps} samples each; m2i gives none under "
          f"{MIN_CI_PAIRS} clips)")
    print(f"{'shape':<7} {'clips':>5} {'percentile':>11} {'expanded':>9} {'student t':>10}")
    for shape in ("normal", "skewed"):
        for n in SIZES:
            hits = np.zeros(3)
            for rep in range(args.reps):
                d = rng.normal(0.0, 1.0, n) if shape == "normal" else rng.exponential(1.0, n) - 1.0
                plain = bootstrap_ci(d, n_boot=args.n_boot, seed=rep, expanded=False) if n >= MIN_CI_PAIRS else None
                if plain is None:  # the function gives none here; what a percentile interval would have said
                    m = d[rng.integers(0, n, size=(args.n_boot, n))].mean(1)
                    plain = list(np.quantile(m, [0.025, 0.975]))
                    expanded = plain  # too few clips to expand: every resampled mean lies within the data
                else:
                    expanded = bootstrap_ci(d, n_boot=args.n_boot, seed=rep)
                for k, (lo, hi) in enumerate((plain, expanded, student_t(d))):
                    hits[k] += lo <= 0.0 <= hi
            cov = hits / args.reps
            print(f"{shape:<7} {n:>5} {cov[0]:>11.3f} {cov[1]:>9.3f} {cov[2]:>10.3f}"
                  + ("   (m2i: no interval)" if n < MIN_CI_PAIRS else ""), flush=True)
    print(f"wall time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
