"""Fit the double-the-tempo model (``m2i.audio.features._DOUBLE_W``) on the dev split.

Usage::

    python benchmarks/evalset/fit_tempo.py [--data bench-data/evalset] [--C 10]

For every chorale clip with an even index in ``labels.json`` (the dev split of
``benchmarks/bench_features.py``; ``chorale``, ``chorale_rn``, ``lead``, ``key_open``, ``key_end``;
the monophonic folk clips are left out) it runs m2i's own tempo candidate step, walks the octave
chain the way :func:`m2i.audio.features._octave_decision` does, and labels each step "double"
when the rendered tempo is more than 1.5 times the step's tempo. A logistic regression on
:func:`m2i.audio.features.tempo_decision_features` gives the weights, printed ready to paste.
Deterministic (lbfgs, no sampling). Odd-indexed clips (the test split) are never read.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    from fitting import dev_clips, fit_logistic

    from m2i.audio import features as F

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "evalset"))
    ap.add_argument("--C", type=float, default=10.0, help="inverse L2 regularisation strength")
    args = ap.parse_args(argv)
    X, Y = [], []
    n_clips = 0
    for _, r, y in dev_clips(Path(args.data), skip_subsets=("folk",)):
        a = F.prepare(y)
        bpm, _, _ = F._choose_tempo(a.attack_env, a.settings)
        t = bpm
        while t / 2.0 >= float(a.settings["tempo_min"]):
            t /= 2.0
        while t <= float(a.settings["tempo_max"]):
            X.append(F.tempo_decision_features(a, t)[1:])
            Y.append(1 if r["tempo"] / t > 1.5 else 0)
            t *= 2.0
        n_clips += 1
    X_, Y_ = np.asarray(X), np.asarray(Y)
    w = fit_logistic(X_, Y_, C=args.C)
    acc = float(np.mean(((np.c_[np.ones(len(X_)), X_] @ w) > 0) == (Y_ == 1)))
    print(f"dev clips {n_clips}, octave decisions {len(Y)} ({sum(Y)} double), training accuracy {acc:.3f}")
    print("_DOUBLE_W = np.array([" + ", ".join(f"{v:.3f}" for v in w) + "])")
    assert all(math.isfinite(v) for v in w)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
