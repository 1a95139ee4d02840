"""Key, tempo and metre when the audio is not clean: noise, a reverberant room, MP3, another tuning.

Usage::

    python benchmarks/bench_robust.py [--data bench-data/evalset] [--split test|dev|all]

On the chorale, chorale_rn and lead clips of the evaluation set (the test split by default: nothing
was tuned on it) each condition is applied to the clip before ``analyze_clip``, seeded, and the
benchmark's measures are printed per condition: key MIREX weighted (random-bar excerpts), tempo
Acc1 (4 %), metre balanced accuracy (triple vs duple), and the melody's raw pitch accuracy
(``bench_features.raw_pitch``) on the lead clips and on the ensembles (``chorale``: the soprano),
with the learned selector and with the rule before it (``melody_selector="highest"``).
Conditions: clean; pink-ish noise at 20 and
10 dB SNR; a synthetic room (exponentially decaying noise impulse response, RT60 1.2 s, the direct
sound kept); an MP3 round trip through libsndfile; the clip resampled to sound 32 cents flat (A432,
which also slows it 1.9 %, so the tempo truth is scaled with it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from scipy.signal import fftconvolve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SR = 16000


def noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add noise with a falling spectrum (integrated white noise, its slow drift removed) at ``snr_db``."""
    n = np.cumsum(rng.standard_normal(y.size))
    n = n - np.convolve(n, np.ones(64) / 64, mode="same")
    gain = np.sqrt(np.mean(y ** 2) / (np.mean(n ** 2) + 1e-12) / 10 ** (snr_db / 10))
    return (y + gain * n).astype(np.float32)


def reverb(y: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail (-60 dB after ``rt60`` s) behind the direct sound."""
    t = np.arange(int(SR * rt60)) / SR
    ir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0
    out = fftconvolve(y, ir)[: y.size]  # np.convolve's direct sum took 3-12 s a clip
    return (out / (np.abs(out).max() + 1e-9) * np.abs(y).max()).astype(np.float32)


def mp3(y: np.ndarray) -> np.ndarray:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, SR, format="MP3")
    buf.seek(0)
    z, _ = sf.read(buf, dtype="float32")
    return z[: y.size]


def detune(y: np.ndarray, cents: float) -> np.ndarray:
    import soxr

    return soxr.resample(y, SR * 2 ** (cents / 1200), SR).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    import mir_eval
    import soundfile as sf

    from benchmarks.bench_features import raw_pitch_by_selector
    from m2i.audio.analyze import analyze_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "evalset"))
    ap.add_argument("--split", choices=("all", "dev", "test"), default="test")
    args = ap.parse_args(argv)
    data = Path(args.data)
    labels = json.loads((data / "labels.json").read_text())
    rows = [r for i, r in enumerate(labels) if r["subset"] in ("chorale", "chorale_rn", "lead")
            and (args.split == "all" or (i % 2 == 0) == (args.split == "dev"))]
    conditions = {
        "clean": (lambda y, rng: y, 1.0),
        "noise 20 dB SNR": (lambda y, rng: noise(y, 20, rng), 1.0),
        "noise 10 dB SNR": (lambda y, rng: noise(y, 10, rng), 1.0),
        "room, RT60 1.2 s": (lambda y, rng: reverb(y, 1.2, rng), 1.0),
        "MP3 round trip": (lambda y, rng: mp3(y), 1.0),
        "32 cents flat (A432)": (lambda y, rng: detune(y, -32), 2 ** (-32 / 1200)),
    }
    print(f"evaluation set: {data} split={args.split} clips={len(rows)} (chorale, chorale_rn, lead)")
    for name, (apply, speed) in conditions.items():
        rng = np.random.default_rng(0)
        keys, tempo_ok, metre = [], [], []
        rpa = {(sub, sel): [0.0, 0] for sub in ("lead", "chorale") for sel in ("learned", "highest")}
        for r in rows:
            y, _ = sf.read(str(data / r["file"]), dtype="float32")
            y = apply(y, rng)
            f = analyze_clip(y, SR)["features"]
            if r["subset"] in ("lead", "chorale") and r.get("melody"):
                cents = 1200 * np.log2(speed)  # a detuned clip's notes sound that much lower, and later
                truth_notes = [(on / speed, off / speed, p + cents / 100) for on, off, p in r["melody"]]
                for sel, (num, den) in raw_pitch_by_selector(truth_notes, y).items():
                    rpa[(r["subset"], sel)][0] += num
                    rpa[(r["subset"], sel)][1] += den
            if r.get("key"):
                keys.append(mir_eval.key.weighted_score(f"{r['key']} {r['mode']}", f"{f['key']} {f['tonality']}"))
            truth = r["tempo"] * speed
            tempo_ok.append(abs(f["tempo"] - truth) <= 0.04 * truth)
            metre.append((r["meter"] == "3/4", f["time_signature"] == "3/4"))
        share = {k: num / max(den, 1) for k, (num, den) in rpa.items()}
        tri = [e for t, e in metre if t]
        dup = [not e for t, e in metre if not t]
        print(f"{name}: key MIREX {np.mean(keys):.3f} (n={len(keys)}), tempo Acc1 {np.mean(tempo_ok):.3f}, "
              f"metre balanced {(np.mean(tri) + np.mean(dup)) / 2:.3f} (n={len(metre)}, {len(tri)} triple); melody raw "
              f"pitch accuracy, lead {share['lead', 'learned']:.3f} (old rule {share['lead', 'highest']:.3f}), "
              f"ensembles {share['chorale', 'learned']:.3f} (old rule {share['chorale', 'highest']:.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
