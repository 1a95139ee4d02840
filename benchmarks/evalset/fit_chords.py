"""Fit the chord model of ``chord_templates="logistic"`` and write ``m2i/audio/chord_model.py``.

Usage (deterministic: same evaluation set and code, same file)::

    python benchmarks/evalset/fit_chords.py [--data bench-data/evalset] [--out m2i/audio/chord_model.py]

Training data, never a test clip of the chord benchmark:

- the **dev** ``chorale_rn`` clips (even indices of ``labels.json``), labelled by the RomanText
  analyses: each half-beat segment takes the analysis chord covering at least half of it (major
  and minor triads only; diminished, augmented and unlabelled segments are skipped);
- the ``chorale``, ``lead``, ``key_open`` and ``key_end`` clips of every chorale that is **not** one
  of the 18 ``chorale_rn`` pieces (all 18 have clips in the test split), labelled automatically
  from their score: per half-beat segment the triad whose tones cover most of the sounding
  notes' duration, minus half the non-chord-tone duration, plus 0.2 x the share of the bass
  voice on the root (on the dev ``chorale_rn`` clips this labeller agrees with the analyses on
  0.76 of the duration).

Segments come from the clip's own estimated beats (:func:`m2i.audio.features.chord_bounds`), the
key from :func:`m2i.audio.features.estimate_key` with the chord observations of the weights just
fitted, both exactly as at analysis time.

Fitted:

- ``WEIGHTS`` [2, 85]: a multinomial logistic regression over the 24 triads whose weights are
  shared across roots (features rotated to each candidate root, :func:`chord_features`),
  L2 penalty 1.0 on the summed log-loss, L-BFGS from zeros;
- ``TRANSITION_COUNTS``: chord-to-chord counts between consecutive segments in key-relative
  states (degree of the root above the estimated tonic, major 0-11 / minor 12-23), per
  estimated mode and per kind of segment entered (on the beat / mid-beat).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

L2 = 1.0
PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
TONES = {"maj": (0, 4, 7), "min": (0, 3, 7)}

from m2i.audio.features import TRIAD_LABELS as LABELS  # noqa: E402  (the model's 24 states, in its order)


def truth_labels(chords: list, bounds: np.ndarray, dur: float, fps: float) -> np.ndarray:
    """Analysis chord index per segment (-1: none covers half of it, or not a major/minor triad)."""
    out = []
    for i in range(len(bounds) - 1):
        t0, t1 = bounds[i] / fps, min(bounds[i + 1] / fps, dur)
        acc: dict[str, float] = {}
        for a, b, lab in chords:
            ov = min(b, t1) - max(a, t0)
            if ov > 0:
                acc[lab] = acc.get(lab, 0.0) + ov
        idx = -1
        if acc:
            lab = max(acc, key=acc.get)
            root, q = lab.split(":")
            if acc[lab] >= 0.5 * (t1 - t0) and q in TONES:
                pc = PC[root[0]] + root[1:].count("#") - root[1:].count("b")
                idx = LABELS.index((pc % 12, q))
        out.append(idx)
    return np.array(out)


def score_labels(notes: list, bounds: np.ndarray, dur: float, fps: float) -> np.ndarray:
    """Triad index per segment from the score's notes ``(on_s, off_s, midi, voice)`` (-1: silence)."""
    out = []
    for i in range(len(bounds) - 1):
        t0, t1 = bounds[i] / fps, min(bounds[i + 1] / fps, dur)
        w, bass = np.zeros(12), np.zeros(12)
        for a, b, m, v in notes:
            ov = min(b, t1) - max(a, t0)
            if ov > 0:
                w[m % 12] += ov
                if v == 3:
                    bass[m % 12] += ov
        if w.sum() <= 0.05 * (t1 - t0):
            out.append(-1)
            continue
        w, bass = w / w.sum(), bass / (bass.sum() + 1e-9)
        best = max(range(24), key=lambda k: (lambda cov, r: cov - 0.5 * (1 - cov) + 0.2 * bass[r])(
            w[[(LABELS[k][0] + x) % 12 for x in TONES[LABELS[k][1]]]].sum(), LABELS[k][0]))
        out.append(best)
    return np.array(out)


def clip_notes(score_cache: dict, rec: dict) -> list:
    """The four voices' notes of a clip in seconds from its start, as render.py placed them."""
    import render as R
    from music21 import corpus

    src = rec["source"]
    if src not in score_cache:
        sc = corpus.parse("bach/" + src.rsplit(".", 1)[0])
        score_cache[src] = (R.measure_offsets(sc.parts[0]), [R.part_notes(p) for p in sc.parts[:4]])
    mo, parts = score_cache[src]
    st, sec = mo[rec["start_measure"]], 60.0 / rec["tempo"]
    return [((on - st) * sec, (on + d - st) * sec, m, v) for v, p in enumerate(parts) for on, d, m in p
            if (on + d - st) * sec > 0 and (on - st) * sec < 10.0]


def rotations(X: np.ndarray) -> np.ndarray:
    k = X.shape[0] // 12
    Xb = X.reshape(k, 12, -1)
    return np.stack([np.roll(Xb, -r, axis=1).reshape(k * 12, -1).T for r in range(12)])  # [12, n, d]


