"""The eight features on real audio: the demo renders and clips synthesised here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from m2i.audio import features
from m2i.audio.analyze import analyze_clip, analyze_file
from m2i.errors import InputError
from m2i.features import FEATURE_NAMES, describe

from .conftest import SR, drum_loop, scale_notes, synth_notes

MAJOR_STEPS = [0, 2, 2, 1, 2, 2, 2, 1]


def test_demo_clips_tempo_meter_and_key(demo_results):
    """Every demo tempo within 4 %, the two ensemble chorales' keys exact, the 4/4 and 3/4 metres of
    the chorale and folk demos right. (Known misses, docs/features.md: bwv269 in 3/4 reads 4/4;
    the 6/8 folk clip, whose beats divide in three only faintly, reads 3/4; 2/4 reads 4/4.)"""
    for name, (entry, out) in demo_results.items():
        f = out["features"]
        assert abs(f["tempo"] - entry["tempo_bpm"]) <= 0.04 * entry["tempo_bpm"], (name, f["tempo"])
    by_file = {n: o["features"] for n, (_, o) in demo_results.items()}
    assert (by_file["demo1_bwv269.flac"]["key"], by_file["demo1_bwv269.flac"]["tonality"]) == ("G", "major")
    assert (by_file["demo2_bwv26_6.flac"]["key"], by_file["demo2_bwv26_6.flac"]["tonality"]) == ("A", "minor")
    assert by_file["demo2_bwv26_6.flac"]["time_signature"] == "4/4"
    assert by_file["demo3_bwv86_6.flac"]["time_signature"] == "4/4"
    assert by_file["demo5_folk_34.flac"]["time_signature"] == "3/4"
    assert by_file["demo6_folk_24.flac"]["time_signature"] in ("2/4", "4/4")


def test_the_melody_of_each_demo_chorale_is_its_soprano(demo_results):
    """The two ensemble chorales (organ; strings) and the trumpet over piano: every melody note is
    a pitch of the soprano in the bars the clip holds. Before the learned selector the ensembles'
    melody wandered through the inner voices (bwv26.6: 37 notes, A3 to E5, for 6 soprano notes)."""
    corpus = pytest.importorskip("music21.corpus")
    for name, (entry, out) in demo_results.items():
        if not entry.get("corpus", "").startswith("bach/"):
            continue
        last_bar = int(entry["bars"].split("-")[1])
        soprano = corpus.parse(entry["corpus"]).parts[0].measures(1, last_bar + 1)
        pitches = {n.pitch.midi for n in soprano.flatten().notes}
        melody = [p for _, _, p in out["features"]["melody_notes"]]
        assert len(melody) >= 5 and all(p in pitches for p in melody), (name, melody, sorted(pitches))


def test_feature_record_is_complete_json(demo_results):
    for _name, (_, out) in demo_results.items():
        f = out["features"]
        json.dumps(out)
        assert set(f["confidence"]) == set(FEATURE_NAMES)
        assert all(0.0 <= v <= 1.0 for v in f["confidence"].values())
        assert re.fullmatch(r"[A-G][#b]?", f["key"]) and f["tonality"] in ("major", "minor")
        assert f["time_signature"] in ("2/4", "3/4", "4/4", "6/8")
        assert 0 <= f["mood"]["valence"] <= 1 and 0 <= f["mood"]["arousal"] <= 1 and f["mood"]["words"]
        assert f["melody_contour"]["shape"] in ("ascending", "descending", "arch", "valley", "wave", "static")
        assert f["harmonic_progression"]["text"] == "-".join(f["harmonic_progression"]["roman"])
        assert f["dynamic_intensity"]["label"] in ("pp", "p", "mp", "mf", "f", "ff")
        assert all(a < b for a, b, _ in f["chords"]) and all(":" in c for _, _, c in f["chords"])
        assert out["duration_s"] == 10.0
        assert "tempo:" in describe(f)
    # confidences are measured, not constants
    metre_conf = {out["features"]["confidence"]["time_signature"] for _, out in demo_results.values()}
    key_conf = {out["features"]["confidence"]["key"] for _, out in demo_results.values()}
    assert len(metre_conf) > 2 and len(key_conf) > 2


def test_ascending_scale_contour_key_and_abc():
    notes = scale_notes(62, MAJOR_STEPS + [0] * 0, bpm=96)  # D major scale, one note per beat
    notes = notes + scale_notes(74, [0, -2, -2, -1, -2], bpm=96, start=notes[-1][1] + 0.05)[:0]
    y = synth_notes(notes, duration=6.0)
    out = analyze_clip(y, SR)
    f = out["features"]
    assert f["melody_contour"]["shape"] == "ascending"
    assert f["melody_contour"]["range_semitones"] == pytest.approx(12, abs=1)
    assert [p for _, _, p in f["melody_notes"]] == [62, 64, 66, 67, 69, 71, 73, 74]
    assert "K:D" in out["abc"] or "K:Bm" in out["abc"]


def test_arch_and_valley_melodies():
    up_down = scale_notes(60, [0, 2, 2, 1, 2, 2, -2, -1, -2, -2, -2], bpm=110)
    assert analyze_clip(synth_notes(up_down, duration=7.0))["features"]["melody_contour"]["shape"] == "arch"
    down_up = scale_notes(72, [0, -1, -2, -2, -2, -1, 1, 2, 2, 2, 1], bpm=110)
    assert analyze_clip(synth_notes(down_up, duration=7.0))["features"]["melody_contour"]["shape"] == "valley"


def test_tempo_is_the_beat_not_the_eighth_note():
    bpm = 66.0
    beat = 60.0 / bpm
    notes = []
    for i in range(12):  # loud quarter-note chords, soft off-beat eighths
        t = 0.2 + i * beat
        notes += [(t, t + beat * 0.9, 48 + (i % 2) * 5), (t, t + beat * 0.9, 64)]
    y_beats = synth_notes(notes, duration=10.0, velocity=110)
    off = synth_notes([(0.2 + i * beat + beat / 2, 0.2 + i * beat + beat * 0.7, 76) for i in range(12)],
                      duration=10.0, velocity=40)
    f = analyze_clip(0.7 * y_beats + 0.15 * off)["features"]
    assert abs(f["tempo"] - bpm) <= 0.04 * bpm
    assert len(f["beats"]) in range(9, 13)


@pytest.mark.parametrize("bpm", [90, 120, 140])
def test_tempo_of_a_drum_loop_is_its_quarter_note(bpm):
    """Kick, snare and eighth-note hi-hats: the beat is the quarter note, not the bar's half or the hats."""
    f = analyze_clip(drum_loop(bpm))["features"]
    assert abs(f["tempo"] - bpm) <= 0.04 * bpm, f["tempo"]


