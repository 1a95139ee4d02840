"""Fit the triple-or-duple metre model (``m2i.audio.features._METER_W``) on the dev split.

Usage::

    python benchmarks/evalset/fit_meter.py [--data bench-data/evalset] [--C 0.3]

Every clip with an even index in ``labels.json`` (the dev split of ``benchmarks/bench_features.py``:
chorale, chorale_rn, lead, folk, key_open, key_end) is read twice: as rendered, starting on a bar
line, and with its first :func:`cut_seconds` seconds removed, as a clip cut from a recording starts
anywhere in the bar. m2i's own beat tracker and :func:`m2i.audio.features.meter_features` give the
inputs; the label is 1 for 3/4 clips, 0 for 2/4, 4/4 and 6/8. A logistic regression (classes
weighted to balance, L2 penalty 1/C on standardised inputs, L-BFGS from zeros: deterministic) gives
the weights, folded back to the raw inputs and printed ready to paste, with the share of triple
excerpts (``_METER_TRIPLE_SHARE``: the balanced fit's odds are rescaled to it for the confidence).
Odd-indexed clips (the test split) are never read.
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


def cut_seconds(index: int, draw: int = 0) -> float:
    """How much of clip ``index`` its cut variant number ``draw`` drops from its start: 0.3-1.5 s,
    seeded by the index and the draw (the fit uses draw 0, the benchmark draws 0-2)."""
    return float(np.random.default_rng([index, draw]).uniform(0.3, 1.5))


def main(argv: list[str] | None = None) -> int:
    from fitting import dev_clips, fit_logistic

    from m2i.audio import features as F

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "evalset"))
    ap.add_argument("--C", type=float, default=0.3, help="inverse L2 regularisation strength")
    args = ap.parse_args(argv)
    X, Y = [], []
    for i, r, y in dev_clips(Path(args.data)):
        for start in (0, int(cut_seconds(i) * F.SR)):
            a = F.prepare(y[start:])
            beats = F.estimate_beats(a)
            feats = F.meter_features(a, beats["beat_frames"], beats["tempo"])
            if feats is not None:
                X.append(feats[0])
                Y.append(r["meter"] == "3/4")
    X_, Y_ = np.asarray(X), np.asarray(Y)
    w = fit_logistic(X_, Y_, C=args.C, balanced=True, standardise=True)
    pred = (np.c_[np.ones(len(X_)), X_] @ w) > 0
    bal = 0.5 * (np.mean(pred[Y_]) + np.mean(~pred[~Y_]))
    print(f"dev excerpts {len(Y_)} ({int(Y_.sum())} triple), training balanced accuracy {bal:.3f}")
    print("_METER_W = np.array([" + ", ".join(f"{v:.4f}" for v in w) + "])")
    print(f"_METER_TRIPLE_SHARE = {int(Y_.sum())} / {len(Y_)}")
    assert all(math.isfinite(v) for v in w)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
