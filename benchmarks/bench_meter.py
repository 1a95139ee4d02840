"""Time signature, key and chords on pop-style music that is not a chorale: synthetic GM renders, nothing fitted on them.

Usage::

    python benchmarks/bench_meter.py [--data bench-data/meter-synth] [--render]

Renders (once, or again with ``--render``; deterministic, seeded) 80 ten-second clips with
FluidSynth and the Debian GM soundfonts: 40 in 4/4 (rock, four-on-the-floor, half-time,
sixteenth-note or no drums; block, pad, arpeggio, syncopated or strummed comping; root, root-fifth,
eighth-note or walking bass; a lead melody or none; 66-175 BPM), 20 in 3/4 (oom-pah-pah, block,
pad, arpeggio or strummed; 80-189 BPM), 12 in 6/8 (40-99 dotted quarters) and 8 polkas in 2/4.
Every clip is analysed as rendered (it starts on a bar line) and with its first 0.3-1.5 s cut off
(three draws), and the share read with the right time signature is printed per metre, with the
balanced accuracy of triple vs duple as in ``bench_features.py`` (2/4 read 4/4 is counted wrong in
the per-metre line, right in the triple-vs-duple one), and the metre's mean confidence against how
often triple vs duple is right, by confidence. The tempo is scored on the same analyses: Acc1, within
4 % of the rendered beat (the quarter note; 6/8's dotted quarter), per metre.

The key is scored on the same analyses (MIREX weighted, and the exact-key rate) against the tonic
of the progression, major except ``i-VI-III-VII``; the 7 minor-progression clips whose lead plays
the major scale of the tonic have no single key and are left out (73 clips). Printed with the
key's mean confidence and how often keys given at each confidence are exactly right; and again with
each clip read as m2i reads a slice cut from inside a longer recording (a window with more of its
file after it, a row of the annotation file: ``clip_settings``, no final-bass cue).

The chords are scored on every clip (majmin weighted recall, ``bench_features.py``'s measure)
against the triads of the progression as rendered (sevenths as their triad), overall and by the
comping pattern; and on how many clips as rendered the harmonic progression is stated (every
clip has chords under its melody). Each clip goes through ``analyze_clip`` as a user's would.

The melody is scored on the clips with a lead line (as rendered): mir_eval's raw pitch accuracy
(``bench_features.raw_pitch``) of ``melody_track`` against the lead's notes, with the learned
selector (the default) and with the rule it replaced (``melody_selector="highest"``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "evalset"))

QUALITY = {"maj": [0, 4, 7], "min": [0, 3, 7], "dom7": [0, 4, 7, 10], "min7": [0, 3, 7, 10], "maj7": [0, 4, 7, 11]}
PROGRESSIONS = {
    "I-V-vi-IV": [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
    "vi-IV-I-V": [(9, "min"), (5, "maj"), (0, "maj"), (7, "maj")],
    "I-IV-V-IV": [(0, "maj"), (5, "maj"), (7, "maj"), (5, "maj")],
    "i-VI-III-VII": [(0, "min"), (8, "maj"), (3, "maj"), (10, "maj")],
    "ii-V-I-vi": [(2, "min7"), (7, "dom7"), (0, "maj7"), (9, "min7")],
    "I-vi-IV-V": [(0, "maj"), (9, "min"), (5, "maj"), (7, "maj")],
}
COMP_PROGRAMS = [0, 4, 25, 26, 16, 48, 5]
LEAD_PROGRAMS = [73, 40, 56, 65, 80, 11, 22]
KICK, SNARE, CLAP, HAT, OPEN_HAT = 36, 38, 39, 42, 46
DRUMS = -1  # render_midi's program for the GM drum kit


def _voicing(root: int, quality: str, lo: int = 55, hi: int = 70) -> list[int]:
    out = []
    for iv in QUALITY[quality]:
        p = root + iv
        while p < lo:
            p += 12
        while p > hi:
            p -= 12
        out.append(p)
    return out


def grid(meter: str, bpm: float) -> tuple[float, float, float]:
    """(unit, beat, bar) in seconds; in 6/8 ``bpm`` counts dotted quarters and the unit is the eighth."""
    unit = 60.0 / bpm / (3 if meter == "6/8" else 1)
    return unit, unit * (3 if meter == "6/8" else 1), unit * {"4/4": 4, "3/4": 3, "2/4": 2, "6/8": 6}[meter]


def bar_chords(b: int, bar: float, seq: list[tuple[int, str]], chords_per_bar: float) -> list[tuple[float, float, tuple[int, str]]]:
    """``(start_s, duration_s, (degree, quality))`` of the chords in bar ``b`` (a chord lasts two bars
    when ``chords_per_bar`` is 0.5)."""
    t0 = b * bar
    if chords_per_bar >= 1:
        n = int(chords_per_bar)
        return [(t0 + k * bar / n, bar / n, seq[(b * n + k) % len(seq)]) for k in range(n)]
    return [(t0, bar, seq[(b // 2) % len(seq)])]


def chord_truth(spec: dict, cut: float = 0.0) -> list[list]:
    """The triads a clip plays, ``[start_s, end_s, "F#:min"]`` from ``cut`` seconds on (times from
    the cut): sevenths as their triad, which is what ``mir_eval.chord.majmin`` compares."""
    from m2i.audio.features import PITCH_NAMES_SHARP

    bar = grid(spec["meter"], spec["bpm"])[2]
    out = []
    for b in range(int(np.ceil(10.0 / bar))):
        for s0, dur, (deg, q) in bar_chords(b, bar, PROGRESSIONS[spec["progression"]], spec["chords_per_bar"]):
            name = f"{PITCH_NAMES_SHARP[(spec['tonic'] + deg) % 12]}:{'min' if q.startswith('min') else 'maj'}"
            if s0 + dur > cut and s0 < 10.0:
                out.append([max(s0, cut) - cut, min(s0 + dur, 10.0) - cut, name])
    return out


def song(meter: str, bpm: float, rng: random.Random, *, progression: str, chords_per_bar: float, drums: str | None,
         comp: str, bass: str, melody: bool) -> tuple[list[tuple[int, list]], int]:
    """Tracks for render_midi (comping, bass, lead and drums over 10.5 s and more), and the tonic's
    pitch class."""
    unit, beat, bar = grid(meter, bpm)
    beats = round(bar / unit)
    n_bars = int(np.ceil(10.5 / bar)) + 1
    tonic = rng.randrange(12)
    seq = PROGRESSIONS[progression]
    comp_t, bass_t, lead_t, drum_t = [], [], [], []
    for b in range(n_bars):
        t0 = b * bar
        for s0, dur, (deg, q) in bar_chords(b, bar, seq, chords_per_bar):
            root = 48 + (tonic + deg) % 12
            vs = _voicing(root, q)
            steps = np.arange(s0, s0 + dur - 1e-6, beat)
            if comp == "block":
                for t in steps:
                    comp_t += [(t, t + beat * 0.9, p, 60 + (10 if abs(t - t0) < 1e-6 else 0)) for p in vs]
            elif comp == "pad":
                comp_t += [(s0, s0 + dur * 0.98, p, 62) for p in vs]
            elif comp == "arp":
                step = unit if meter == "6/8" else unit / 2
                pat = [vs[0], vs[1], vs[2], vs[1] + 12]
                comp_t += [(t, t + step * 1.5, pat[j % 4], 58) for j, t in enumerate(np.arange(s0, s0 + dur - 1e-6, step))]
            elif comp == "syncopated":  # 1, 2&, 4
                for off in (0.0, 1.5, 3.0):
                    if s0 + off * unit < s0 + dur - 1e-6:
                        comp_t += [(s0 + off * unit, s0 + (off + 1.2) * unit, p, 64) for p in vs]
            elif comp == "strum":
                pat = [1, 0, 1, 1, 0, 1, 1, 1] if meter != "3/4" else [1, 0, 1, 1, 1, 1]
                for j, t in enumerate(np.arange(s0, s0 + dur - 1e-6, unit / 2)):
                    if pat[j % len(pat)]:
                        comp_t += [(t + k * 0.008, t + unit * 0.9, p, 55 + (8 if j % 2 == 0 else 0)) for k, p in enumerate(vs)]
            elif comp == "oompah":  # chords off the first beat of each group
                group = 2 if meter == "6/8" else beats
                for j, t in enumerate(steps):
                    if j % group:
                        comp_t += [(t, t + beat * 0.6, p, 58) for p in vs]
            if bass == "root":
                bass_t.append((s0, s0 + dur * 0.95, root - 12, 95))
            elif bass == "root-fifth":
                bass_t += [(t, t + beat * 0.9, root - 12 + (7 if j % 2 else 0), 92) for j, t in enumerate(steps[::2])]
            elif bass == "eighths":
                bass_t += [(t, t + beat * 0.45, root - 12, 90) for t in np.arange(s0, s0 + dur - 1e-6, beat / 2)]
            elif bass == "walking":
                ivs = [0, 3 if "min" in q else 4, 7, 5]
                bass_t += [(t, t + beat * 0.9, root - 12 + ivs[j % 4], 90) for j, t in enumerate(steps)]
            elif bass == "oom":  # the bass on the first beat of each group, alternating root and fifth in 2/4
                group = 2 if meter in ("6/8", "2/4") else beats
                for j, t in enumerate(steps):
                    if j % group == 0 or meter == "2/4":
                        if meter != "2/4" or j % 2 == 0:
                            bass_t.append((t, t + beat * 0.6, root - 12 + (7 if meter == "2/4" and (b + j // 2) % 2 else 0), 95))
        if drums:
            n_beats = {"4/4": 4, "3/4": 3, "2/4": 2, "6/8": 2}[meter]
            for k in range(n_beats):
                t = t0 + k * beat
                hit = lambda d, tt, v: drum_t.append((tt, tt + 0.1, d, v))  # noqa: E731
                if drums == "rock":
                    hit(KICK if k % 2 == 0 else SNARE, t, 110 if k % 2 == 0 else 100)
                    hit(HAT, t, 60)
                    hit(HAT, t + beat / 2, 60)
                elif drums == "four-on-the-floor":
                    hit(KICK, t, 112)
                    if k % 2:
                        hit(CLAP, t, 95)
                    hit(OPEN_HAT, t + beat / 2, 70)
                elif drums == "half-time":
                    if k == 0:
                        hit(KICK, t, 110)
                    if k == 2:
                        hit(SNARE, t, 105)
                    hit(HAT, t, 55)
                    hit(HAT, t + beat / 2, 55)
                elif drums == "sixteenths":
                    hit(KICK if k in (0, 2) else SNARE, t, 108)
                    if k == 2:
                        hit(KICK, t + beat / 2, 95)
                    for h in (0.0, 0.25, 0.5, 0.75):
                        hit(HAT, t + h * beat, 50 + (15 if h == 0 else 0))
                elif drums == "waltz":
                    hit(KICK if k == 0 else HAT, t, 105 if k == 0 else 65)
                elif drums == "six-eight":
                    hit(KICK if k == 0 else SNARE, t, 108)
                    for h in range(3):
                        hit(HAT, t + h * unit, 55 + (10 if h == 0 else 0))
                elif drums == "march":
                    hit(KICK if k == 0 else SNARE, t, 108)
        if melody:
            scale = [0, 2, 4, 5, 7, 9, 11]
            pos = 0.0
            while pos < bar - 1e-6:
                d = unit * (rng.choices([1, 2, 0.5], [0.5, 0.3, 0.2])[0] if meter != "6/8" else rng.choices([1, 2, 3], [0.5, 0.3, 0.2])[0])
                d = min(d, bar - pos)
                p = 72 + tonic + scale[rng.randrange(7)]
                p = p - 12 if p > 84 else p
                lead_t.append((t0 + pos, t0 + pos + d * 0.92, p, 92 + (10 if pos == 0 else 0)))
                pos += d
    tracks = [(rng.choice(COMP_PROGRAMS), comp_t), (rng.choice([32, 33, 34, 43]), bass_t)]
    if lead_t:
        tracks.append((rng.choice(LEAD_PROGRAMS), lead_t))
    if drum_t:
        tracks.append((DRUMS, drum_t))
    return [(prog, notes) for prog, notes in tracks if notes], tonic


def plan(rng: random.Random) -> list[dict]:
    """The 80 clips: metre, tempo and arrangement of each."""
    out = []

    def add(meter: str, n: int, bpm: tuple[int, int], **choices: list) -> None:
        for _ in range(n):
            spec = {k: rng.choice(v) for k, v in choices.items()}
            out.append({"meter": meter, "bpm": rng.randint(*bpm), "progression": rng.choice(list(PROGRESSIONS)), **spec})

    add("4/4", 40, (66, 175), chords_per_bar=[1, 1, 2, 0.5], drums=[None, "rock", "four-on-the-floor", "half-time",
        "sixteenths", None], comp=["block", "pad", "arp", "syncopated", "strum"],
        bass=["root", "root-fifth", "eighths", "walking"], melody=[True, True, False])
    add("3/4", 20, (80, 189), chords_per_bar=[1, 1, 0.5], drums=[None, "waltz", None],
        comp=["oompah", "block", "pad", "arp", "strum"], bass=["root", "oom"], melody=[True, True, False])
    add("6/8", 12, (40, 99), chords_per_bar=[1, 1, 0.5], drums=[None, "six-eight"], comp=["arp", "block", "pad"],
        bass=["root", "root-fifth"], melody=[True, True, False])
    add("2/4", 8, (90, 149), chords_per_bar=[1, 0.5], drums=[None, "march"], comp=["oompah"], bass=["oom"],
        melody=[True])
    return out


def render_set(data: Path) -> None:
    import render as R
    import soundfile as sf

    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2026)
    labels = []
    for i, spec in enumerate(plan(rng)):
        name = f"{spec['meter'].replace('/', '')}_{i:02d}_{spec['bpm']}.wav"
        tracks, spec["tonic"] = song(spec["meter"], spec["bpm"], rng, **{k: v for k, v in spec.items() if k not in ("meter", "bpm")})
        lead = [notes for prog, notes in tracks if prog in LEAD_PROGRAMS and spec["melody"]]
        spec["lead"] = [[round(a, 4), round(b, 4), int(p)] for a, b, p, _ in (lead[0] if lead else []) if a < 10.0]
        y = R.render_midi(tracks, rng.choice(R.SOUNDFONTS))
        sf.write(str(data / name), y, R.SR)
        labels.append({"file": name, **spec})
    (data / "labels.json").write_text(json.dumps(labels, indent=1))


def key_truth(spec: dict) -> str | None:
    """``"E major"``: the progression's tonic; None where the lead's major scale contradicts a minor loop."""
    from m2i.audio.features import key_name

    mode = "minor" if spec["progression"] == "i-VI-III-VII" else "major"
    if mode == "minor" and spec["melody"]:
        return None
    return f"{key_name(spec['tonic'], mode)} {mode}"


def main(argv: list[str] | None = None) -> int:
    import mir_eval
    import soundfile as sf
    from fit_meter import cut_seconds

    from benchmarks.bench_features import (
        by_confidence,
        key_as_slice,
        majmin_overlap,
        metre_confidence,
        raw_pitch_by_selector,
        triple_vs_duple,
    )
    from m2i.audio.analyze import analyze_clip
    from m2i.audio.features import SR
    from m2i.features import unsure

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "meter-synth"))
    ap.add_argument("--render", action="store_true", help="render the clips again")
    args = ap.parse_args(argv)
    data = Path(args.data)
    labels_file = data / "labels.json"
    labels = json.loads(labels_file.read_text()) if labels_file.exists() and not args.render else []
    # a set rendered before the labels carried the tonic and the lead's notes renders again (the same audio)
    if not labels or any("tonic" not in r or "lead" not in r for r in labels):
        render_set(data)
        labels = json.loads(labels_file.read_text())
    kinds = ("as rendered", "cut mid-bar (3 draws)")
    rows: dict[str, list[tuple[str, str, float]]] = {k: [] for k in kinds}  # (truth, read, confidence)
    keys: dict[str, list[tuple[float, bool, float]]] = {k: [] for k in kinds}  # (MIREX, exact, confidence)
    inside: dict[str, list[float]] = {k: [] for k in kinds}  # MIREX, each clip read as a slice of a longer recording
    tempos: dict[str, list[tuple[str, bool]]] = {k: [] for k in kinds}  # (metre, within 4 % of the rendered tempo)
    chords: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}  # comping -> [seconds right, seconds scored]
    stated: list[bool] = []  # harmonic progression stated (m2i.features.unsure), each clip as rendered
    melody = {"learned": [0.0, 0], "highest": [0.0, 0]}  # raw pitch accuracy of the lead: frames right, frames
    for i, r in enumerate(labels):
        y, _ = sf.read(str(data / r["file"]), dtype="float32")
        truth = key_truth(r)
        for cut, kind in [(0.0, kinds[0])] + [(cut_seconds(i, d), kinds[1]) for d in range(3)]:
            out = analyze_clip(y[int(cut * SR):])
            f = out["features"]
            rows[kind].append((r["meter"], f["time_signature"], f["confidence"]["time_signature"]))
            tempos[kind].append((r["meter"], abs(f["tempo"] - r["bpm"]) <= 0.04 * r["bpm"]))
            if truth is not None:
                score = mir_eval.key.weighted_score(truth, f"{f['key']} {f['tonality']}")
                keys[kind].append((score, score == 1.0, f["confidence"]["key"]))
                # the same clip as a window cut from inside a longer recording (a song's slice, the
                # annotation file's rows): m2i reads its key without the final-bass cue (clip_settings)
                inside[kind].append(mir_eval.key.weighted_score(truth, key_as_slice(y[int(cut * SR):])))
            right, scored = majmin_overlap(chord_truth(r, cut), f["chords"], out["duration_s"])
            tally = chords[kind].setdefault(r["comp"], [0.0, 0.0])
            tally[0] += right
            tally[1] += scored
            if cut == 0.0:
                stated.append(not unsure(f, "harmonic_progression"))
        if r["lead"]:
            for selector, (num, den) in raw_pitch_by_selector(r["lead"], y).items():
                melody[selector][0] += num
                melody[selector][1] += den
    print(f"synthetic metre set: {data} clips={len(labels)}")
    for key, rs in rows.items():
        per = {m: [e == m for t, e, _ in rs if t == m] for m in ("4/4", "3/4", "6/8", "2/4")}
        print(f"{key}: " + ", ".join(f"{m} read {m} {np.mean(v):.3f} (n={len(v)})" for m, v in per.items())
              + f"; triple-vs-duple balanced accuracy {triple_vs_duple(rs)[0]:.3f}")
    for kind, ts in tempos.items():
        print(f"tempo Acc1 (4 %), {kind}: " + ", ".join(
            f"{m} {np.mean([ok for t, ok in ts if t == m]):.3f}" for m in ("4/4", "3/4", "6/8", "2/4"))
            + f"; all {np.mean([ok for _, ok in ts]):.3f} (n={len(ts)})")
    every = rows[kinds[0]] + rows[kinds[1]]
    conf, right, bands = metre_confidence(every, (0.0, 0.4, 0.6, 0.8, 0.9))
    print(f"metre confidence: mean {conf:.3f} for {right:.3f} right (triple vs duple, all {len(every)} "
          f"analyses); by confidence {bands}")
    for kind, v in keys.items():
        k = np.array(v, dtype=float)
        print(f"key, {kind}: MIREX weighted {k[:, 0].mean():.3f}, exact {k[:, 1].mean():.3f} (n={len(k)})")
    print("key as slices of a longer recording (read without the final-bass cue, as m2i reads a window with more "
          "of its file after it or a row of the annotation file): MIREX weighted "
          + ", ".join(f"{kind} {np.mean(v):.3f}" for kind, v in inside.items()) + f" (n={len(inside[kinds[0]])} / "
          f"{len(inside[kinds[1]])})")
    for kind, by_comp in chords.items():
        right, scored = np.sum(list(by_comp.values()), axis=0)
        print(f"chords, {kind}: majmin weighted recall {right / scored:.3f}; by comping "
              + ", ".join(f"{c} {v[0] / v[1]:.3f}" for c, v in sorted(by_comp.items())))
    n_lead = sum(bool(r["lead"]) for r in labels)
    print(f"melody raw pitch accuracy of the lead over comping, bass (and drums), as rendered: "
          f"{melody['learned'][0] / melody['learned'][1]:.3f} (the rule before the learned selector, the highest "
          f"peak within 90 % of the strongest: {melody['highest'][0] / melody['highest'][1]:.3f}; n={n_lead})")
    print(f"harmonic progression stated (as rendered): {sum(stated)} of {len(stated)} clips (every clip has chords; "
          "a key under 0.1 leaves it out too)")
    k = np.array(keys[kinds[0]] + keys[kinds[1]], dtype=float)
    print(f"key confidence: mean {k[:, 2].mean():.3f} for {k[:, 1].mean():.3f} exactly right (all {len(k)} analyses); "
          f"by confidence {by_confidence(k[:, 2], k[:, 1], (0.0, 0.2, 0.4, 0.6, 0.8))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
