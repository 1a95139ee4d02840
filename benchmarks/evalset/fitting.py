"""What the fit scripts share: the evaluation set's labels and dev clips they read, and the logistic
regression they fit.

``dev_clips`` yields the even-indexed clips of ``labels.json`` (the dev split of
``benchmarks/bench_features.py``; odd-indexed clips, the test split, are never read) with their
audio. ``fit_logistic`` is an L2-penalised logistic regression by L-BFGS from zeros
(deterministic), scikit-learn's objective (``C`` x the summed log-loss + half the squared
weights, the bias not penalised), so that the scripts need nothing beyond numpy and scipy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def evalset_labels(data: Path) -> list[dict[str, Any]] | None:
    """The evaluation set's ``labels.json`` in folder ``data``; None, after one sentence on stderr,
    when it has not been rendered."""
    import sys

    path = data / "labels.json"
    if not path.is_file():
        print(f"error: {path} not found; render the evaluation set first (benchmarks/evalset/render.py).",
              file=sys.stderr)
        return None
    return json.loads(path.read_text())


def dev_clips(data: Path, *, skip_subsets: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any], np.ndarray]]:
    """``(index, label, mono float32 audio)`` for each dev clip of ``data/labels.json``."""
    import soundfile as sf

    for i, r in enumerate(json.loads((data / "labels.json").read_text())):
        if i % 2 or r["subset"] in skip_subsets:
            continue
        y, _ = sf.read(str(data / r["file"]), dtype="float32")
        yield i, r, y


def fit_logistic(X: np.ndarray, y: np.ndarray, *, C: float, balanced: bool = False,
                 standardise: bool = False) -> np.ndarray:
    """Bias followed by the weights on the raw inputs of an L2 logistic regression.

    ``balanced``: each class weighs half of the loss whatever its size. ``standardise``: the
    penalty applies to the weights of inputs scaled to unit variance (folded back on return).
    """
    from scipy.optimize import minimize

    mu, sd = (X.mean(axis=0), X.std(axis=0) + 1e-9) if standardise else (np.zeros(X.shape[1]), np.ones(X.shape[1]))
    Z = np.c_[np.ones(len(X)), (X - mu) / sd]
    yf = np.asarray(y, dtype=float)
    sw = np.where(yf > 0, 0.5 / yf.mean(), 0.5 / (1.0 - yf.mean())) if balanced else np.ones(len(yf))

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = Z @ w
        p = 1.0 / (1.0 + np.exp(-z))
        loss = C * np.sum(sw * (yf * np.logaddexp(0, -z) + (1 - yf) * np.logaddexp(0, z))) + 0.5 * np.sum(w[1:] ** 2)
        grad = -C * Z.T @ (sw * (yf - p)) + np.r_[0.0, w[1:]]
        return float(loss), grad

    w = minimize(f, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B",
                 options={"maxiter": 10000, "ftol": 1e-15, "gtol": 1e-10}).x
    return np.r_[w[0] - np.sum(w[1:] * mu / sd), w[1:] / sd]
