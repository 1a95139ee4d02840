"""Render the demo clips bundled in ``m2i/data/demo`` (deterministic; FluidSynth needed).

Usage::

    python benchmarks/evalset/make_demo.py [--out m2i/data/demo]

Six 10 s clips from public-domain scores of the music21 corpus, chosen to make the features move:
major and minor keys, 3/4, 4/4, 2/4 and 6/8, slow and fast, ensemble and melody-led. Each is
written as 16 kHz mono 16-bit FLAC, and ``clips.json`` records its source piece, bars,
instruments and tempo.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render as R  # noqa: E402

CHORALES = [
    # (corpus path, lead?, quarter BPM, ensemble or (lead, accompaniment), start measure, description)
    ("bach/bwv269", False, 76.0, ("organ", "organ"), 1, "chorale, organ"),
    ("bach/bwv26.6", False, 60.0, ("strings", "strings"), 1, "chorale, strings"),
    ("bach/bwv86.6", True, 126.0, ("trumpet", "piano"), 1, "chorale, trumpet over piano"),
]
FOLK = [("altdeu10", "6/8", 56.0, "flute"), ("altdeu10", "3/4", 104.0, "violin"), ("ballad10", "2/4", 132.0, "piano")]


def main(argv: list[str] | None = None) -> int:
    from music21 import corpus

    ap = argparse.ArgumentParser(description="render m2i's demo clips")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "m2i" / "data" / "demo"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    sf2 = R.SOUNDFONTS[0]
    entries = []
    for i, (path, lead, qpm, inst, start_m, desc) in enumerate(CHORALES):
        score = corpus.parse(path)
        key = R.score_key(score)
        ts = score.recurse().getElementsByClass("TimeSignature")[0]
        mo = R.measure_offsets(score.parts[0])
        start_ql = mo[start_m]
        bar_ql = float(ts.barDuration.quarterLength)
        parts = [R.part_notes(p) for p in score.parts[:4]]
        tracks = []
        for j, notes in enumerate(parts):
            if lead:
                prog = R.LEAD_PROGRAMS[inst[0]] if j == 0 else R.ACCOMP_PROGRAMS[inst[1]]
                vel = 100 if j == 0 else 55
            else:
                prog = R.ENSEMBLE_PROGRAMS[inst[0] if j < 2 else inst[1]]
                vel = 80
            tracks.append((prog, R.perform(notes, start_ql=start_ql, qpm=qpm, beats_per_bar=bar_ql, bar0=mo.get(1, 0.0),
                                           rng=rng, accent=6.0, vel=vel)))
        name = f"demo{i + 1}_{Path(path).name.replace('.', '_')}.flac"
        y = R.render_midi(tracks, sf2)
        sf.write(str(out / name), y, R.SR, subtype="PCM_16")
        last_m = max(m for m, off in mo.items() if off < start_ql + 10.0 * qpm / 60.0)
        entries.append({"file": name, "piece": f"J. S. Bach, chorale {Path(path).name}",
                        "corpus": path, "bars": f"{start_m}-{last_m}", "instruments": desc, "tempo_bpm": qpm,
                        "time_signature": ts.ratioString, "key": f"{key[0]} {key[1]}" if key else None})
    for book, meter, bpm, inst in FOLK:
        opus = corpus.parse(f"essenFolksong/{book}")
        for sc in opus.scores:
            tss = list(sc.recurse().getElementsByClass("TimeSignature"))
            if len(tss) != 1 or tss[0].ratioString != meter:
                continue
            notes = R.part_notes(sc.parts[0] if sc.hasPartLikeStreams() else sc)
            qpm = bpm * (1.5 if meter == "6/8" else 1.0)
            if len(notes) < 12 or notes[-1][0] * 60.0 / qpm < 9.0:
                continue
            break
        else:
            continue
        bar_ql = float(tss[0].barDuration.quarterLength)
        start_ql = 0.0
        tr = [(R.FOLK_PROGRAMS[inst], R.perform(notes, start_ql=start_ql, qpm=qpm, beats_per_bar=bar_ql, bar0=0.0,
                                                rng=rng, accent=6.0, vel=90))]
        title = sc.metadata.title or "untitled"
        name = f"demo{len(entries) + 1}_folk_{meter.replace('/', '')}.flac"
        y = R.render_midi(tr, sf2)
        sf.write(str(out / name), y, R.SR, subtype="PCM_16")
        ks = sc.recurse().getElementsByClass("KeySignature")[0]
        entries.append({"file": name, "piece": f"Essen folk song '{title}' ({book})", "corpus": f"essenFolksong/{book}",
                        "bars": "from the start", "instruments": inst, "tempo_bpm": bpm, "time_signature": meter,
                        "key_signature_fifths": int(ks.sharps)})
    (out / "clips.json").write_text(json.dumps(entries, indent=1) + "\n")
    print(f"wrote {len(entries)} demo clips to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
