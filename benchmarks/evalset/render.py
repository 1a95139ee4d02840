"""Render the labelled evaluation set from the music21 corpus (deterministic, offline).

Usage::

    python benchmarks/evalset/render.py [--out bench-data/evalset] [--n-chorales 80] [--n-lead 30] [--n-folk 32]

The defaults write the 316 clips every figure in docs/features.md was measured on (the fitted
constants were fitted on its even-numbered clips: another size shifts which clips are even, and a
benchmark on it would score some clips the models were fitted on).

Needs FluidSynth and General MIDI soundfonts (Debian: ``apt-get install fluidsynth
fluid-soundfont-gm timgm6mb-soundfont``). Nothing here is composed by us: every clip is a public
domain score from the music21 corpus, rendered at a tempo and with instruments drawn from a
seeded random generator, so the same command always writes the same files.

Four subsets (``labels.json`` lists every clip with its ground truth):

- ``chorale``: Bach chorales, all four voices on one or two GM instruments, 50-150 BPM, a random
  start bar. Truth: key (key signature + final bass note; chorales whose final bass note is
  neither the major nor the relative-minor tonic of the signature are modal endings and are
  left out), metre (the score's time signature), tempo (the one we chose), beat times.
- ``chorale_rn``: the 20 chorales the corpus ships RomanText analyses for, rendered the same way
  at three start points each; truth adds beat-level chords (root + triad quality) from the
  analysis, placed by measure number and beat.
- ``lead``: chorales rendered melody-led: soprano on a solo instrument (flute, violin, oboe,
  clarinet, trumpet) about 10 dB above the lower voices on piano, organ or strings. Truth adds
  the soprano notes (onset, offset, MIDI) for raw pitch accuracy.
- ``folk``: monophonic Essen folk songs (2/4, 3/4, 4/4, 6/8) on one instrument at 60-140 BPM.
  Truth: notes, metre, key signature; used for ABC note F1 and metre.

``bench_features.py`` also renders (once, into ``<out>-low/``, with :func:`render_low`) each folk
clip's melody twice more on low instruments, an octave or two down where the instrument reaches:
the low-register figures, with no target.

Performance model (documented so nobody mistakes it for a hidden cue): velocity 78 +- 6 random
jitter, plus a downbeat accent drawn per clip from 0-10 velocity units (so some clips carry no
accent at all), onset jitter of +-8 ms. No other expression.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path

import numpy as np

SR = 16000
CLIP_S = 10.0
SOUNDFONTS = ["/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"]
ENSEMBLE_PROGRAMS = {"piano": 0, "organ": 19, "strings": 48, "choir": 52, "harpsichord": 6, "brass": 61,
                     "reed organ": 20, "guitar": 24}
LEAD_PROGRAMS = {"flute": 73, "violin": 40, "oboe": 68, "clarinet": 71, "trumpet": 56}
ACCOMP_PROGRAMS = {"piano": 0, "organ": 19, "strings": 48}
FOLK_PROGRAMS = {"flute": 73, "violin": 40, "piano": 0, "clarinet": 71, "recorder": 74, "accordion": 21}
FIFTHS_MAJOR = ["C", "G", "D", "A", "E", "B", "F#", "C#"]
FIFTHS_MAJOR_FLAT = ["C", "F", "Bb", "Eb", "Ab", "Db", "Gb", "Cb"]
PC = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7, "G#": 8,
      "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11}
MINOR_OF = {"C": "A", "G": "E", "D": "B", "A": "F#", "E": "C#", "B": "G#", "F#": "D#", "C#": "A#", "F": "D",
            "Bb": "G", "Eb": "C", "Ab": "F", "Db": "Bb", "Gb": "Eb", "Cb": "Ab"}


def major_of_fifths(k: int) -> str:
    return FIFTHS_MAJOR[k] if k >= 0 else FIFTHS_MAJOR_FLAT[-k]


def score_key(score) -> tuple[str, str] | None:
    """(tonic, mode) from key signature + final bass note, or None for a modal ending."""
    ks = list(score.recurse().getElementsByClass("KeySignature"))
    if not ks:
        return None
    k = ks[0].sharps
    maj = major_of_fifths(k)
    mnr = MINOR_OF[maj]
    bass = score.parts[-1].flatten().notes
    if not bass:
        return None
    last = bass[-1]
    pc = (last.pitches[0] if last.isChord else last.pitch).pitchClass
    if pc == PC[maj]:
        return maj, "major"
    if pc == PC[mnr]:
        return mnr, "minor"
    return None


def part_notes(part) -> list[tuple[float, float, int]]:
    """(onset_qL, duration_qL, midi) of a part with ties merged."""
    out = []
    for n in part.stripTies().flatten().notes:
        for p in (n.pitches if n.isChord else [n.pitch]):
            out.append((float(n.getOffsetInHierarchy(part)), float(n.quarterLength), int(p.midi)))
    return out


def measure_offsets(part) -> dict[int, float]:
    """Start of each measure number (a measure split at a repeat sign keeps its first offset)."""
    out: dict[int, float] = {}
    for m in part.getElementsByClass("Measure"):
        out.setdefault(int(m.number), float(m.getOffsetInHierarchy(part)))
    return out


def render_midi(tracks, soundfont: str, gain: float = 0.5) -> np.ndarray:
    """tracks: list of (program, [(start_s, end_s, midi, velocity)]) -> mono float32 at 16 kHz,
    ``CLIP_S`` long. Program -1 is the GM drum kit (``midi`` then picks the drum). FluidSynth's own
    file (stereo, as long as the notes ring) stays in a scratch folder."""
    import pretty_midi
    import soundfile as sf

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    for i, (prog, notes) in enumerate(tracks):
        inst = pretty_midi.Instrument(program=max(prog, 0), is_drum=prog < 0, name=f"t{i}")
        for s, e, p, v in notes:
            inst.notes.append(pretty_midi.Note(velocity=int(np.clip(v, 1, 127)), pitch=int(p), start=max(0.0, s),
                                               end=max(s + 0.03, e)))
        pm.instruments.append(inst)
    with tempfile.TemporaryDirectory() as td:
        mid, wav = Path(td) / "x.mid", Path(td) / "x.wav"
        pm.write(str(mid))
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(SR), "-F", str(wav), soundfont,
                        str(mid)], check=True, capture_output=True)
        y, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    assert sr == SR, sr
    n = int(CLIP_S * SR)
    y = y[:n] if y.size >= n else np.pad(y, (0, n - y.size))
    peak = float(np.abs(y).max())
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y


def perform(notes_ql, *, start_ql: float, qpm: float, beats_per_bar: float, bar0: float, rng: random.Random,
            accent: float, vel: float = 78.0, gain_db: float = 0.0):
    """Map (onset_qL, dur_qL, midi) to seconds from ``start_ql`` and give them velocities."""
    sec = 60.0 / qpm
    out = []
    for on, dur, p in notes_ql:
        if on + dur <= start_ql:
            continue
        t0 = (on - start_ql) * sec
        if t0 > CLIP_S + 0.5:
            continue
        pos = (on - bar0) % beats_per_bar
        v = vel + rng.uniform(-6, 6) + (accent if abs(pos) < 1e-6 else 0.0)
        v *= 10 ** (gain_db / 20)
        jit = rng.uniform(-0.008, 0.008)
        out.append((max(0.0, t0 + jit), (on + dur - start_ql) * sec - 0.02, p, v))
    return out


def chorale_paths():
    from music21 import corpus

    return sorted(str(p) for p in corpus.getComposer("bach") if str(p).endswith(".mxl") and "/bwv" in str(p))


def _excerpt_window(score, rng: random.Random, qpm: float) -> tuple[float, int, float]:
    """Pick a start bar so that 10 s of music follow; return (start_ql, start_measure, bar_len_ql)."""
    part = score.parts[0]
    mo = measure_offsets(part)
    total = float(part.highestTime)
    need = CLIP_S * qpm / 60.0
    nums = sorted(n for n, off in mo.items() if off + need <= total and n >= 1)
    if not nums:
        nums = [min(mo)]
    m = rng.choice(nums)
    ts = score.recurse().getElementsByClass("TimeSignature")[0]
    return mo[m], m, float(ts.barDuration.quarterLength)


def render_chorale(path: str, out: Path, idx: int, rng: random.Random, *, lead: bool, name: str,
                   start: tuple[float, int] | None = None, qpm: float | None = None, need_key: bool = True):
    from music21 import corpus

    score = corpus.parse(path)
    if len(score.parts) < 4:
        return None
    key = score_key(score)
    ts = score.recurse().getElementsByClass("TimeSignature")
    if (key is None and need_key) or not ts or ts[0].ratioString not in ("4/4", "3/4"):
        return None
    key = key or (None, None)
    meter = ts[0].ratioString
    qpm = qpm or round(rng.uniform(50, 150), 1)
    if start is None:
        start_ql, start_m, bar_ql = _excerpt_window(score, rng, qpm)
    else:
        start_ql, start_m = start
        bar_ql = float(ts[0].barDuration.quarterLength)
    # bar lines fall at multiples of the bar length counted from measure 1
    mo = measure_offsets(score.parts[0])
    bar0 = mo.get(1, 0.0)
    accent = rng.uniform(0, 10)
    sf2 = rng.choice(SOUNDFONTS)
    parts = [part_notes(p) for p in score.parts[:4]]
    tracks = []
    meta = {"soundfont": Path(sf2).name}
    if lead:
        lead_name = rng.choice(sorted(LEAD_PROGRAMS))
        acc_name = rng.choice(sorted(ACCOMP_PROGRAMS))
        tracks.append((LEAD_PROGRAMS[lead_name], perform(parts[0], start_ql=start_ql, qpm=qpm, beats_per_bar=bar_ql,
                                                         bar0=bar0, rng=rng, accent=accent, vel=100)))
        for p in parts[1:]:
            tracks.append((ACCOMP_PROGRAMS[acc_name], perform(p, start_ql=start_ql, qpm=qpm, beats_per_bar=bar_ql,
                                                              bar0=bar0, rng=rng, accent=accent, vel=50)))
        meta.update(lead=lead_name, accompaniment=acc_name)
    else:
        names = sorted(ENSEMBLE_PROGRAMS)
        a, b = rng.choice(names), rng.choice(names)
        for i, p in enumerate(parts):
            prog = ENSEMBLE_PROGRAMS[a if i < 2 else b]
            tracks.append((prog, perform(p, start_ql=start_ql, qpm=qpm, beats_per_bar=bar_ql, bar0=bar0, rng=rng,
                                         accent=accent)))
        meta.update(upper=a, lower=b)
    y = render_midi(tracks, sf2)
    flac = out / f"{name}.flac"
    import soundfile as sf

    sf.write(str(flac), y, SR, subtype="PCM_16")
    sec = 60.0 / qpm
    n_beats = int(CLIP_S / sec) + 1
    beats = [round(i * sec, 4) for i in range(n_beats) if i * sec < CLIP_S]
    downbeats = [round(((start_ql - bar0) % bar_ql == 0 and 0) or 0, 4)]
    first_down_ql = bar0 + np.ceil((start_ql - bar0) / bar_ql - 1e-9) * bar_ql
    downbeats = [round((first_down_ql - start_ql + k * bar_ql) * sec, 4) for k in range(40)
                 if (first_down_ql - start_ql + k * bar_ql) * sec < CLIP_S]
    soprano = [(round((on - start_ql) * sec, 4), round((on + d - start_ql) * sec, 4), p) for on, d, p in parts[0]
               if on >= start_ql - 1e-9 and (on - start_ql) * sec < CLIP_S]
    rec = {
        "file": flac.name,
        "subset": "lead" if lead else "chorale",
        "source": Path(path).name,
        "start_measure": start_m,
        "tempo": qpm,
        "key": key[0],
        "mode": key[1],
        "meter": meter,
        "beats": beats,
        "downbeats": downbeats,
        "accent": round(accent, 2),
        "melody": soprano,
        **meta,
    }
    return rec, (score, start_ql, qpm)


def rn_chords(rn_path: str, score, start_ql: float, qpm: float) -> list[list]:
    """Beat-level chord segments [start_s, end_s, 'G:maj', 'E major'] (local key last) from RomanText."""
    from music21 import converter

    an = converter.parse(rn_path, format="romantext")
    mo_score = measure_offsets(score.parts[0])
    rns = list(an.recurse().getElementsByClass("RomanNumeral"))
    sec = 60.0 / qpm
    items = []
    for r in rns:
        m = r.measureNumber
        meas = r.getContextByClass("Measure")
        if m not in mo_score or meas is None:
            continue
        off_in = float(r.getOffsetInHierarchy(meas)) - float(getattr(meas, "paddingLeft", 0.0) or 0.0)
        if m == 0 and mo_score.get(1) is not None:
            # pickup: the analysis writes it at its beat; the score's pickup ends at measure 1
            off_in = max(0.0, float(r.getOffsetInHierarchy(meas)) - (meas.barDuration.quarterLength - mo_score[1]))
        on = mo_score[m] + off_in
        q = r.quality
        qual = {"major": "maj", "minor": "min", "diminished": "dim", "augmented": "aug"}.get(q, "X")
        root = r.root().name.replace("-", "b")
        k = r.key
        items.append((on, f"{root}:{qual}", f"{k.tonic.name.replace('-', 'b')} {k.mode}"))
    items.sort()
    segs = []
    for i, (on, lab, lkey) in enumerate(items):
        end = items[i + 1][0] if i + 1 < len(items) else float(score.parts[0].highestTime)
        s, e = (on - start_ql) * sec, (end - start_ql) * sec
        if e <= 0 or s >= CLIP_S or e - s < 0.01:
            continue
        segs.append([round(max(0.0, s), 4), round(min(CLIP_S, e), 4), lab, lkey])
    return segs


def key_window(score, kind: str, qpm: float, rng: random.Random) -> int | None:
    """Start measure of a ``key_open`` (pickup, bar 1 or 2) or ``key_end`` excerpt at ``qpm``.

    ``key_end`` takes the last measure from which ``CLIP_S`` seconds of music still fit, so the
    window ends in the final bar and holds the final bass note. None when the voices do not sing
    in the first bars (instrumental prelude).
    """
    mo = measure_offsets(score.parts[0])
    if kind == "open":
        # a few chorales open with an instrumental prelude the four voices rest through
        first = min(on for p in score.parts[:4] for on, _, _ in part_notes(p))
        bar = float(score.recurse().getElementsByClass("TimeSignature")[0].barDuration.quarterLength)
        cands = [k for k in sorted(mo) if k <= 2 and mo[k] + bar > first + 1e-9]
        return rng.choice(cands) if cands else None
    total = float(score.parts[0].highestTime)
    need = CLIP_S * qpm / 60.0
    fits = [k for k in sorted(mo) if mo[k] + need <= total]
    return fits[-1] if fits else min(mo)


def render_key_excerpts(out: Path, paths: list[str], n: int, rng: random.Random) -> list[dict]:
    """``key_open`` / ``key_end``: chorale excerpts whose window the global key label describes.

    The key label (key signature + final bass note) is the key of the whole piece; a 10 s window
    from a random bar in the middle of a chorale is often in the dominant or the relative key at
    that point (the excerpt's own notes give the global key only 2 times in 3). These two subsets
    keep the random tempo, instruments and start bar but draw the start bar where the label holds:
    ``key_open`` starts at the pickup, bar 1 or bar 2 (a chorale's first phrase states its key);
    ``key_end`` starts at the bar that makes the window end in the final bar (it holds the final
    bass note that defines the label), so its start bar varies with the tempo.
    """
    from music21 import corpus

    recs: dict[str, list[dict]] = {"open": [], "end": []}
    done = 0
    for p in paths:
        if done >= n:
            break
        score = corpus.parse(p)
        if len(score.parts) < 4 or score_key(score) is None:
            continue
        ts = score.recurse().getElementsByClass("TimeSignature")
        if not ts or ts[0].ratioString not in ("4/4", "3/4"):
            continue
        mo = measure_offsets(score.parts[0])
        for kind in ("open", "end"):
            qpm = round(rng.uniform(50, 150), 1)
            m = key_window(score, kind, qpm, rng)
            if m is None:
                break
            res = render_chorale(p, out, done, rng, lead=False, name=f"key_{kind}_{done:03d}", start=(mo[m], m),
                                 qpm=qpm)
            if res is None:
                break
            rec = res[0]
            rec["subset"] = f"key_{kind}"
            recs[kind].append(rec)
        if len(recs["open"]) == len(recs["end"]) == done + 1:
            done += 1
        else:  # keep the two subsets on the same chorales
            recs["open"] = recs["open"][:done]
            recs["end"] = recs["end"][:done]
    # all openings, then all endings: the benchmark's even/odd split then halves each subset
    return recs["open"] + recs["end"]


FOLK_BOOKS = ("altdeu10", "ballad10", "altdeu20", "ballad20")


def render_folk(out: Path, n: int, rng: random.Random, books: tuple[str, ...] = FOLK_BOOKS,
                skip_titles: Collection[str] = ()) -> list[dict]:
    """Up to ``n`` monophonic Essen folk songs from ``books`` (none titled as in ``skip_titles``), a
    quarter of them in each of 2/4, 3/4, 4/4 and 6/8."""
    from music21 import corpus

    cands = []
    for b in books:
        if len(cands) >= 6 * n:
            break
        try:
            opus = corpus.parse(f"essenFolksong/{b}")
        except Exception:
            continue
        for sc in opus.scores:
            ts = list(sc.recurse().getElementsByClass("TimeSignature"))
            if len(ts) != 1 or ts[0].ratioString not in ("2/4", "3/4", "4/4", "6/8"):
                continue
            if not list(sc.recurse().getElementsByClass("KeySignature")) or sc.metadata.title in skip_titles:
                continue
            cands.append((b, sc))
    rng.shuffle(cands)
    by_meter: dict[str, list] = {}
    for b, sc in cands:
        by_meter.setdefault(sc.recurse().getElementsByClass("TimeSignature")[0].ratioString, []).append((b, sc))
    chosen = []
    per = max(1, n // 4)
    for m in ("2/4", "3/4", "4/4", "6/8"):
        chosen += by_meter.get(m, [])[:per]
    recs = []
    import soundfile as sf

    for i, (book, sc) in enumerate(chosen):
        ts = sc.recurse().getElementsByClass("TimeSignature")[0]
        meter = ts.ratioString
        notes = part_notes(sc.parts[0] if sc.hasPartLikeStreams() else sc)
        if len(notes) < 8:
            continue
        # tempo of the tracked beat: quarter for simple metres, dotted quarter for 6/8
        beat_bpm = round(rng.uniform(60, 140) if meter != "6/8" else rng.uniform(45, 80), 1)
        qpm = beat_bpm * (1.5 if meter == "6/8" else 1.0)
        bar_ql = float(ts.barDuration.quarterLength)
        accent = rng.uniform(0, 10)
        prog_name = rng.choice(sorted(FOLK_PROGRAMS))
        sf2 = rng.choice(SOUNDFONTS)
        pitched = [(on, d, p) for on, d, p in notes]
        first = pitched[0][0]
        start_ql = 0.0 if first < bar_ql else first
        notes_s = perform(pitched, start_ql=start_ql, qpm=qpm, beats_per_bar=bar_ql, bar0=0.0, rng=rng, accent=accent,
                          vel=90)
        name = f"folk_{i:03d}"
        y = render_midi([(FOLK_PROGRAMS[prog_name], notes_s)], sf2)
        sf.write(str(out / f"{name}.flac"), y, SR, subtype="PCM_16")
        sec = 60.0 / qpm
        truth = [(round((on - start_ql) * sec, 4), round((on + d - start_ql) * sec, 4), p) for on, d, p in pitched
                 if (on - start_ql) * sec < CLIP_S - 0.05]
        ks = sc.recurse().getElementsByClass("KeySignature")[0]
        recs.append({"file": f"{name}.flac", "subset": "folk", "source": f"essenFolksong/{book}:{sc.metadata.title}",
                     "tempo": beat_bpm, "meter": meter, "fifths": int(ks.sharps), "melody": truth,
                     "instrument": prog_name, "soundfont": Path(sf2).name, "accent": round(accent, 2)})
    return recs


# Low instruments: GM program and the lowest note (MIDI) each is asked to play here. A melody played
# by one moves down an octave or two where the instrument reaches, never under LOW_FLOOR (E2, the
# bottom of a baritone voice, a guitar, a cello's melodic range). Used by the low-register set below
# and by fit_melody.py's low takes.
LOW_PROGRAMS = {"cello": (42, 36), "bassoon": (70, 34), "trombone": (57, 40), "baritone sax": (67, 36),
                "voice oohs": (53, 40), "choir aahs": (52, 40), "tuba": (58, 28), "french horn": (60, 41),
                "tenor sax": (66, 44)}
LOW_FLOOR = 40


def low_arrangement(melody: list, rng: random.Random) -> tuple[str, list]:
    """An instrument of :data:`LOW_PROGRAMS` for ``melody`` (``[on_s, off_s, midi]``) and the notes
    it plays: down two octaves in 3 draws of 10 where it reaches, otherwise down one or (half the
    time) as written: (name, notes)."""
    name = sorted(LOW_PROGRAMS)[rng.randrange(len(LOW_PROGRAMS))]
    floor = max(LOW_PROGRAMS[name][1], LOW_FLOOR)
    lo = min(p for _, _, p in melody)
    shifts = [k for k in ((-24, -12) if rng.random() < 0.3 else (-12, 0)) if lo + k >= floor]
    shift = rng.choice(shifts) if shifts else 0
    return name, [(on, off, p + shift) for on, off, p in melody]


def play_low(melody: list, rng: random.Random) -> tuple[str, np.ndarray, list]:
    """``melody`` played by :func:`low_arrangement`'s instrument, velocity 85 +- 6, with a
    soundfont drawn from ``rng``: (name, audio, the notes as played)."""
    name, played = low_arrangement(melody, rng)
    notes = [(on, off - 0.02, p, 85 + rng.uniform(-6, 6)) for on, off, p in played]
    return name, render_midi([(LOW_PROGRAMS[name][0], notes)], rng.choice(SOUNDFONTS)), played


def render_low(out: Path, rows: list[tuple[int, dict]], rng: random.Random, takes: int = 2) -> list[dict]:
    """Each ``(index, label)`` of a folk clip played ``takes`` times by :func:`play_low` into
    ``out``: labels with the notes as played and ``source_index`` (its row in the set's
    ``labels.json``, whose parity is its split)."""
    import soundfile as sf

    recs = []
    for i, r in rows:
        for j in range(takes):
            f = f"low_{i:03d}_{j}"
            name, y, played = play_low(r["melody"], rng)
            sf.write(str(out / f"{f}.flac"), y, SR, subtype="PCM_16")
            recs.append({"file": f"{f}.flac", "subset": "folk_low", "source": r["source"], "source_index": i,
                         "instrument": name, "melody": [list(n) for n in played]})
    return recs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-data/evalset")
    ap.add_argument("--n-chorales", type=int, default=80)
    ap.add_argument("--n-lead", type=int, default=30)
    ap.add_argument("--n-folk", type=int, default=32)
    ap.add_argument("--n-key", type=int, default=60, help="chorales for the key_open / key_end subsets")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--only-key", action="store_true",
                    help="render only key_open / key_end and merge them into an existing labels.json")
    args = ap.parse_args(argv)
    if not shutil.which("fluidsynth"):
        print("fluidsynth is not installed: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont")
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    paths = chorale_paths()
    order = paths[:]
    rng.shuffle(order)
    labels = []
    if args.only_key:
        old = json.loads((out / "labels.json").read_text())
        labels = [r for r in old if not r["subset"].startswith("key_")]
        labels += render_key_excerpts(out, order[::-1], args.n_key, random.Random(args.seed + 1))
        (out / "labels.json").write_text(json.dumps(labels, indent=1))
        print(f"wrote {len(labels)} clips to {out}")
        return 0
    # RomanText subset first (fixed pieces)
    from music21 import corpus

    rn_dir = Path(corpus.getComposer("bach")[0]).parent / "choraleAnalyses"
    for k, rn_file in enumerate(sorted(rn_dir.glob("riemenschneider*.rntxt"))):
        bwv = next(line.split(":", 1)[1].strip() for line in rn_file.read_text().splitlines() if line.startswith("BWV"))
        cand = [p for p in paths if Path(p).name.startswith(f"bwv{bwv}.") or Path(p).stem == f"bwv{bwv}"]
        if not cand:
            print(f"no score for BWV {bwv} ({rn_file.name}); skipped", file=sys.stderr)
            continue
        for j in range(3):
            res = render_chorale(cand[0], out, 0, rng, lead=False, name=f"rn_{k:02d}_{j}", need_key=False)
            if res is None:
                break
            rec, (score, start_ql, qpm) = res
            rec["subset"] = "chorale_rn"
            rec["rntxt"] = rn_file.name
            segs = rn_chords(str(rn_file), score, start_ql, qpm)
            rec["chords"] = [c[:3] for c in segs]
            weight: dict[str, float] = {}
            for a, b, _, lkey in segs:
                weight[lkey] = weight.get(lkey, 0.0) + b - a
            rec["local_key"] = max(weight, key=weight.get) if weight else None
            labels.append(rec)
    n_ch = n_lead = 0
    for p in order:
        if n_ch < args.n_chorales:
            res = render_chorale(p, out, n_ch, rng, lead=False, name=f"chorale_{n_ch:03d}")
            if res:
                labels.append(res[0])
                n_ch += 1
        elif n_lead < args.n_lead:
            res = render_chorale(p, out, n_lead, rng, lead=True, name=f"lead_{n_lead:03d}")
            if res:
                labels.append(res[0])
                n_lead += 1
        else:
            break
    labels += render_folk(out, args.n_folk, rng)
    # key subsets last, from their own generator, so the clips above do not change
    labels += render_key_excerpts(out, order[::-1], args.n_key, random.Random(args.seed + 1))
    (out / "labels.json").write_text(json.dumps(labels, indent=1))
    counts = {}
    for r in labels:
        counts[r["subset"]] = counts.get(r["subset"], 0) + 1
    print(f"wrote {len(labels)} clips to {out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
