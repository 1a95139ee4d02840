"""ABC, tempo and metre on 200 more folk songs: Essen ballads the evaluation set does not draw from.

Usage::

    python benchmarks/bench_folk_corpus.py [--data bench-data/folk-corpus] [--evalset bench-data/evalset] [--render]

The evaluation set's ABC figure rests on 32 folk songs (8 per metre; a standard error of about
0.03). This benchmark renders (once, or again with ``--render``; seeded, needs FluidSynth) 50 songs
in each of 2/4, 3/4, 4/4 and 6/8 from the Essen books ``ballad30``-``ballad80`` of the music21
corpus (the set draws from ``altdeu10/20`` and ``ballad10/20``; a song whose title the set already
has is left out), exactly as ``evalset/render.py`` renders its folk clips: one instrument, beat
tempo 60-140 BPM (6/8: 45-80 dotted quarters), performance jitter. Nothing was fitted on them.
Each clip goes through ``analyze_clip``; printed: ABC note F1 at 50 and 100 ms with its standard
error (``bench_features.abc_note_f1``), the share of ABC that music21 parses, tempo Acc1 (4 %, of
the beat: the dotted quarter in 6/8) and the metre's triple-vs-duple balanced accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from collections import Counter
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "evalset"))
SEED = 778
BOOKS = ("ballad30", "ballad40", "ballad50", "ballad60", "ballad70", "ballad80")
N_SONGS = 200


def render_set(data: Path, titles_in_evalset: set[str]) -> None:
    import render as R

    data.mkdir(parents=True, exist_ok=True)
    recs = R.render_folk(data, N_SONGS, random.Random(SEED), books=BOOKS, skip_titles=titles_in_evalset)
    (data / "labels.json").write_text(json.dumps(recs, indent=1))


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    from benchmarks.bench_features import abc_note_f1
    from m2i.audio.analyze import analyze_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "folk-corpus"))
    ap.add_argument("--evalset", default=str(ROOT / "bench-data" / "evalset"),
                    help="the evaluation set whose songs are left out (its labels.json)")
    ap.add_argument("--render", action="store_true", help="render the clips again")
    args = ap.parse_args(argv)
    data, ev_labels = Path(args.data), Path(args.evalset) / "labels.json"
    if not ev_labels.is_file():
        print(f"error: {ev_labels} not found; render the evaluation set first (benchmarks/evalset/render.py).")
        return 1
    if args.render or not (data / "labels.json").exists():
        if not shutil.which("fluidsynth"):
            print("error: fluidsynth is not installed: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont")
            return 1
        titles = {r["source"].split(":", 1)[1] for r in json.loads(ev_labels.read_text()) if r["subset"] == "folk"}
        render_set(data, titles)
    labels = json.loads((data / "labels.json").read_text())
    f1_50, f1_100, parsed, tempo_ok, metre = [], [], [], [], []
    for r in labels:
        y, _ = sf.read(str(data / r["file"]), dtype="float32")
        out = analyze_clip(y)
        f = out["features"]
        a, b, ok = abc_note_f1(out, r["melody"])
        f1_50.append(a)
        f1_100.append(b)
        parsed.append(ok)
        tempo_ok.append(abs(f["tempo"] - r["tempo"]) <= 0.04 * r["tempo"])
        metre.append((r["meter"], f["time_signature"]))
    per_metre = {m: sum(r["meter"] == m for r in labels) for m in ("2/4", "3/4", "4/4", "6/8")}
    print(f"folk corpus: {data} clips={len(labels)} ({', '.join(f'{n} in {m}' for m, n in per_metre.items())}) "
          f"from {', '.join(BOOKS)}")
    for name, v, what in (("abc_note_f1_50ms", f1_50, "target >= 0.80"), ("abc_note_f1_100ms", f1_100, "no target")):
        print(f"{name}: {np.mean(v):.3f} (s.e. {np.std(v, ddof=1) / np.sqrt(len(v)):.3f}; {what}; n={len(v)})")
    print(f"abc_parsed_by_music21: {np.mean(parsed):.3f} (must be 1.000; n={len(parsed)})")
    print(f"tempo_acc1_folk: {np.mean(tempo_ok):.3f} (no target; n={len(tempo_ok)})")
    tri = [e == "3/4" for t, e in metre if t == "3/4"]
    dup = [e != "3/4" for t, e in metre if t != "3/4"]
    print(f"meter_balanced_accuracy_folk: {(np.mean(tri) + np.mean(dup)) / 2:.3f} (triple vs duple: triple recall "
          f"{np.mean(tri):.3f}, duple recall {np.mean(dup):.3f}; n={len(metre)})")
    for m in per_metre:
        read = Counter(e for t, e in metre if t == m)
        print(f"  {m} read as " + ", ".join(f"{e} {k}" for e, k in read.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
