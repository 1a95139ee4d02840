"""Key on the rest of the corpus: renders of every chorale the evaluation set does not use.

Usage::

    python benchmarks/bench_key_corpus.py [--data bench-data/key-corpus] [--evalset bench-data/evalset] [--render]

The evaluation set's key figures rest on 60 opening, 60 ending and 143 random-bar excerpts of 184
chorales (a standard error of 0.02-0.04 each). This benchmark renders (once, or again with
``--render``; seeded, needs FluidSynth like ``evalset/render.py``) the music21 chorales that no
clip of that set comes from and that have a key label (signature + final bass note, modal endings
left out), exactly as ``evalset/render.py`` renders its clips: per chorale one ``key_open`` and one
``key_end`` excerpt and three from a random bar (two ensembles, one lead over an accompaniment), at
random tempi 50-150 BPM.

Those chorales are the ones whose scores the key model's chord statistics are counted on
(``evalset/fit_key.py``), so the statistics are **cross-fitted**: the chorales are split in two
halves (alternately, in corpus order), the counts of each half are made by ``fit_key.py``'s own
counting, and each clip is analysed with the counts of the half it is not in. Everything else m2i
uses is as shipped (the chord classifier and the few key settings were fitted or chosen on the
evaluation set's clips, other pieces). Printed per kind of excerpt: key MIREX weighted score with
its standard error, the exact-key rate, and the plain librosa CENS + Temperley baseline of
``bench_features.py`` on the same clips.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "evalset"))
SEED = 777
KINDS = ("open", "end", "random", "random", "lead")


def render_set(data: Path, paths: list[str]) -> None:
    import render as R
    from music21 import corpus

    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    recs = []
    for n, p in enumerate(paths):
        score = corpus.parse(p)
        if len(score.parts) < 4 or R.score_key(score) is None:
            continue
        mo = R.measure_offsets(score.parts[0])
        for j, kind in enumerate(KINDS):
            qpm = round(rng.uniform(50, 150), 1)
            if kind in ("open", "end"):
                m = R.key_window(score, kind, qpm, rng)
                if m is None:
                    continue
                res = R.render_chorale(p, data, n, rng, lead=False, name=f"{kind}_{n:03d}", start=(mo[m], m), qpm=qpm)
            else:
                res = R.render_chorale(p, data, n, rng, lead=kind == "lead", name=f"random_{n:03d}_{j}", qpm=qpm)
            if res is not None:
                recs.append(res[0] | {"kind": "random" if kind == "lead" else kind})
        if (n + 1) % 25 == 0 or n + 1 == len(paths):
            print(f"rendered {n + 1}/{len(paths)} chorales, {len(recs)} clips", flush=True)
    (data / "labels.json").write_text(json.dumps(recs, indent=1))


def main(argv: list[str] | None = None) -> int:
    import mir_eval
    import soundfile as sf
    from fit_key import count_key_statistics, other_chorales

    from benchmarks.bench_features import cens_baseline_key
    from m2i.audio import features as F
    from m2i.audio.analyze import ensure_numba_cache

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "key-corpus"))
    ap.add_argument("--evalset", default=str(ROOT / "bench-data" / "evalset"),
                    help="the evaluation set whose chorales are left out (its labels.json)")
    ap.add_argument("--render", action="store_true", help="render the clips again")
    args = ap.parse_args(argv)
    data, ev_labels = Path(args.data), Path(args.evalset) / "labels.json"
    if not ev_labels.is_file():
        print(f"error: {ev_labels} not found; render the evaluation set first (benchmarks/evalset/render.py).")
        return 1
    paths = other_chorales(json.loads(ev_labels.read_text()))
    if args.render or not (data / "labels.json").exists():
        if not shutil.which("fluidsynth"):
            print("error: fluidsynth is not installed: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont")
            return 1
        render_set(data, paths)
    labels = json.loads((data / "labels.json").read_text())
    half = {p.rsplit("/", 1)[1]: i % 2 for i, p in enumerate(paths)}
    tables, pieces = {}, {}
    for h in (0, 1):
        n_pieces, uni, trans = count_key_statistics([p for p in paths if half[p.rsplit("/", 1)[1]] == h])
        tables[h], pieces[h] = F.key_model_tables(uni, trans), n_pieces
    print(f"key corpus: {data} clips={len(labels)} from {len({r['source'] for r in labels})} chorales "
          f"not in {ev_labels.parent}; key statistics cross-fitted on halves of "
          f"{pieces[0]['major']}+{pieces[0]['minor']} and {pieces[1]['major']}+{pieces[1]['minor']} chorales (major+minor)")
    ensure_numba_cache()
    got: dict[str, list[tuple[float, bool, float]]] = {}
    for r in labels:
        y, _ = sf.read(str(data / r["file"]), dtype="float32")
        a = F.prepare(y)
        beats = F.estimate_beats(a)
        key = F.estimate_key(a, F.chord_observations(a, beats["beat_frames"]), tables=tables[1 - half[r["source"]]])
        truth = f"{r['key']} {r['mode']}"
        got.setdefault(r["kind"], []).append((
            mir_eval.key.weighted_score(truth, f"{key['key']} {key['mode']}"),
            (key["key"], key["mode"]) == (r["key"], r["mode"]),
            mir_eval.key.weighted_score(truth, cens_baseline_key(y)),
        ))
    for kind in ("random", "open", "end"):
        v = np.array(got.get(kind, []), dtype=float)
        if not v.size:
            continue
        se = v[:, 0].std(ddof=1) / np.sqrt(len(v))
        print(f"key_mirex_weighted_{kind}: {v[:, 0].mean():.3f} (s.e. {se:.3f}; exact {v[:, 1].mean():.3f}; "
              f"plain CENS + Temperley {v[:, 2].mean():.3f}; n={len(v)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
