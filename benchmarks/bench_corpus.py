"""Key, ABC, tempo and metre on the rest of the corpus: pieces the evaluation set does not use.

Usage::

    python benchmarks/bench_corpus.py [--only key|folk] [--evalset bench-data/evalset] [--render]

The evaluation set's figures rest on 32-143 clips each (a standard error of 0.02-0.04). This
benchmark renders (once, into ``bench-data/key-corpus/`` and ``bench-data/folk-corpus/``, or again
with ``--render``; seeded, needs FluidSynth like ``evalset/render.py``) two larger sets from music21
corpus pieces no clip of that set comes from, exactly as ``evalset/render.py`` renders its own.
Nothing is fitted or chosen on the folk set; the key set's renders are the melody model's training
clips (``evalset/fit_melody.py``), and only their key is scored here.

**key**: the chorales with a key label (signature + final bass note, modal endings left out), per
chorale one ``key_open`` and one ``key_end`` excerpt and three from a random bar (two ensembles, one
lead over an accompaniment), random tempi 50-150 BPM. These are the chorales whose scores the key
model's chord statistics are counted on (``evalset/fit_key.py``), so the statistics are
**cross-fitted**: the chorales are split alternately (corpus order) in two halves, each counted by
``fit_key.py``'s own counting, and each clip is analysed with the other half's counts. Printed per
kind of excerpt: key MIREX weighted score with its standard error, the exact-key rate, and the plain
librosa CENS + Temperley baseline of ``bench_features.py`` on the same clips.

**folk**: 50 songs in each of 2/4, 3/4, 4/4 and 6/8 from the Essen books ``ballad30``-``ballad80``
(the set draws from ``altdeu10/20`` and ``ballad10/20``; a song whose title the set already has is
left out), one instrument, beat tempo 60-140 BPM (6/8: 45-80 dotted quarters). Each clip goes
through ``analyze_clip``; printed: ABC note F1 at 50 and 100 ms with its standard error
(``bench_features.abc_note_f1``), the share of ABC music21 parses, tempo Acc1 (4 %, of the beat: the
dotted quarter in 6/8) and the metre's triple-vs-duple balanced accuracy, with what each metre is
read as.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "evalset"))
KEY_SEED, FOLK_SEED = 777, 778
KEY_KINDS = ("open", "end", "random", "random", "lead")
FOLK_BOOKS = ("ballad30", "ballad40", "ballad50", "ballad60", "ballad70", "ballad80")
FOLK_SONGS = 200


def render_key_set(data: Path, paths: list[str]) -> list[dict]:
    import render as R
    from music21 import corpus

    rng = random.Random(KEY_SEED)
    recs = []
    for n, p in enumerate(paths):
        score = corpus.parse(p)
        if len(score.parts) < 4 or R.score_key(score) is None:
            continue
        mo = R.measure_offsets(score.parts[0])
        for j, kind in enumerate(KEY_KINDS):
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
    return recs


def rendered(data: Path, render: Callable[[], list[dict]], again: bool) -> list[dict] | None:
    """The set's labels, rendering it first (with ``render``) when asked or missing; None (after
    one sentence) when it must be rendered and FluidSynth is not installed."""
    if again or not (data / "labels.json").exists():
        if not shutil.which("fluidsynth"):
            print("error: fluidsynth is not installed: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont")
            return None
        data.mkdir(parents=True, exist_ok=True)
        (data / "labels.json").write_text(json.dumps(render(), indent=1))
    return json.loads((data / "labels.json").read_text())


def bench_key(data: Path, ev_labels: list[dict], again: bool) -> bool:
    import mir_eval
    import soundfile as sf
    from fit_key import count_key_statistics, other_chorales

    from benchmarks.bench_features import SLICE_META, cens_baseline_key
    from m2i.audio import features as F
    from m2i.audio.analyze import clip_settings, ensure_numba_cache

    paths = other_chorales(ev_labels)
    labels = rendered(data, lambda: render_key_set(data, paths), again)
    if labels is None:
        return False
    half = {p.rsplit("/", 1)[1]: i % 2 for i, p in enumerate(paths)}  # a clip's chorale -> its half
    tables, pieces = {}, {}
    for h in (0, 1):
        n_pieces, uni, trans = count_key_statistics(paths[h::2])
        tables[h], pieces[h] = F.key_model_tables(uni, trans), n_pieces
    print(f"key corpus: {data} clips={len(labels)} from {len({r['source'] for r in labels})} chorales "
          f"not in the evaluation set; key statistics cross-fitted on halves of "
          f"{pieces[0]['major']}+{pieces[0]['minor']} and {pieces[1]['major']}+{pieces[1]['minor']} chorales (major+minor)")
    ensure_numba_cache()
    got: dict[str, list[tuple[float, bool, float]]] = {}
    for r in labels:
        y, _ = sf.read(str(data / r["file"]), dtype="float32")
        a = F.prepare(y)
        beats = F.estimate_beats(a)
        obs = F.chord_observations(a, beats["beat_frames"])
        key = F.estimate_key(a, obs, tables=tables[1 - half[r["source"]]])
        # the same excerpt read as m2i reads a slice cut from inside a longer recording (no final-bass cue)
        sliced = dataclasses.replace(a, settings={**a.settings, **clip_settings({}, SLICE_META, a.duration_s)})
        key_in = F.estimate_key(sliced, obs, tables=tables[1 - half[r["source"]]])
        truth = f"{r['key']} {r['mode']}"
        got.setdefault(r["kind"], []).append((
            mir_eval.key.weighted_score(truth, f"{key['key']} {key['mode']}"),
            (key["key"], key["mode"]) == (r["key"], r["mode"]),
            mir_eval.key.weighted_score(truth, cens_baseline_key(y)),
            mir_eval.key.weighted_score(truth, f"{key_in['key']} {key_in['mode']}"),
        ))
    for kind in ("random", "open", "end"):
        v = np.array(got.get(kind, []), dtype=float)
        if v.size:
            inside = "" if kind == "end" else f"; read as a slice from inside a recording {v[:, 3].mean():.3f}"
            print(f"key_mirex_weighted_{kind}: {v[:, 0].mean():.3f} (s.e. {_se(v[:, 0]):.3f}; exact "
                  f"{v[:, 1].mean():.3f}; plain CENS + Temperley {v[:, 2].mean():.3f}{inside}; n={len(v)})")
    return True


def bench_folk(data: Path, ev_labels: list[dict], again: bool) -> bool:
    import render as R
    import soundfile as sf

    from benchmarks.bench_features import abc_note_f1, metre_confidence, triple_vs_duple
    from m2i.audio.analyze import analyze_clip
    from m2i.features import unsure

    titles = {r["source"].split(":", 1)[1] for r in ev_labels if r["subset"] == "folk"}
    labels = rendered(data, lambda: R.render_folk(data, FOLK_SONGS, random.Random(FOLK_SEED), books=FOLK_BOOKS,
                                                  skip_titles=titles), again)
    if labels is None:
        return False
    f1_50, f1_100, parsed, tempo_ok, metre, stated = [], [], [], [], [], []
    for r in labels:
        y, _ = sf.read(str(data / r["file"]), dtype="float32")
        out = analyze_clip(y)
        f = out["features"]
        a, b, ok = abc_note_f1(out, r["melody"])
        f1_50.append(a)
        f1_100.append(b)
        parsed.append(ok)
        tempo_ok.append(abs(f["tempo"] - r["tempo"]) <= 0.04 * r["tempo"])
        metre.append((r["meter"], f["time_signature"], f["confidence"]["time_signature"]))
        stated.append(not unsure(f, "harmonic_progression"))
    per_metre = {m: sum(r["meter"] == m for r in labels) for m in ("2/4", "3/4", "4/4", "6/8")}
    print(f"folk corpus: {data} clips={len(labels)} ({', '.join(f'{n} in {m}' for m, n in per_metre.items())}) "
          f"from {', '.join(FOLK_BOOKS)}")
    for name, v, what in (("abc_note_f1_50ms", f1_50, "target >= 0.80"), ("abc_note_f1_100ms", f1_100, "no target")):
        print(f"{name}: {np.mean(v):.3f} (s.e. {_se(v):.3f}; {what}; n={len(v)})")
    print(f"abc_parsed_by_music21: {np.mean(parsed):.3f} (must be 1.000; n={len(parsed)})")
    print(f"tempo_acc1_folk: {np.mean(tempo_ok):.3f} (no target; n={len(tempo_ok)})")
    bal, tri, dup = triple_vs_duple(metre)
    print(f"meter_balanced_accuracy_folk: {bal:.3f} (triple vs duple: triple recall {tri:.3f}, duple recall "
          f"{dup:.3f}; n={len(metre)})")
    conf, right, bands = metre_confidence(metre, (0.0, 0.4, 0.6, 0.8, 0.9))
    print(f"meter_confidence_mean_folk: {conf:.3f} (honest if near the share right, {right:.3f}; by confidence {bands})")
    for m in per_metre:
        read = Counter(e for t, e, _ in metre if t == m)
        print(f"  {m} read as " + ", ".join(f"{e} {k}" for e, k in read.most_common()))
    print(f"harmonic_progression_stated_folk: {sum(stated)} of {len(stated)} (solo lines: no chords to state; "
          "ringing instruments may have some)")
    return True


def _se(v) -> float:
    v = np.asarray(v, dtype=float)
    return float(v.std(ddof=1) / np.sqrt(len(v)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("key", "folk"), help="run one of the two parts")
    ap.add_argument("--evalset", default=str(ROOT / "bench-data" / "evalset"),
                    help="the evaluation set whose pieces are left out (its labels.json)")
    ap.add_argument("--render", action="store_true", help="render the sets again")
    args = ap.parse_args(argv)
    ev_path = Path(args.evalset) / "labels.json"
    if not ev_path.is_file():
        print(f"error: {ev_path} not found; render the evaluation set first (benchmarks/evalset/render.py).")
        return 1
    ev_labels = json.loads(ev_path.read_text())
    parts = {"key": (bench_key, "key-corpus"), "folk": (bench_folk, "folk-corpus")}
    for name, (run, folder) in parts.items():
        if args.only in (None, name) and not run(ROOT / "bench-data" / folder, ev_labels, args.render):
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