@pytest.mark.parametrize("bpm", [100, 120, 140, 170])
def test_straight_chords_on_every_beat_are_not_six_eight(bpm):
    """A pop comping pattern (I-V-vi-IV struck on every beat, bass on 1 and 3) has nothing between
    its beats: it used to come out 6/8 because two near-zero subdivisions were compared."""
    beat = 60.0 / bpm
    prog = [(60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60)]
    notes = []
    for i in range(int(10.5 / beat)):
        ch = prog[(i // 4) % 4]
        notes += [(i * beat, (i + 0.9) * beat, p) for p in ch]
        if i % 2 == 0:
            notes.append((i * beat, (i + 1.8) * beat, ch[0] - 24))
    f = analyze_clip(synth_notes(notes, duration=10.0))["features"]
    assert f["time_signature"] == "4/4", (f["time_signature"], f["confidence"]["time_signature"])


@pytest.mark.parametrize("cents", [-32, 40])
def test_a_recording_off_a440_keeps_its_key_and_its_notes(cents):
    """A432 (-32 cents) or a record played 40 cents sharp: the tuning is measured and the CQT follows
    it, so the key and the melody's notes are those of the clip in tune. Without it, 40 cents sharp
    read a semitone up on most clips (key MIREX 0.59 instead of 0.82 on the evaluation set)."""
    import soundfile as sf
    import soxr

    from .conftest import DEMO

    y, _ = sf.read(str(DEMO / "demo5_folk_34.flac"), dtype="float32")
    ref = analyze_clip(y, SR)["features"]
    f = analyze_clip(soxr.resample(y, SR * 2 ** (cents / 1200), SR).astype(np.float32), SR)["features"]
    assert ref["tuning_cents"] == 0.0  # in tune: the CQT is not computed twice
    assert abs(f["tuning_cents"] - cents) < 8, f["tuning_cents"]
    assert (f["key"], f["tonality"]) == (ref["key"], ref["tonality"]) == ("A", "minor")
    assert [p for _, _, p in f["melody_notes"]][:8] == [p for _, _, p in ref["melody_notes"]][:8]


def _waltz(bpm: float) -> np.ndarray:
    """Oom-pah-pah: a bass note on beat 1, the chord on beats 2 and 3; I-IV-V-I, one chord a bar."""
    beat = 60.0 / bpm
    prog = [(48, (64, 67, 72)), (53, (65, 69, 72)), (55, (65, 67, 71)), (48, (64, 67, 72))]
    notes = []
    for i in range(int(10.5 / beat)):
        root, chord = prog[(i // 3) % 4]
        if i % 3 == 0:
            notes.append((i * beat, (i + 0.9) * beat, root))
        else:
            notes += [(i * beat, (i + 0.6) * beat, p) for p in chord]
    return synth_notes(notes, duration=10.0)


@pytest.mark.parametrize("cut_s", [0.0, 0.4, 0.7, 1.2])
def test_the_metre_does_not_depend_on_where_the_clip_starts(cut_s):
    """A clip cut from a recording starts anywhere in the bar, and its first frames always read as
    an onset. The metre used to lean on that onset: a rock beat came out 2/4 or 3/4 and waltzes
    4/4 depending on where the clip began."""
    import soundfile as sf

    from .conftest import DEMO

    start = int(cut_s * SR)
    cases = [
        ("rock beat 90", drum_loop(90.0), "4/4"),
        ("rock beat 120", drum_loop(120.0), "4/4"),
        ("waltz 110", _waltz(110.0), "3/4"),
        ("waltz 150", _waltz(150.0), "3/4"),
        ("demo 3/4 folk", sf.read(str(DEMO / "demo5_folk_34.flac"), dtype="float32")[0], "3/4"),
        ("demo 4/4 chorale", sf.read(str(DEMO / "demo3_bwv86_6.flac"), dtype="float32")[0], "4/4"),
    ]
    conf = {}
    for name, y, metre in cases:
        f = analyze_clip(y[start:], SR)["features"]
        assert f["time_signature"] == metre, (name, f["time_signature"], f["confidence"]["time_signature"])
        conf[name] = f["confidence"]["time_signature"]
    # drums, an oom-pah-pah and a chorale's bass make a sure metre; a bare melody's 3/4 is given
    # with doubt (the evaluation set's 3/4 answers are right 34 % of the time; 0.78 had been given)
    assert min(v for name, v in conf.items() if name != "demo 3/4 folk") > 0.9, conf
    assert 0.1 < conf["demo 3/4 folk"] < conf["waltz 110"] - 0.3, conf


@pytest.mark.parametrize("cut_beats", [0.0, 1.3, 2.2])
def test_the_downbeat_is_the_waltz_bass_wherever_the_clip_starts(cut_beats):
    """The bar phase (where the ABC's bar lines go) comes from the beats' accent, bass and
    loudness, not from where the clip starts: the downbeat lands on a bass note of the waltz."""
    bpm = 120.0
    beat = 60.0 / bpm
    cut = cut_beats * beat
    a = features.prepare(_waltz(bpm)[int(cut * SR):])
    beats = features.estimate_beats(a)
    meter = features.estimate_meter(a, beats)
    assert meter["time_signature"] == "3/4"
    first_downbeat = beats["beats"][meter["downbeat"]] + cut  # in the uncut clip's time
    bars = first_downbeat / (3 * beat)
    assert abs(bars - round(bars)) * 3 * beat < 0.08, (first_downbeat, meter)
    # the record gives the bar starts themselves: every third tracked beat, each on a bass note
    f = analyze_clip(_waltz(bpm)[int(cut * SR):], SR)["features"]
    assert f["downbeats"] == f["beats"][meter["downbeat"]::3] and len(f["downbeats"]) >= 5, f["downbeats"]
    bars = (np.asarray(f["downbeats"]) + cut) / (3 * beat)
    assert np.all(np.abs(bars - np.round(bars)) * 3 * beat < 0.08), f["downbeats"]


def _render(notes, wave, *, duration: float = 10.0) -> np.ndarray:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes += [pretty_midi.Note(velocity=100, pitch=int(p), start=s, end=e) for s, e, p in notes]
    pm.instruments.append(inst)
    y = pm.synthesize(fs=SR, wave=wave)[: int(duration * SR)]
    return y / (np.abs(y).max() + 1e-9)


def test_the_melody_is_the_flute_not_the_bass_guitar_under_it():
    """A flute-like lead (almost no harmonics) over a louder, harmonic-rich bass line: the bass's
    octave and twelfth used to win the harmonic summation (they count the flute's own
    fundamental among their harmonics), so the melody, its range and the ABC were the bass's."""
    beat = 60.0 / 100
    roots = [43, 38, 40, 36]  # G2 D2 E2 C2, a bar each: I-V-vi-IV in G
    tune = [74, 74, 71, 74, 76, 76, 69, 78, 71, 71, 76, 74, 72, 67, 72, 76]
    lead = [(i * beat, (i + 0.9) * beat, p) for i, p in enumerate(tune)]
    bass = [((2 * i) * beat, (2 * i + 1.8) * beat, roots[(i // 2) % 4]) for i in range(8)]
    flute = _render(lead, lambda ph: np.sin(ph) + 0.1 * np.sin(2 * ph))
    electric_bass = _render(bass, lambda ph: sum(np.sin(h * ph) / h ** 0.5 for h in range(1, 9)))
    f = analyze_clip((0.35 * flute + 0.5 * electric_bass).astype(np.float32))["features"]
    pitches = [p for on, _, p in f["melody_notes"] if on < len(tune) * beat]
    assert min(pitches) >= 60, pitches  # none is the bass's octave (43-55) or twelfth (38-57)
    assert np.mean([p in tune for p in pitches]) >= 0.6, pitches  # (the bass's double octave shows in the gaps)
    assert f["melody_contour"]["range_semitones"] <= 20  # was 26


def _four_parts(qpm: float = 90.0) -> tuple[list[list[tuple[float, float, int]]], float]:
    """The four voices of Bach's chorale BWV 269 (music21 corpus) as ``(start_s, end_s, midi)``."""
    corpus = pytest.importorskip("music21.corpus")
    score = corpus.parse("bach/bwv269")
    sec = 60.0 / qpm
    voices = []
    for part in score.parts[:4]:
        flat = part.flatten()
        voices.append([(float(n.getOffsetBySite(flat)) * sec, (float(n.getOffsetBySite(flat)) + float(n.quarterLength)) * sec,
                        n.pitch.midi) for n in flat.notes])
    return voices, sec


@pytest.mark.parametrize("rolloff", [1.0, 0.7])  # organ-like, string-like spectra
def test_the_melody_of_a_chorale_played_by_one_ensemble_is_the_soprano(rolloff):
    """Four voices of one timbre: the lower voices' partials sit on the soprano's pitches, and the
    rule "the highest peak within 90 % of the strongest" followed an inner voice or a partial in
    most frames (0.27-0.29 here). The learned selector (melody_model.py, fitted on FluidSynth
    renders of other chorales and folk songs; this additive synthesis is none of them) follows the
    soprano, and the ABC written from it is the soprano's line."""
    voices, _ = _four_parts()
    wave = lambda ph: sum(np.sin(h * ph) / h**rolloff for h in range(1, 10))  # noqa: E731
    y = sum(_render([(s, e - 0.02, p) for s, e, p in v if s < 10.0], wave) for v in voices)
    y = (0.5 * y / np.abs(y).max()).astype(np.float32)
    a = features.prepare(y)
    T = a.n_frames
    t = np.arange(T) / features.FPS
    soprano = np.zeros(T)
    for s, e, p in voices[0]:
        soprano[(t >= s) & (t < e - 0.02)] = p
    sung = soprano > 0
    right = {}
    for selector in ("learned", "highest"):
        track = features.melody_track(features.prepare(y, {"melody_selector": selector}))
        right[selector] = float(np.mean(np.abs(track["midi"][sung] - soprano[sung]) <= 0.5))
    assert right["learned"] >= 0.85, right
    assert right["highest"] <= 0.5, right  # what the learned selector mends
    notes = analyze_clip(y)["features"]["melody_notes"]
    soprano_pitches = {p for s, _, p in voices[0] if s < 10.0}
    assert np.mean([p in soprano_pitches for _, _, p in notes]) >= 0.85, notes


@pytest.mark.parametrize("octave_partial", [0.0, 0.1])
def test_a_pure_tone_melody_is_read_at_its_own_octave(octave_partial):
    """A whistle or a sine lead has almost nothing above its fundamental, while the peak an octave
    or a twelfth below collects that fundamental as a partial; a melody model fitted on GM renders
    alone (all rich in harmonics) read such tones one or two octaves low. The training now holds
    additive-synthesis takes, pure sines among them."""
    steps = [0, 2, 2, 1, 2, 2, 2, 1, -1, -2, -2, -2]
    notes = scale_notes(67, steps, bpm=100)
    y = np.zeros(int(8.0 * SR))
    for s, e, p in notes:
        t = np.arange(int((e - s) * SR)) / SR
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        env = np.minimum(1.0, t / 0.02) * np.minimum(1.0, (t[-1] - t + 1e-3) / 0.02)
        tone = np.sin(2 * np.pi * f0 * t) + octave_partial * np.sin(4 * np.pi * f0 * t)
        y[int(s * SR) : int(s * SR) + t.size] += tone * env
    y = (0.5 * y / np.abs(y).max()).astype(np.float32)
    got = [p for _, _, p in analyze_clip(y)["features"]["melody_notes"]]
    runs = [p for i, p in enumerate(got) if i == 0 or p != got[i - 1]]  # (a note may be split in two)
    assert runs == [p for _, _, p in notes] and len(got) <= len(notes) + 2, got


def _voice_like(f0: float) -> list[float]:
    """Harmonic amplitudes of a sung vowel ("ah"): three formants at 700, 1220 and 2600 Hz."""
    formants = ((700.0, 130.0, 1.0), (1220.0, 70.0, 0.5), (2600.0, 160.0, 0.33))
    return [sum(g * np.exp(-0.5 * ((n * f0 - fc) / bw) ** 2) for fc, bw, g in formants) + 0.05 / n for n in range(1, 30)]


def _sung_tone(f0: float, dur: float, amps: list[float], vibrato: float, attack: float) -> np.ndarray:
    """A harmonic tone with partial amplitudes ``amps``, ``vibrato`` cents deep at 5.8 Hz, a linear
    attack and a 50 ms release."""
    t = np.arange(int(dur * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * 2 ** (vibrato / 1200 * np.sin(2 * np.pi * 5.8 * t))) / SR
    y = sum(a * np.sin(h * phase) for h, a in enumerate(amps, 1) if h * f0 < SR / 2)
    return y * np.minimum(1, t / attack) * np.minimum(1, (t[-1] - t + 1e-3) / 0.05)


_PAD_TUNE = [67, 69, 71, 72, 74, 72, 71, 69, 67, 64, 66, 67, 69, 71, 72, 74, 76, 74]


def _tune_accuracy(y: np.ndarray, tune: list[int], beat: float) -> float:
    """Share of the frames inside ``tune``'s notes (one per ``beat``) whose melody is the note."""
    track = features.melody_track(features.prepare(y))
    t = np.arange(track["midi"].size) / features.FPS
    sung = np.zeros(t.size)
    for i, p in enumerate(tune):
        sung[(t >= i * beat + 0.03) & (t < (i + 0.95) * beat - 0.03)] = p
    on = sung > 0
    return float(np.mean(np.abs(track["midi"][on] - sung[on]) <= 0.5))


@pytest.mark.parametrize(("lead", "vibrato_cents", "at_least"), [("voice", 50.0, 0.75), ("sine", 20.0, 0.9)])
def test_a_sung_or_pure_lead_over_a_held_pad_is_the_melody(lead, vibrato_cents, at_least):
    """Out of the melody model's training (GM renders, folk songs): a vowel-like lead with vibrato,
    or a pure tone, over a pad of held triads a quarter as loud. The old rule followed the pad's
    partials in over half the frames (0.47 and 0.34 here); the learned selector follows the lead
    (0.86 and 1.00 when this test was written; 0.86 and 0.95 with the attention over the frame's
    peaks, twenty-third session; 0.86 and 0.99 with low and band takes in training, twenty-fourth)."""
    beat = 0.5
    chords = [[55, 59, 62], [52, 55, 59], [48, 52, 55], [50, 54, 57]]
    y = np.zeros(int(9.5 * SR))
    for i, p in enumerate(_PAD_TUNE):
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        seg = _sung_tone(f0, beat * 0.95, _voice_like(f0) if lead == "voice" else [1.0], vibrato_cents, 0.03)
        y[int(i * beat * SR) : int(i * beat * SR) + seg.size] += seg
    for b in range(5):
        for p in chords[b % 4]:
            seg = 0.25 * _sung_tone(440.0 * 2 ** ((p - 69) / 12), 1.9, [1 / h for h in range(1, 12)], 0.0, 0.1)
            i0 = int(b * 2.0 * SR)
            y[i0 : i0 + seg.size] += seg[: y.size - i0]
    y = (0.5 * y / np.abs(y).max()).astype(np.float32)
    assert _tune_accuracy(y, _PAD_TUNE, beat) >= at_least


# a double reed's partials: a weak fundamental under its strongest third to fifth partials
_REED = [0.15, 0.5, 1.0, 0.9, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1]


@pytest.mark.parametrize(("lead", "shift", "at_least"), [("voice", -12, 0.85), ("reed", -12, 0.9), ("reed", -19, 0.7)])
def test_a_melody_in_a_low_register_is_read_at_its_pitch(lead, shift, at_least):
    """Out of the melody model's training: the tune of the test above sung an octave lower (E3-E4,
    a tenor or a baritone) or played by a reed-like tone an octave or a twelfth lower (A2-A3: two
    of its notes under the melody range, which starts at C3). Fitted without low takes, the model
    read the voice an octave high (0.39 of its frames right) and the reed's A2-A3 at its fifth
    partial (0.27), and the reed an octave down right (1.00); with them (twenty-fourth session)
    0.94, 1.00 and 0.85."""
    beat = 0.5
    tune = [p + shift for p in _PAD_TUNE]
    y = np.zeros(int(9.5 * SR))
    for i, p in enumerate(tune):
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        seg = _sung_tone(f0, beat * 0.95, _voice_like(f0) if lead == "voice" else _REED, 40.0, 0.03)
        y[int(i * beat * SR) : int(i * beat * SR) + seg.size] += seg
    y = (0.5 * y / np.abs(y).max()).astype(np.float32)
    assert _tune_accuracy(y, tune, beat) >= at_least


def test_melody_path_keeps_the_line_through_a_stray_frame():
    """The Viterbi path pays per semitone moved: one frame whose best-scored candidate is an
    octave away does not break a held note, while a change kept for many frames is followed."""
    T = 40
    pitch = np.stack([np.full(T, 72.0), np.full(T, 60.0)])  # two candidates per frame
    scores = np.stack([np.full(T, 2.0), np.zeros(T)])
    scores[:, 10] = [0.0, 2.0]  # one stray frame prefers the lower candidate
    scores[:, 25:] = [[0.0], [4.0]]  # from frame 25 the lower one is the melody
    valid = np.ones_like(scores, dtype=bool)
    valid[:, 5] = False  # a frame with no peak at all
    path = features.melody_path(scores, valid, pitch, jump_cost=0.1)
    assert path[5] == -1
    assert path[10] == 0 and set(path[11:25]) == {0}
    assert set(path[26:]) == {1}
    with pytest.raises(ValueError, match="melody_selector"):
        features.melody_track(features.prepare(np.zeros(SR, dtype=np.float32) + 0.1, {"melody_selector": "lowest"}))


def test_the_shipped_melody_model_reads_what_the_candidates_give():
    """melody_model.py is generated by fit_melody.py; its inputs must be melody_candidates' columns."""
    from m2i.audio import melody_model

    y = synth_notes(scale_notes(60, MAJOR_STEPS, bpm=120), duration=5.0)
    a = features.prepare(y)
    C, full, sal, lo = features.melody_salience(a)
    rows, X = features.melody_candidates(C, full, sal, lo, 0.9)
    net = melody_model.NETWORK
    assert X.shape == rows.shape + (len(net["MEAN"]),) == rows.shape + (len(net["SCALE"]),) == rows.shape + (len(net["W1"]),)
    assert len(net["WO"][0]) == 1
    scores = features.melody_candidate_scores(X, rows >= 0)
    assert scores.shape == rows.shape and np.isfinite(scores).all()


def test_a_candidates_score_depends_on_the_frames_other_peaks_only():
    """The attention reads the frame's valid peaks and nothing else: what sits in a slot with no
    peak, and the order the peaks come in, change no score; taking the other peaks away does."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 5, len(features._melody_network()["MEAN"]))).astype(np.float32)
    valid = np.ones((8, 5), dtype=bool)
    valid[5:] = False
    s = features.melody_candidate_scores(X, valid)
    X2 = X.copy()
    X2[5:] = 100.0  # garbage where there is no peak
    assert np.allclose(features.melody_candidate_scores(X2, valid)[:5], s[:5], atol=1e-5)
    perm = np.r_[4, 2, 0, 1, 3, 5, 6, 7]
    assert np.allclose(features.melody_candidate_scores(X[perm], valid), s[perm], atol=1e-5)
    alone = valid.copy()
    alone[1:] = False
    assert not np.allclose(features.melody_candidate_scores(X, alone)[0], s[0], atol=1e-3)


def test_the_fitting_scripts_network_is_the_one_analysis_runs():
    """fit_melody.py trains a torch module and exports its weights; melody_candidate_scores (numpy)
    must compute the same scores from them, or the shipped model is not the one that was fitted."""
    import importlib.util
    import os
    from unittest import mock

    import torch

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "evalset" / "fit_melody.py"
    spec = importlib.util.spec_from_file_location("fit_melody_under_test", path)
    fit_melody = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ), mock.patch.object(sys, "path", list(sys.path)):  # the script sets thread counts
        spec.loader.exec_module(fit_melody)
    torch.manual_seed(1)
    module = fit_melody.candidate_module(28)
    rng = np.random.default_rng(1)
    mean, scale = rng.standard_normal(28).astype(np.float32), rng.uniform(0.5, 2.0, 28).astype(np.float32)
    net = {k: np.asarray(v, dtype=np.float32) for k, v in fit_melody.export(module, mean, scale).items()}
    X = rng.standard_normal((8, 50, 28)).astype(np.float32)
    valid = rng.random((8, 50)) < 0.7
    with torch.no_grad():
        x = torch.tensor((X.transpose(1, 0, 2) - mean) / scale) * torch.tensor(valid.T).unsqueeze(-1)
        want = module(x, torch.tensor(valid.T)).numpy().T
    got = features.melody_candidate_scores(X, valid, net)
    assert np.allclose(got[valid], want[valid], atol=1e-4)


def test_dynamics_follow_the_level():
    bpm = 100
    notes = scale_notes(60, [0, 2, 2, 1, 2, 2, 2, 1] * 2, bpm=bpm)
    y = synth_notes(notes, duration=9.0)
    ramp = np.linspace(0.05, 1.0, y.size, dtype=np.float32)
    cresc = analyze_clip(y * ramp)["features"]["dynamic_intensity"]
    dim = analyze_clip(y * ramp[::-1])["features"]["dynamic_intensity"]
    quiet = analyze_clip(y * 0.02)["features"]["dynamic_intensity"]
    loud = analyze_clip(y)["features"]["dynamic_intensity"]
    assert cresc["trend"] == "crescendo" and dim["trend"] == "decrescendo" and loud["trend"] == "steady"
    assert quiet["loudness_db"] < loud["loudness_db"] - 25
    order = ["pp", "p", "mp", "mf", "f", "ff"]
    assert order.index(quiet["label"]) < order.index(loud["label"])
    # a DC offset is not sound (an interface's offset had turned mp into ff)
    offset = analyze_clip(0.5 * y + 0.4)["features"]["dynamic_intensity"]
    half = analyze_clip(0.5 * y)["features"]["dynamic_intensity"]
    assert abs(offset["loudness_db"] - half["loudness_db"]) < 0.5 and offset["label"] == half["label"]


def test_mood_moves_with_mode_tempo_and_level():
    fast_major = synth_notes(scale_notes(60, [0, 4, 3, 5, -5, -3, 4, 3, 5, -5, -3, -4] * 2, bpm=150), duration=8.0)
    slow_minor = synth_notes(scale_notes(57, [0, 3, 4, -4, -3, 3, 4, 5, -2, -1, -2, -2], bpm=55), duration=8.0)
    happy = analyze_clip(fast_major)["features"]["mood"]
    sad = analyze_clip(0.1 * slow_minor)["features"]["mood"]
    assert happy["valence"] > sad["valence"] and happy["arousal"] > sad["arousal"]
    assert happy["words"] != sad["words"]


@pytest.mark.parametrize(
    ("pcm", "match"),
    [
        (np.full(SR * 2, np.nan, np.float32), "NaN"),
        (np.zeros(SR * 2, np.float32), "silent"),
        (np.ones(SR // 2, np.float32) * 0.1, "shorter than 1 s"),
        (np.zeros((SR * 2, 2), np.float32) + 0.1, "mono"),
        (np.array(["a", "b"]), "not audio"),
    ],
)
def test_bad_clips_raise_input_error(pcm, match):
    with pytest.raises(InputError, match=match):
        analyze_clip(pcm)


def test_other_sample_rates_are_resampled():
    notes = scale_notes(60, MAJOR_STEPS, bpm=90)
    y44 = synth_notes(notes, sr=44100, duration=6.0)
    f = analyze_clip(y44, 44100)["features"]
    assert [p for _, _, p in f["melody_notes"]] == [60, 62, 64, 65, 67, 69, 71, 72]


def test_analyze_clip_runs_in_a_process_pool():
    y = synth_notes(scale_notes(60, MAJOR_STEPS, bpm=90), duration=4.0)
    with ProcessPoolExecutor(1) as ex:
        out = ex.submit(analyze_clip, y, SR).result(timeout=120)
    assert out["features"]["key"] in ("C", "G", "F", "A")


def test_analyze_file_shape(tmp_path):
    import soundfile as sf

    y = synth_notes(scale_notes(65, MAJOR_STEPS, bpm=90), duration=6.0)
    sf.write(tmp_path / "scale.flac", y, SR)
    out = analyze_file(tmp_path / "scale.flac")
    assert out["file"] == str(tmp_path / "scale.flac")
    assert set(out) == {"file", "start_s", "features", "abc", "duration_s"} and out["start_s"] == 0.0
    with pytest.raises(InputError, match="does not exist"):
        analyze_file(tmp_path / "missing.wav")


def test_analyze_file_skips_the_silence_before_the_music(tmp_path):
    """A recording that starts with 15 s of silence used to be refused as silent."""
    import soundfile as sf

    music = synth_notes(scale_notes(65, MAJOR_STEPS, bpm=90), duration=10.0)
    sf.write(tmp_path / "late.wav", np.concatenate([np.zeros(15 * SR, dtype=np.float32), music]), SR)
    out = analyze_file(tmp_path / "late.wav")
    assert out["start_s"] == 10.0 and out["features"]["melody_notes"]
    sf.write(tmp_path / "quiet.wav", np.zeros(25 * SR, dtype=np.float32), SR)
    with pytest.raises(InputError, match="silent") as err:
        analyze_file(tmp_path / "quiet.wav")
    assert str(err.value).count("quiet.wav") == 1


def test_importing_the_audio_package_stays_light():
    code = ("import sys, m2i.audio.analyze, m2i.audio.datasets, m2i.audio.spectrogram, m2i.audio.abc;"
            "heavy = [m for m in ('librosa', 'torch', 'numba', 'music21', 'soxr', 'scipy') if m in sys.modules];"
            "print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""


def test_analyze_lines_reports_bad_files_and_goes_on(tmp_path):
    import soundfile as sf

    from m2i.audio.cli_support import analyze_lines, human_summary

    sf.write(tmp_path / "good.wav", synth_notes(scale_notes(60, MAJOR_STEPS, bpm=90), duration=5.0), SR)
    sf.write(tmp_path / "quiet.wav", np.zeros(SR * 2, np.float32), SR)
    sf.write(tmp_path / "drums.wav", drum_loop(120), SR)
    lines = [json.loads(x) for x in analyze_lines([tmp_path / "quiet.wav", tmp_path / "good.wav", tmp_path / "drums.wav"])]
    assert "silent" in lines[0]["error"]
    assert lines[1]["features"]["tempo"] > 0 and lines[1]["abc"].startswith("X:1")
    assert human_summary(lines[0]).startswith("error: ") and "silent" in human_summary(lines[0])
    text = human_summary(lines[1])
    assert text.startswith(f"== {tmp_path / 'good.wav'}") and "tempo:" in text and "key: C" in text and "X:1" in text
    # the JSON keeps the drum loop's ABC; the text, like the LLM, states no melody that was not heard
    drums = human_summary(lines[2])
    assert lines[2]["abc"].startswith("X:1") and "tempo: 120 BPM" in drums and "X:1" not in drums and "key:" not in drums
    # ... and says what it left out, so that a missing key is not mistaken for a missing feature
    assert "not stated, measured too unsure: key, tonality, melody contour, harmonic progression" in drums
    assert "not stated, measured too unsure: harmonic progression (" in text  # a solo scale: no chords


def test_cli_analyze_json_prints_one_line_per_file_and_fails_on_a_bad_one(tmp_path):
    """README: `m2i analyze FILE... --json` prints one JSON object per file; a bad file's is its error."""
    import soundfile as sf

    from .conftest import DEMO

    sf.write(tmp_path / "good.wav", synth_notes(scale_notes(60, MAJOR_STEPS, bpm=90), duration=5.0), SR)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    cli = DEMO.parents[2] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "analyze", "corrupt.wav", "good.wav", "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    bad, good = (json.loads(line) for line in r.stdout.splitlines())
    assert set(bad) == {"file", "error"} and bad["file"] == "corrupt.wav" and "could not be decoded" in bad["error"]
    assert good["file"] == "good.wav" and good["abc"].startswith("X:1") and good["features"]["tempo"] > 0


def test_cli_analyze_reads_every_clip_of_a_npy_of_clips(tmp_path):
    """`m2i analyze label_data_with_16kHz_audio.npy --json` printed the first clip of 100 and said
    nothing of the others; each clip now has its line, a bad one its error, named by its row."""
    from .conftest import DEMO

    rows = [{"audio": synth_notes(scale_notes(60 + 2 * i, MAJOR_STEPS, bpm=90), duration=10.0), "style": np.zeros(4),
             "audio_meta": {"track_name": f"t{i}"}} for i in range(3)]
    rows[1] = {"style": np.zeros(4), "audio_meta": {"track_name": "t1"}}  # no audio
    arr = np.empty(3, dtype=object)
    arr[:] = rows
    np.save(tmp_path / "label_data_with_16kHz_audio.npy", arr, allow_pickle=True)
    np.save(tmp_path / "song.npy", synth_notes(scale_notes(62, MAJOR_STEPS, bpm=90), duration=25.0))  # one signal
    cli = DEMO.parents[2] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "analyze", "label_data_with_16kHz_audio.npy", "song.npy", "--json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    first, bad, third, song = (json.loads(line) for line in r.stdout.splitlines())
    assert (first["clip"], bad["clip"], third["clip"]) == (0, 1, 2) and "clip" not in song
    assert first["features"]["key"] == "C" and third["features"]["key"] == "E" and song["features"]["key"] == "D"
    assert set(bad) == {"file", "clip", "meta", "error"} and "no 'audio' field" in bad["error"]
    assert (first["meta"], bad["meta"]) == ({"track_name": "t0"}, {"track_name": "t1"})  # which song each row is
    assert "meta" not in song
    r = subprocess.run([sys.executable, str(cli), "analyze", "label_data_with_16kHz_audio.npy", "song.npy",
                        "--spectrogram-png", "pngs"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "== label_data_with_16kHz_audio.npy #2 (t2)\n" in r.stdout
    assert r.stderr.startswith("error: label_data_with_16kHz_audio.npy #1 (t1): the entry has no 'audio' field")
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [
        "label_data_with_16kHz_audio.npy-clip0.png", "label_data_with_16kHz_audio.npy-clip2.png", "song.npy.png"]


def _as_if_piped(wav: bytes, size: int) -> bytes:
    """``wav`` with the RIFF and data sizes a writer that cannot seek leaves: 0 or 0xFFFFFFFF."""
    b = bytearray(wav)
    at = b.find(b"data")
    b[4:8] = b[at + 4:at + 8] = size.to_bytes(4, "little")
    return bytes(b)


def test_cli_analyze_reads_audio_piped_in(tmp_path):
    """`ffmpeg -i song.m4a -f wav - | m2i analyze -` said "/home/me/- does not exist", and
    `m2i analyze <(sox ...)` "is not an audio file; convert it first": piped audio is now read by
    its bytes, named `stdin` (or the pipe's path), and what is not audio is one sentence."""
    import io
    import os
    import threading

    import soundfile as sf

    from .conftest import DEMO

    y, sr = sf.read(DEMO / "demo5_folk_34.flac", dtype="float32")
    (tmp_path / "tune.wav").write_bytes(wav := _wav_bytes(y, sr))
    cli = [sys.executable, str(DEMO.parents[2] / "cli.py"), "analyze"]

    def analyze(stdin: bytes, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], cwd=tmp_path, input=stdin, capture_output=True, timeout=300)

    direct = json.loads(analyze(b"", "tune.wav", "--json").stdout)
    for size in (0, 0xFFFFFFFF):  # how ffmpeg and sox leave the header of a WAV written to a pipe
        r = analyze(_as_if_piped(wav, size), "-", "--json")
        assert r.returncode == 0, r.stderr
        piped = json.loads(r.stdout)
        assert piped["file"] == "stdin" and piped["features"] == direct["features"] and piped["abc"] == direct["abc"]
    r = analyze((DEMO / "demo5_folk_34.flac").read_bytes(), "-")
    assert r.returncode == 0 and r.stdout.decode().startswith("== stdin\nkey: A\ntonality: minor\n")
    buf = io.BytesIO()
    np.save(buf, np.stack([y[:10 * sr], y[:10 * sr]]))  # a .npy of clips: every clip, by its row
    r = analyze(buf.getvalue(), "-", "--json")
    assert [(o["file"], o["clip"], o["features"]["key"]) for o in map(json.loads, r.stdout.splitlines())] == [
        ("stdin", 0, "A"), ("stdin", 1, "A")]

    # not audio, or audio m2i does not decode: one sentence each, the exit status 1, no traceback
    for data, said in [(b"\0\0\0\x20ftypM4A " + bytes(200), "stdin holds AAC audio, which m2i does not decode; "
                                                             "convert it to WAV or FLAC on its way in (ffmpeg -i"),
                       (b"name,tempo\nsong,120\n", "stdin holds no audio m2i reads; pipe in WAV, FLAC"),
                       (b"", "stdin holds no audio m2i reads (it is empty)")]:
        r = analyze(data, "-")
        assert r.returncode == 1 and r.stdout == b"" and r.stderr.decode().startswith(f"error: {said}"), r.stderr
        assert b"Traceback" not in r.stderr
    r = analyze(wav, "-", "-", "--json")
    first, second = map(json.loads, r.stdout.splitlines())
    assert r.returncode == 1 and first["features"] == direct["features"]
    assert second == {"file": "stdin", "error": "'-' is given twice; what was piped in is one stream, read for the first."}

    # /dev/stdin fed from a file has no suffix to read it by: it is read by its bytes as well
    with open(tmp_path / "tune.wav", "rb") as fh:
        r = subprocess.run([*cli, "/dev/stdin", "--json"], cwd=tmp_path, stdin=fh, capture_output=True, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["file"] == "/dev/stdin", r.stderr
    assert json.loads(r.stdout)["features"] == direct["features"]

    # a pipe given as a path (what bash's <(...) passes) is read the same way, under its own name
    os.mkfifo(fifo := tmp_path / "live")
    writer = threading.Thread(target=lambda: fifo.write_bytes(wav))
    writer.start()
    r = analyze(b"", str(fifo), "--json")
    writer.join(timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["file"] == str(fifo)
    assert json.loads(r.stdout)["features"] == direct["features"]


def test_ingest_refuses_a_pipe_in_one_sentence(tmp_path):
    """A run keeps where each clip came from, and a pipe is gone once read: `m2i ingest -` and
    `m2i ingest <(...)` say so (before: "/home/me/- does not exist", "convert it first")."""
    import os

    from m2i.audio.datasets import load_dataset

    os.mkfifo(tmp_path / "live")
    with pytest.raises(InputError, match=r"^'-' \(audio piped in\) is read by m2i analyze only; .* give its path\.$"):
        list(load_dataset("-"))
    with pytest.raises(InputError, match=r"live is a pipe or a device, not a file; .*\(m2i analyze reads a pipe\)\.$"):
        list(load_dataset(tmp_path / "live"))  # refused from its type: nothing waits for a writer


def test_analyze_dash_refuses_a_terminal(monkeypatch):
    """`m2i analyze -` typed on its own would wait for audio from the keyboard."""
    from m2i.audio.cli_support import analyze_results

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    (out,) = analyze_results(["-"])
    assert out == {"file": "stdin", "error": "'-' reads audio piped in (ffmpeg -i song.m4a -f wav - | m2i analyze -), "
                                             "but standard input is the terminal."}


def test_mend_streamed_wav_writes_the_true_sizes(tmp_path):
    """libsndfile reads no samples from a WAV whose data size a pipe left at 0."""
    import soundfile as sf

    from m2i.audio.datasets import mend_streamed_wav

    y = np.linspace(-0.5, 0.5, 4000, dtype=np.float32)
    wav = _wav_bytes(y, SR)
    (tmp_path / "piped.wav").write_bytes(_as_if_piped(wav, 0))
    assert sf.info(tmp_path / "piped.wav").frames == 0
    mend_streamed_wav(tmp_path / "piped.wav")
    assert (tmp_path / "piped.wav").read_bytes() == wav  # exactly the header a seekable writer writes
    (tmp_path / "whole.wav").write_bytes(wav)
    mend_streamed_wav(tmp_path / "whole.wav")
    assert (tmp_path / "whole.wav").read_bytes() == wav


def _wav_bytes(y: np.ndarray, sr: int) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_cli_analyze_warns_of_a_damaged_mp3_in_one_line(tmp_path):
    """The decoder's own lines ("Note: Illegal Audio-MPEG-Header ...") used to fill the terminal."""
    import soundfile as sf

    from .conftest import DEMO, write_mp3

    y, sr = sf.read(DEMO / "demo5_folk_34.flac", dtype="float32")
    write_mp3(tmp_path / "tune.mp3", y, sr, damaged=1)
    cli = DEMO.parents[2] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "analyze", "tune.mp3"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.splitlines()[:2] == ["== tune.mp3", "warning: the MP3 decoder met damaged data and skipped it; "
                                                        "the audio may have gaps"]
    assert "key: " in r.stdout


def test_analyze_draws_and_describes_the_spectrogram_when_asked(tmp_path):
    """`m2i analyze --spectrogram` computed the summary but printed it only with --json, and the
    PNG picture the issue asks for had no command at all."""
    from PIL import Image

    from m2i.audio.cli_support import analyze_results, human_summary
    from m2i.errors import InputError

    from .conftest import DEMO

    clip = DEMO / "demo5_folk_34.flac"
    out = list(analyze_results([clip, clip], settings={"spectrogram": True}, png_dir=tmp_path / "pngs"))
    assert [r["spectrogram_png"] for r in out] == [str(tmp_path / "pngs" / "demo5_folk_34.flac.png"),
                                                   str(tmp_path / "pngs" / "demo5_folk_34.flac-2.png")]
    with Image.open(out[0]["spectrogram_png"]) as im:
        assert im.format == "PNG" and im.size == (640, 256)
    text = human_summary(out[0]).splitlines()
    assert f"spectrogram: {out[0]['features']['spectrogram']}" in text
    assert f"spectrogram picture: {out[0]['spectrogram_png']}" in text
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create the spectrogram folder .* choose a writable --spectrogram-png"):
        list(analyze_results([clip], png_dir=tmp_path / "file" / "pngs"))


def test_analyze_a_folder_gives_each_file_its_own_line(tmp_path):
    """`m2i analyze FOLDER` analysed the folder's first usable clip under the folder's name."""
    import soundfile as sf

    from m2i.audio.cli_support import analyze_results

    (tmp_path / "set" / "sub").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    sf.write(tmp_path / "set" / "b.wav", synth_notes(scale_notes(60, MAJOR_STEPS, bpm=90), duration=4.0), SR)
    sf.write(tmp_path / "set" / "sub" / "c.flac", np.zeros(SR * 2, np.float32), SR)
    (tmp_path / "set" / "a.txt").write_text("not audio")
    out = list(analyze_results([tmp_path / "set", tmp_path / "empty"]))
    assert [r["file"] for r in out] == [str(tmp_path / "set" / "b.wav"), str(tmp_path / "set" / "sub" / "c.flac"),
                                        str(tmp_path / "empty")]
    assert out[0]["features"]["key"] == "C" and "silent" in out[1]["error"] and "contains no audio" in out[2]["error"]


def test_analyze_spreads_many_files_over_processes_in_order(tmp_path):
    """`m2i analyze corpus/` analysed one file at a time on one core however many the machine had;
    from 8 files (or clips of a .npy) on they go to worker processes, and the lines are the same, in
    the same order, as from one process: a bad file's error and a bad row's in their places, the
    annotation file's rows one by one, spectrogram pictures named alike."""
    import soundfile as sf

    from m2i.audio.cli_support import analyze_results

    (tmp_path / "sub").mkdir()
    for i, name in enumerate([f"k{i}.wav" for i in range(8)] + ["sub/k7.wav"]):  # nine keys, one name twice
        sf.write(tmp_path / name, synth_notes(scale_notes(60 + i, MAJOR_STEPS, bpm=100), duration=3.0), SR)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    rows = [{"audio": synth_notes(scale_notes(62 - i, MAJOR_STEPS, bpm=100), duration=3.0),
             "audio_meta": {"track_name": f"t{i}"}} for i in range(3)]
    rows[1] = {"audio_meta": {"track_name": "t1"}}  # no audio
    arr = np.empty(3, dtype=object)
    arr[:] = rows
    np.save(tmp_path / "label.npy", arr, allow_pickle=True)
    paths = [tmp_path / f"k{i}.wav" for i in range(8)] + [tmp_path / "bad.wav", tmp_path / "sub", tmp_path / "label.npy"]
    alone = list(analyze_results(paths, workers=1, png_dir=tmp_path / "png1"))
    spread = list(analyze_results(paths, workers=2, png_dir=tmp_path / "png2"))
    assert spread == [{**r, **({"spectrogram_png": r["spectrogram_png"].replace("png1", "png2")}
                               if "spectrogram_png" in r else {})} for r in alone]
    assert [r["file"] for r in spread] == [str(p) for p in paths[:9]] + [str(tmp_path / "sub" / "k7.wav")] + [
        str(tmp_path / "label.npy")] * 3
    assert [r["features"]["key"] for r in spread[:8]] == ["C", "Db", "D", "Eb", "E", "F", "F#", "G"]
    assert "could not be decoded" in spread[8]["error"] and spread[9]["features"]["key"] == "Ab"
    assert [(r["clip"], r["meta"]["track_name"], r.get("features", {}).get("key")) for r in spread[10:]] == [
        (0, "t0", "D"), (1, "t1", None), (2, "t2", "C")]
    assert sorted(p.name for p in (tmp_path / "png2").iterdir()) == sorted(p.name for p in (tmp_path / "png1").iterdir())
    assert (tmp_path / "png2" / "k7.wav-2.png").is_file() and (tmp_path / "png2" / "label.npy-clip2.png").is_file()


def test_analyze_workers_is_the_machine_setting_and_a_bad_count_is_one_sentence(tmp_path, monkeypatch):
    """`m2i analyze --workers 0` printed a usage block and exited 2, unlike every other bad number;
    and the machine's analyze_workers (M2I_ANALYZE_WORKERS, m2i.toml), which bounds a run's
    analysis processes, did not bound `m2i analyze`'s."""
    import os
    from pathlib import Path

    import soundfile as sf
    from typer.testing import CliRunner

    import cli
    import m2i.audio.cli_support as cli_support

    sf.write(tmp_path / "a.wav", synth_notes(scale_notes(60, MAJOR_STEPS, bpm=100), duration=2.0), SR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2I_")}
    for args, extra, said in ((["--workers", "0"], {}, "--workers"), ([], {"M2I_ANALYZE_WORKERS": "0"}, "M2I_ANALYZE_WORKERS")):
        got = "0" if args else "'0'"  # an environment variable's value is text, and is quoted as such
        r = subprocess.run([sys.executable, str(Path(cli.__file__)), "analyze", "a.wav", *args], cwd=tmp_path,
                           env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"error: {said} should be greater than or equal to 1 (got {got}).\n")
    asked = []
    monkeypatch.setattr(cli_support, "analyze_results", lambda files, **kw: asked.append(kw["workers"]) or iter(()))
    monkeypatch.chdir(tmp_path)
    for k in [k for k in os.environ if k.startswith("M2I_")]:
        monkeypatch.delenv(k)
    (tmp_path / "m2i.toml").write_text("analyze_workers = 3\n")
    assert CliRunner().invoke(cli.app, ["analyze", "a.wav"]).exit_code == 0
    monkeypatch.setenv("M2I_ANALYZE_WORKERS", "2")
    assert CliRunner().invoke(cli.app, ["analyze", "a.wav"]).exit_code == 0
    assert CliRunner().invoke(cli.app, ["analyze", "a.wav", "--workers", "1"]).exit_code == 0
    (tmp_path / "m2i.toml").unlink()
    monkeypatch.delenv("M2I_ANALYZE_WORKERS")
    assert CliRunner().invoke(cli.app, ["analyze", "a.wav"]).exit_code == 0
    assert asked == [3, 2, 1, None]  # None: one per core, up to 8 (procs.pool_size)


def test_analyze_windows_reads_a_song_window_by_window(tmp_path):
    """`m2i analyze song.wav` analyses one window, so a song that changes key could not be read
    along its length without ingesting it into a run; --windows gives every window (as `m2i ingest`
    cuts the file), a window of silence is reported, and only a file with no window fails."""
    import soundfile as sf

    from m2i.audio.cli_support import analyze_results

    two = MAJOR_STEPS + MAJOR_STEPS[1:]  # two octaves of a major scale, one note per beat
    song = np.concatenate([synth_notes(scale_notes(60, two, bpm=100), duration=10.0), np.zeros(10 * SR, np.float32),
                           synth_notes(scale_notes(67, two, bpm=100), duration=10.5)])
    sf.write(tmp_path / "song.wav", song, SR)
    sf.write(tmp_path / "hum.wav", np.zeros(3 * SR, np.float32), SR)
    records = list(analyze_results([tmp_path / "song.wav"], windows=True))
    assert [(r["start_s"], r.get("features", {}).get("key"), r.get("error")) for r in records] == [
        (0.0, "C", None), (10.0, None, "the clip is silent (every sample is 0); drop it."), (20.0, "G", None)]
    assert analyze_results([tmp_path / "song.wav"]).__next__()["features"]["key"] == "C"  # without: the first window
    spread = list(analyze_results([tmp_path / "song.wav"], windows=True, hop_s=3.0, workers=2))
    assert [r["start_s"] for r in spread] == [3.0 * i for i in range(8)]  # until a window reaches the end (30.5 s)
    assert spread[0] == records[0] and spread[-1]["duration_s"] == 9.5
    assert spread == list(analyze_results([tmp_path / "song.wav"], windows=True, hop_s=3.0, workers=1))

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "analyze", "--windows", "song.wav"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "a silent window fails nothing: other windows of the file were analysed"
    heading, columns, *rows = r.stdout.splitlines()  # a table: a row per window
    assert heading == "== song.wav · 10 s windows every 10 s · -: too unsure to state"
    assert columns.split() == ["start", "key", "tempo", "metre", "dyn", "melody", "mood", "harmony"]
    assert [row.split()[:6] for row in rows] == [["0:00", "C", "major", "100", "4/4", "f"],
                                                 ["0:20", "G", "major", "100", "4/4", "f"]]
    assert rows[0].split()[6:8] == ["ascending", records[0]["features"]["mood"]["words"][0] + ","]
    assert rows[0].endswith("  -"), "a solo line states no harmony"
    from m2i.audio.cli_support import clock

    assert [clock(s) for s in (0.0, 7.5, 75.5, 3600.0)] == ["0:00", "0:07.5", "1:15.5", "60:00"]
    assert r.stderr == "error: song.wav@10: the clip is silent (every sample is 0); drop it.\n"
    r = subprocess.run([sys.executable, str(cli), "analyze", "--windows", "--json", "song.wav", "hum.wav"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and json.loads(r.stdout.splitlines()[-1]) == {
        "file": "hum.wav", "start_s": 0.0, "error": "the clip is silent (every sample is 0); drop it."}
    sf.write(tmp_path / "late.wav", song[10 * SR:], SR)  # 10 s of silence, then G major
    r = subprocess.run([sys.executable, str(cli), "analyze", "late.wav"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.splitlines()[:2] == ["== late.wav@10", "key: G"]  # where it was read
    r = subprocess.run([sys.executable, str(cli), "analyze", "--hop", "5", "song.wav"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (1, "error: --hop sets the step between the windows of --windows; add --windows.\n")


def test_analyze_demo_gives_every_demo_clip(demo_results):
    """`m2i ingest demo` adds the six bundled clips, but `m2i analyze demo` printed one record, for
    the first of them, named "demo"; it now gives a line per clip, each naming its file."""
    from m2i.audio.cli_support import analyze_results
    from m2i.audio.datasets import DEMO_DIR

    records = list(analyze_results(["demo"]))
    assert [r["file"] for r in records] == [str(DEMO_DIR / name) for name in demo_results]
    assert [r["features"] for r in records] == [out["features"] for _, out in demo_results.values()]


def test_analyze_goes_on_when_a_worker_process_is_killed(tmp_path):
    """A worker killed mid-file (the kernel's out-of-memory killer) broke the pool; the files in
    flight are analysed again in a fresh pool and every file still gets its line, in order."""
    import psutil
    import soundfile as sf

    from m2i.audio.cli_support import analyze_results

    for i in range(12):
        sf.write(tmp_path / f"k{i:02d}.wav", synth_notes(scale_notes(60 + i % 12, MAJOR_STEPS, bpm=100), duration=4.0), SR)
    records = analyze_results(sorted(tmp_path.glob("*.wav")), workers=2)
    first = next(records)
    workers = [c for c in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    assert workers, "no worker processes"
    for w in workers:
        w.kill()
    rest = list(records)
    assert [r["file"] for r in [first, *rest]] == [str(p) for p in sorted(tmp_path.glob("*.wav"))]
    assert all("features" in r for r in rest), [r.get("error") for r in rest]


def _block_chords(chords, *, bpm: float = 80.0, beats_each: int = 2):
    """[(midi, ...), ...] as block chords, ``beats_each`` beats each, with the bass an octave down."""
    beat = 60.0 / bpm
    notes, t = [], 0.2
    for ch in chords:
        for k in range(beats_each):  # re-struck on every beat, so the tracker finds the beat
            s, e = t + k * beat, t + (k + 1) * beat * 0.97
            notes += [(s, e, p) for p in ch] + [(s, e, ch[0] - 12)]
        t += beats_each * beat
    return notes


def test_chord_labels_and_roman_numerals_follow_a_progression():
    # G major: I vi IV V I, two beats each at 80 BPM, plus a final tonic
    prog = [(55, 59, 62), (52, 55, 59), (48, 52, 55), (50, 54, 57), (55, 59, 62)]
    y = synth_notes(_block_chords(prog), duration=8.0)
    out = analyze_clip(y, 16000)
    f = out["features"]
    assert (f["key"], f["tonality"]) == ("G", "major")
    truth = ["G:maj", "E:min", "C:maj", "D:maj", "G:maj"]
    span = 2 * 60.0 / 80.0
    hits = 0
    for i, lab in enumerate(truth):
        mid = 0.2 + (i + 0.5) * span
        got = [c for a, b, c in f["chords"] if a <= mid < b]
        hits += got == [lab]
    assert hits >= 4, f["chords"]
    assert f["harmonic_progression"]["roman"][:4] == ["I", "vi", "IV", "V"]


def test_chord_roots_are_spelled_in_the_key_and_no_segment_is_a_sliver():
    """In Bb major the chords are Bb, Eb and F (they used to read A#:maj, D#:maj); a chord
    segment of a frame or none at the clip's edges ([10.0, 10.0, ...]) is merged away."""
    prog = [(58, 62, 65), (63, 67, 70), (65, 69, 72), (58, 62, 65)] * 2  # Bb: I IV V I
    f = analyze_clip(synth_notes(_block_chords(prog, bpm=100), duration=10.0))["features"]
    assert (f["key"], f["tonality"]) == ("Bb", "major")
    labels = {c for _, _, c in f["chords"]}
    assert {"Bb:maj", "Eb:maj", "F:maj"} <= labels and not any("#" in c for c in labels), f["chords"]
    assert all(b - a >= 0.05 for a, b, _ in f["chords"]), f["chords"]
    assert f["harmonic_progression"]["roman"][:4] == ["I", "IV", "V", "I"]
    assert features.root_names("C", "major")[8] == "Ab" and features.root_names("C", "minor")[11] == "B"


@pytest.mark.parametrize("kind", ["learned", "binary"])
def test_the_template_chord_models_stay_selectable(kind):
    prog = [(55, 59, 62), (52, 55, 59), (48, 52, 55), (50, 54, 57), (55, 59, 62)]  # G: I vi IV V I
    y = synth_notes(_block_chords(prog), duration=8.0)
    f = analyze_clip(y, 16000, settings={"chord_templates": kind})["features"]
    span = 2 * 60.0 / 80.0
    for i, lab in enumerate(["G:maj", "E:min", "C:maj", "D:maj", "G:maj"]):
        mid = 0.2 + (i + 0.5) * span
        assert [c for a, b, c in f["chords"] if a <= mid < b] == [lab], (kind, f["chords"])
    with pytest.raises(ValueError, match="chord_templates"):
        analyze_clip(y, 16000, settings={"chord_templates": "nnls"})


def test_key_profiles_are_selectable():
    prog = [(57, 60, 64), (50, 53, 57), (52, 56, 59), (57, 60, 64)]  # A minor: i iv V i
    y = synth_notes(_block_chords(prog), duration=7.0)
    # default (Temperley spread over partials), and the earlier plain Albrecht-Shanahan + bass
    for settings in (None, {"key_profile": "albrecht", "key_profile_harmonics": 0.0, "key_bass_weight": 0.5}):
        f = analyze_clip(y, 16000, settings=settings)["features"]
        assert (f["key"], f["tonality"]) == ("A", "minor"), settings


def _a_minor_ending_on_a_picardy_third() -> np.ndarray:
    """A minor: iv V i VI iv V I, ending with a Picardy third (a major tonic chord, as Bach's minor
    chorales end). Its pitch classes alone point elsewhere; the cadences do not."""
    def triad(root, quality, base=48):
        return (base + root, base + root + (4 if quality == "maj" else 3), base + root + 7)

    prog = [triad(2, "min"), triad(4, "maj"), triad(9, "min"), triad(5, "maj"), triad(2, "min"), triad(4, "maj"),
            triad(9, "maj")]
    return synth_notes(_block_chords(prog), duration=11.0)


def test_the_chord_progression_decides_the_key_where_pitch_classes_mislead():
    y = _a_minor_ending_on_a_picardy_third()
    f = analyze_clip(y, 16000)["features"]
    assert (f["key"], f["tonality"]) == ("A", "minor")
    assert f["harmonic_progression"]["roman"][:7] == ["iv", "V", "i", "VI", "iv", "V", "I"]
    profile_only = analyze_clip(y, 16000, settings={"key_chord_weight": 0.0})["features"]
    assert (profile_only["key"], profile_only["tonality"]) != ("A", "minor")
    assert f["confidence"]["key"] > profile_only["confidence"]["key"]


def test_the_key_model_can_be_counted_on_other_pieces():
    """estimate_key takes the chord statistics as tables (benchmarks cross-fit them on halves of
    the corpus): the shipped counts passed as tables give the shipped answer, and statistics that
    know no progression (every count equal) leave the Picardy-third cadence in A minor to the
    pitch classes, which point elsewhere."""
    from m2i.audio.key_model import CHORD_COUNTS, TRANSITION_COUNTS

    a = features.prepare(_a_minor_ending_on_a_picardy_third())
    obs = features.chord_observations(a, features.estimate_beats(a)["beat_frames"])
    shipped = features.estimate_key(a, obs, tables=features.key_model_tables(CHORD_COUNTS, TRANSITION_COUNTS))
    default = features.estimate_key(a, obs)
    assert (shipped["key"], shipped["mode"]) == (default["key"], default["mode"]) == ("A", "minor")
    assert np.array_equal(shipped["scores"], default["scores"])
    flat = {m: np.zeros(24) for m in ("major", "minor")}
    no_progressions = features.estimate_key(
        a, obs, tables=features.key_model_tables(flat, {m: np.zeros((2, 24, 24)) for m in ("major", "minor")}))
    assert (no_progressions["key"], no_progressions["mode"]) != ("A", "minor")


def test_drums_and_noise_get_no_key_or_melody_confidence():
    """Drums and noise fit no key profile and carry no melody: what they are given must not look
    trustworthy (a drum loop used to get "Ab major" at 0.7, white noise a melody at 1.0), while
    music keeps its confidence."""
    rng = np.random.default_rng(3)
    noise = (0.1 * rng.standard_normal(160000)).astype(np.float32)
    for pcm in (drum_loop(120), noise):
        conf = analyze_clip(pcm)["features"]["confidence"]
        assert conf["key"] < 0.15 and conf["melody_contour"] < 0.15, conf
    cadences = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)] * 2  # I IV V I in C
    f = analyze_clip(synth_notes(_block_chords(cadences), duration=10.0))["features"]
    assert (f["key"], f["tonality"]) == ("C", "major") and f["confidence"]["key"] > 0.3
    assert f["confidence"]["melody_contour"] > 0.8


def test_the_llm_is_not_told_a_key_or_melody_that_drums_do_not_have():
    """What m2i measured at confidence ~0 is not stated: the prompt about a drum loop used to say
    "key: Ab, tonality: major, melody contour: ascending, harmonic progression: I-V" and carry an
    ABC of stray notes, and the alignment score held the prompts to that major key."""
    from m2i.prompts.template import compact_user_message, user_message
    from m2i.scoring.music import expectations, verbalize

    out = analyze_clip(drum_loop(120))
    f = out["features"]
    assert f["key"] and f["harmonic_progression"]["text"] and out["abc"]  # still measured and stored
    for message in (user_message(f, out["abc"]), compact_user_message(f)):
        assert "tempo: 120 BPM" in message
        for absent in ("key:", "tonality:", "melody", "harmon", "ABC", "X:1"):
            assert absent not in message, (absent, message)
    assert expectations(f)["mode"] is None and not verbalize(f).startswith("Music in")
    # music keeps everything
    cadences = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)] * 2
    music = analyze_clip(synth_notes(_block_chords(cadences), duration=10.0))
    message = user_message(music["features"], music["abc"])
    for present in ("key: C", "tonality: major", "melody contour:", "harmonic progression:", "X:1"):
        assert present in message, (present, message)


def test_a_solo_line_is_not_told_a_chord_progression():
    """A melody played alone has no chords: its "progression" was read from the melody's own notes
    and partials (a violin's fifth partial made an A-minor tune's A a major chord, "I" in A minor),
    and the LLM was told it. Over block chords the same melody keeps its progression."""
    from m2i.audio.features import accompaniment, harmony_clarity, melody_track, prepare
    from m2i.prompts.template import user_message

    tune = [(0.2 + 0.375 * i, 0.2 + 0.375 * (i + 0.9), p) for i, p in
            enumerate([69, 71, 72, 69, 64, 69, 71, 69, 72, 74, 76, 72, 71, 69, 68, 69] * 2) if 0.2 + 0.375 * i < 9.8]
    solo = synth_notes(tune, duration=10.0)
    out = analyze_clip(solo)
    f = out["features"]
    assert f["chords"] and f["harmonic_progression"]["text"]  # still measured and stored
    assert f["confidence"]["harmonic_progression"] == 0.0 and f["confidence"]["key"] > 0.3
    message = user_message(f, out["abc"])
    assert "harmonic progression" not in message and "key: A" in message and "X:1" in message
    accompanied = solo + 0.5 * synth_notes(_block_chords([(57, 60, 64), (52, 56, 59)] * 5, bpm=80), duration=10.0)
    a = prepare(solo)
    assert harmony_clarity(accompaniment(a, melody_track(a))) == 0.0
    g = analyze_clip(accompanied)["features"]
    assert g["confidence"]["harmonic_progression"] > 0.3
    assert "harmonic progression:" in user_message(g, "")


def test_a_click_track_has_no_melody_and_a_held_tone_a_static_one():
    """With no note there is no melody (a click track had a "static" melody at a constant 0.2);
    one held tone is a static melody, said with confidence."""
    from m2i.features import summarize

    clicks = np.zeros(10 * SR, np.float32)
    clicks[(np.arange(0.0, 10.0, 0.5) * SR).astype(int)] = 0.9
    f = analyze_clip(clicks)["features"]
    assert f["confidence"]["melody_contour"] == 0.0 and summarize(f)["melody_contour"] == ""
    assert f["tempo"] == pytest.approx(120.0, abs=1.0)
    tone = analyze_clip(synth_notes([(0.2, 9.8, 69)], duration=10.0))["features"]
    assert tone["melody_contour"]["shape"] == "static" and tone["confidence"]["melody_contour"] > 0.5
    assert summarize(tone)["melody_contour"].startswith("static")


def test_a_held_chord_has_no_tempo_to_tell():
    """A chord held for 10 s has no beat: it used to read 52 BPM at confidence 0.50 and a metre,
    and the LLM was told both. Music with a beat keeps them (see the drum loop above)."""
    from m2i.prompts.template import user_message

    t = np.arange(10 * SR) / SR
    drone = sum(np.sin(2 * np.pi * f * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.13 * k * t))
                for k, f in enumerate((220.0, 277.2, 329.6), 1))
    for y in (synth_notes([(0.0, 9.9, p) for p in (57, 60, 64)], duration=10.0), (0.2 * drone).astype(np.float32)):
        out = analyze_clip(y)
        f = out["features"]
        assert f["confidence"]["tempo"] == 0.0 and f["confidence"]["time_signature"] == 0.0, f["confidence"]
        message = user_message(f, out["abc"])
        assert "tempo:" not in message and "time signature:" not in message, message
        assert "dynamic intensity:" in message


def test_sound_with_onsets_but_no_pulse_has_no_tempo_to_tell():
    """Noise and notes at random times have plenty of onsets but no pulse: they used to read a
    tempo (50-180 BPM at confidence up to 1.0) and a metre, and the LLM was told both. The same
    notes on a steady beat keep theirs. Random times sometimes line up by chance (about one draw
    in eight stands 3 standard deviations above chance), so the draws are counted."""
    from m2i.prompts.template import user_message

    rng = np.random.default_rng(5)
    brown = np.cumsum(rng.standard_normal(10 * SR))
    brown -= np.convolve(brown, np.ones(4000) / 4000, mode="same")
    out = analyze_clip((0.3 * brown / np.abs(brown).max()).astype(np.float32))
    assert out["features"]["confidence"]["tempo"] < 0.1, out["features"]["confidence"]
    message = user_message(out["features"], out["abc"])
    assert "tempo:" not in message and "time signature:" not in message, message
    told = 0
    for seed in range(8):
        r = np.random.default_rng(seed)
        pitches = r.integers(57, 81, 30)
        at_random = [(t, t + d, int(p)) for t, d, p in zip(np.sort(r.uniform(0.0, 9.5, 30)), r.uniform(0.1, 0.5, 30), pitches)]
        told += analyze_clip(synth_notes(at_random, duration=10.0))["features"]["confidence"]["tempo"] >= 0.1
        f = analyze_clip(synth_notes([(0.5 * k, 0.5 * k + 0.3, int(p)) for k, p in enumerate(pitches[:19])],
                                     duration=10.0))["features"]
        assert f["tempo"] == pytest.approx(120.0, abs=2.0) and f["confidence"]["tempo"] > 0.3, (seed, f["confidence"])
    assert told <= 2, told


def test_a_pop_loop_over_loud_drums_keeps_a_trustworthy_key():
    """Pads voice-led through V-vi-IV-I in C under a drum kit three times as loud, ending on IV: the
    key is right, and its confidence says so (0.27-0.31 before the tonal clarity stopped reading
    the final bass, which sits on F here)."""
    V, vi, IV, tonic = (62, 67, 71), (60, 64, 69), (60, 65, 69), (60, 64, 67)
    for bpm in (100.0, 120.0):
        bar, notes = 240.0 / bpm, []
        for k, ch in enumerate([V, vi, IV, tonic, V, vi, IV]):
            notes += [(k * bar, (k + 0.98) * bar, p) for p in ch] + [(k * bar, (k + 0.98) * bar, ch[0] - 24)]
        y = synth_notes(notes, duration=10.0) + 3.0 * drum_loop(bpm, seed=1)
        f = analyze_clip((0.5 * y / np.abs(y).max()).astype(np.float32))["features"]
        assert (f["key"], f["tonality"]) == ("C", "major")
        assert f["confidence"]["key"] > 0.5, (bpm, f["confidence"])


def test_beat_times_fall_on_the_note_onsets():
    bpm = 100.0
    beat = 60.0 / bpm
    onsets = [0.3 + i * beat for i in range(15)]
    notes = [(t, t + beat * 0.8, p) for t, p in zip(onsets, [60, 64, 67, 72, 67, 64] * 3)]
    f = analyze_clip(synth_notes(notes, duration=10.0))["features"]
    on = np.asarray(onsets)
    err = [float(np.min(np.abs(on - b))) for b in f["beats"]]
    assert len(err) >= 12
    # within 1.5 analysis frames (16 ms each); these instant sine attacks read a little early,
    # FluidSynth's instruments (slower attacks) within 3 ms in the median (benchmarks)
    assert np.median(err) <= 0.025



def test_the_beat_tracker_gives_librosas_beats_without_its_start_up_cost(tmp_path):
    """m2i's own copy of librosa's dynamic-programming beat tracker (features.track_beats) finds the
    same frames on envelopes of every kind (sparse, dense, silent at either end, 45-200 BPM), and a
    new process analysing a clip no longer imports librosa.beat, whose smoothing kernel is compiled
    afresh in every process (2.9 s of the 5-8 s `m2i analyze` took on one file)."""
    import librosa

    rng = np.random.default_rng(7)
    for k in range(150):
        n = int(rng.integers(100, 1300))
        env = (rng.random(n) ** 4).astype(np.float32)
        env[rng.random(n) < rng.uniform(0.1, 0.95)] = 0
        if k % 5 == 0:
            env[: int(rng.integers(1, 120))] = 0
        if k % 7 == 0:
            env[-int(rng.integers(1, 120)):] = 0
        bpm = float(rng.uniform(45, 200))
        _, ref = librosa.beat.beat_track(onset_envelope=env, sr=SR, hop_length=features.HOP, bpm=bpm,
                                         tightness=400, trim=False, units="frames")
        assert np.array_equal(features.track_beats(env, bpm, tightness=400.0), ref), (k, n, bpm)
    assert features.track_beats(np.zeros(500, dtype=np.float32), 120.0).size == 0

    np.save(clip := tmp_path / "clip.npy", synth_notes([(0.5 * i, 0.5 * i + 0.4, 60 + i % 8) for i in range(19)], duration=10.0))
    code = ("import sys, numpy as np; from m2i.audio.analyze import analyze_clip; "
            f"f = analyze_clip(np.load({str(clip)!r}))['features']; "
            "print(round(f['tempo']), 'librosa.beat' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["120", "False"], out.stderr


def _bowed(notes, *, attack_s: float = 0.08, duration: float = 9.0) -> np.ndarray:
    """Notes with a slow linear attack (bowed or blown), four harmonics, at 16 kHz."""
    y = np.zeros(int(duration * SR))
    for s, e, p in notes:
        t = np.arange(int((e - s) * SR)) / SR
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        tone = sum(w * np.sin(2 * np.pi * k * f0 * t) for k, w in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)))
        env = np.minimum(1.0, t / attack_s) * np.minimum(1.0, (t[-1] - t + 1e-3) / 0.02)
        i = int(s * SR)
        y[i : i + t.size] += (tone * env)[: y.size - i]
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def test_melody_note_onsets_stay_near_the_note_ons():
    notes = scale_notes(62, [2, 2, 1, 2, 2, 2, 1, -1, -2, -2, -2, -1, -2, -2], bpm=100)
    on = np.asarray([s for s, _, _ in notes])
    # a slow (bowed) attack and pretty_midi's instant one: the latency compensation for sampled
    # bowed/blown instruments (melody_latency_s) must not push either out of a 50 ms tolerance
    for y, tol in ((_bowed(notes, attack_s=0.2), 0.025), (synth_notes(notes, duration=9.0), 0.05)):
        got = analyze_clip(y)["features"]["melody_notes"]
        assert len(got) >= 12
        lag = float(np.median([a - on[np.argmin(np.abs(on - a))] for a, _, _ in got]))
        assert abs(lag) <= tol, lag


def test_a_window_cut_from_inside_a_song_reads_its_key_without_the_final_bass(tmp_path):
    """The key's final-bass cue assumes a clip ends on its piece's cadence. A window cut from inside
    a longer recording ends wherever the cut falls: the second 10 s of this I-V-vi-IV loop in C ends
    on the IV chord's bass and was read F major. A window with more of the file after it, and a row
    of the annotation file (a slice of a track), are now read without the cue; the file's last
    window, and a clip given alone, keep it, as does a weight the settings name."""
    import soundfile as sf

    from m2i.audio.analyze import clip_settings, window_record
    from m2i.audio.datasets import ends_inside_recording, load_dataset
    from m2i.stages import _analyze_job

    chords = [((60, 64, 67), 48), ((59, 62, 67), 43), ((60, 64, 69), 45), ((60, 65, 69), 41)]  # I V vi IV, roots
    bar, notes = 240.0 / 90.0, []
    for k in range(12):
        ch, root = chords[k % 4]
        notes += [(k * bar, (k + 0.98) * bar, p) for p in ch]
        notes += [(k * bar + j * bar / 4, k * bar + (j + 0.9) * bar / 4, root) for j in range(4)]
    song = tmp_path / "loop.wav"
    sf.write(song, synth_notes(notes, duration=30.0), SR)
    clips = list(load_dataset(song))
    assert [c.meta["file_duration_s"] for c in clips] == [30.0] * 3
    assert [ends_inside_recording(c.meta, c.pcm.size / SR) for c in clips] == [True, True, False]
    records = [window_record(song, c, None, None) for c in clips]  # m2i analyze --windows
    assert [(r["features"]["key"], r["features"]["tonality"]) for r in records] == [("C", "major")] * 3
    assert records[1]["features"] == analyze_clip(clips[1].pcm, settings={"key_final_weight": 0.0})["features"]
    assert records[2]["features"] == analyze_clip(clips[2].pcm)["features"]  # it ends where the file does
    # the run's analysis stage reads a sample's meta the same way: a window, a slice of a track
    assert _analyze_job(clips[1].pcm, SR, {}, clips[1].meta)["features"] == records[1]["features"]
    track_slice = {"track_name": "Loop", "artist_name": ["A"], "slice_pos": 3}
    assert _analyze_job(clips[1].pcm, SR, {}, track_slice)["features"] == records[1]["features"]
    assert clip_settings({"key_final_weight": 0.3}, clips[1].meta, 10.0) == {"key_final_weight": 0.3}