def fit(R: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    from scipy.optimize import minimize

    d, n = R.shape[2], y.size

    def f(w):
        W = w.reshape(2, d + 1)
        s = (np.einsum("rnd,qd->qrn", R, W[:, :d]) + W[:, d][:, None, None]).reshape(24, n)
        s = s - s.max(0, keepdims=True)
        lp = s - np.log(np.exp(s).sum(0))
        loss = -lp[y, np.arange(n)].sum() + 0.5 * l2 * (W[:, :d] ** 2).sum()
        P = np.exp(lp)
        P[y, np.arange(n)] -= 1
        P = P.reshape(2, 12, n)
        g = np.zeros((2, d + 1))
        g[:, :d] = np.einsum("qrn,rnd->qd", P, R) + l2 * W[:, :d]
        g[:, d] = P.sum((1, 2))
        return loss, g.ravel()

    res = minimize(f, np.zeros(2 * (d + 1)), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return res.x.reshape(2, d + 1)


def rows(m: np.ndarray, fmt: str, indent: str) -> str:
    """A 2-D array as Python list rows, one per line."""
    return "\n".join(indent + "[" + ", ".join(fmt.format(v) for v in row) + "]," for row in m)


def transition_table(counts: dict) -> list[str]:
    """``TRANSITION_COUNTS = {mode: [[2 x 24 x 24]]}`` as lines of Python (shared with fit_key.py)."""
    text = ["TRANSITION_COUNTS = {"]
    for m in ("major", "minor"):
        text.append(f'    "{m}": [')
        for p in range(2):
            text.append("        [")
            text.append(rows(counts[m][p], "{:d}", "            "))
            text.append("        ],")
        text.append("    ],")
    text.append("}")
    return text


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    from m2i.audio import features as F

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "evalset"))
    ap.add_argument("--out", default=str(ROOT / "m2i" / "audio" / "chord_model.py"))
    ap.add_argument("--other-pieces-only", action="store_true",
                    help="leave out the dev chorale_rn clips too (no clip of an analysed piece; a leak-free check)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    labels = json.loads((data / "labels.json").read_text())
    rn_pieces = {r["source"] for r in labels if r["subset"] == "chorale_rn"}
    use = [r for i, r in enumerate(labels)
           if (r["subset"] == "chorale_rn" and i % 2 == 0 and not args.other_pieces_only)  # dev clips only
           or (r["subset"] in ("chorale", "lead", "key_open", "key_end") and r["source"] not in rn_pieces)]
    Rs, ys, clips = [], [], []
    counts = {m: np.zeros((2, 24, 24), dtype=np.int64) for m in ("major", "minor")}
    scores: dict = {}
    n_rn = n_other = 0
    for r in use:
        y, _ = sf.read(str(data / r["file"]), dtype="float32")
        a = F.prepare(y)
        beats = F.estimate_beats(a)
        bounds, mid = F.chord_bounds(a, beats["beat_frames"])
        if r["subset"] == "chorale_rn":
            lab = truth_labels(r["chords"], bounds, a.duration_s, F.FPS)
            n_rn += 1
        else:
            lab = score_labels(clip_notes(scores, r), bounds, a.duration_s, F.FPS)
            n_other += 1
        X = F.chord_features(a, bounds)
        keep = lab >= 0
        Rs.append(rotations(X)[:, keep])
        ys.append(lab[keep])
        clips.append((a, beats["beat_frames"], lab))
    R, yy = np.concatenate(Rs, axis=1), np.concatenate(ys)
    W = fit(R, yy, L2)
    # the transitions are counted relative to the key the analysis will estimate, which itself
    # reads the chord classifier: estimate it with the weights just fitted
    for a, beat_frames, lab in clips:
        obs = F.chord_observations(a, beat_frames, W)
        key = F.estimate_key(a, obs)
        rel = [-1 if k < 0 else (LABELS[k][0] - key["tonic_pc"]) % 12 + 12 * (LABELS[k][1] == "min") for k in lab]
        for t in range(1, len(rel)):
            if rel[t] >= 0 and rel[t - 1] >= 0:
                counts[key["mode"]][int(obs.mid[t]), rel[t - 1], rel[t]] += 1
    print(f"{n_rn} dev chorale_rn clips + {n_other} other chorale clips, {yy.size} segments", file=sys.stderr)

    text = [
        '"""Fitted constants of the ``chord_templates="logistic"`` chord model (generated; do not edit).',
        "",
        "Written by ``python benchmarks/evalset/fit_chords.py`` (see its docstring): fitted on the dev",
        f"(even-index) chorale_rn clips with their RomanText chords ({n_rn} clips) and on {n_other} chorale,",
        "lead, key_open and key_end clips of chorales that are not chorale_rn pieces, labelled from their",
        f"scores ({yy.size} half-beat segments in all). No test clip of the chord benchmark is used.",
        '"""',
        "",
        "# Rotation-shared logistic regression (m2i.audio.features.chord_logistic_scores): row 0 major,",
        "# row 1 minor; 84 weights over the blocks of chord_features (chroma, bass chroma, three",
        f"# two-octave bands, previous and next chroma, 12 each, root first), then the bias. L2 {L2}.",
        "WEIGHTS = [",
        rows(np.round(W, 4), "{:.4f}", "    "),
        "]",
        "",
        "# Key-relative chord transitions counted between consecutive segments: TRANSITION_COUNTS[mode]",
        "# [0 = into an on-beat segment, 1 = into a mid-beat one][from][to]; states 0-11 major triads",
        "# on the degrees 0-11 semitones above the estimated tonic, 12-23 minor triads.",
    ]
    text += transition_table(counts)
    Path(args.out).write_text("\n".join(text) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
