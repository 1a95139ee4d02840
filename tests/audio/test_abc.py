"""ABC output: valid headers, correct spelling, and music21 reads back the notes we wrote."""

from __future__ import annotations

import re

import pytest

from m2i.audio.abc import abc_notes, key_field, notes_to_abc
from m2i.audio.features import MAJOR_TONIC, MINOR_TONIC


@pytest.mark.parametrize(
    ("tonic", "mode", "field"),
    [("F#", "minor", "F#m"), ("Bb", "major", "Bb"), ("Eb", "minor", "Ebm"), ("C#", "minor", "C#m"), ("D", "major", "D")],
)
def test_key_field_is_spelled_with_sharps_and_flats(tonic, mode, field):
    assert key_field(tonic, mode) == field


def test_key_field_refuses_abc_accidentals():
    with pytest.raises(ValueError):
        key_field("^F", "minor")


def _grid(n, bpm):
    return [i * 60.0 / bpm for i in range(n)]


def test_round_trip_in_f_sharp_minor_with_accidentals():
    bpm = 100.0
    beat = 60.0 / bpm
    # F# minor: F# G# A B C# D E#(=F) F# -- E# is chromatic (leading note), then a natural E
    pitches = [66, 68, 69, 71, 73, 74, 77, 78, 76, 76, 73, 66]
    notes = [(i * beat, (i + 1) * beat, p) for i, p in enumerate(pitches)]
    abc = notes_to_abc(notes, beats=_grid(16, bpm), tempo=bpm, meter="4/4", tonic="F#", mode="minor")
    assert "K:F#m" in abc and "^F" not in abc.split("K:")[0]
    parsed = abc_notes(abc)
    assert [p for _, _, p in parsed] == pitches
    assert [on for on, _, _ in parsed] == [float(i) for i in range(len(pitches))]


def test_header_fields_and_meter_fill_bars():
    bpm = 90.0
    notes = [(0.0, 0.6667, 67), (0.6667, 2.0, 71), (2.0, 3.3333, 74)]  # quarter, two beats, two beats in 3/4
    abc = notes_to_abc(notes, beats=_grid(8, bpm), tempo=bpm, meter="3/4", tonic="G", mode="major", title="Test")
    head = abc.splitlines()[:6]
    assert [h.split(":")[0] for h in head] == ["X", "T", "M", "L", "Q", "K"]
    assert head[2] == "M:3/4" and head[4] == "Q:1/4=90"
    parsed = abc_notes(abc)
    assert [(on, d, p) for on, d, p in parsed] == [(0.0, 1.0, 67), (1.0, 2.0, 71), (3.0, 2.0, 74)]


def test_notes_across_bar_lines_are_tied():
    bpm = 120.0
    notes = [(0.0, 1.5, 60), (1.5, 3.0, 62)]  # 3 beats + 3 beats in 2/4: ties across bars
    abc = notes_to_abc(notes, beats=_grid(8, bpm), tempo=bpm, meter="2/4", tonic="C", mode="major")
    assert "-" in abc.split("K:C")[1]
    assert [(on, d, p) for on, d, p in abc_notes(abc)] == [(0.0, 3.0, 60), (3.0, 3.0, 62)]


def test_a_note_a_hair_before_the_first_beat_opens_no_bar_of_rests():
    """The melody's onsets are moved back by the pitch track's latency, so the first note of a clip
    can start 30 ms before the first tracked beat; it rounds onto the beat, and the tune must start
    with it, not with a whole bar of rests (bwv26.6's demo clip did)."""
    bpm = 60.0
    notes = [(-0.03, 0.97, 69), (0.97, 1.97, 71), (1.97, 3.97, 72)]
    abc = notes_to_abc(notes, beats=_grid(8, bpm), tempo=bpm, meter="4/4", tonic="A", mode="minor")
    body = abc.splitlines()[-1]
    assert not body.startswith("z"), body
    assert [(on, d, p) for on, d, p in abc_notes(abc)] == [(0.0, 1.0, 69), (1.0, 1.0, 71), (2.0, 2.0, 72)]


def test_six_eight_uses_dotted_quarter_tempo():
    bpm = 60.0  # dotted quarters
    notes = [(i / 3, (i + 1) / 3, 69 + (i % 3)) for i in range(12)]
    abc = notes_to_abc(notes, beats=_grid(6, bpm), tempo=bpm, meter="6/8", tonic="A", mode="minor")
    assert "M:6/8" in abc and "Q:3/8=60" in abc and "K:Am" in abc
    parsed = abc_notes(abc)
    assert len(parsed) == 12 and all(d == 0.5 for _, d, _ in parsed)


def test_empty_melody_is_still_a_valid_tune():
    abc = notes_to_abc([], beats=[0, 1], tempo=60, meter="4/4", tonic="Eb", mode="minor")
    assert "K:Ebm" in abc
    assert abc_notes(abc) == []


def test_every_demo_abc_parses(demo_results):
    for name, (_, out) in demo_results.items():
        abc = out["abc"]
        assert re.search(r"^K:[A-G][#b]?m?$", abc, re.M), name
        assert re.search(r"^Q:(1/4|3/8)=\d+$", abc, re.M), name
        notes = abc_notes(abc)
        assert len(notes) >= 5, name  # bwv26.6's 10 s hold 10 soprano notes, 4 of them repeats tied by the strings
        melody = out["features"]["melody_notes"]
        # every written note is a transcribed one; only notes quantised onto the same slot are merged
        assert {p for _, _, p in notes} <= {p for _, _, p in melody}, name
        assert len(notes) >= 0.6 * len(melody), name


# music21's names of pitch classes 0..11 in each key the key detector reports (K: field as written):
# the signature's notes; in minor the raised 6th and 7th; the natural of a letter the signature alters;
# the remaining black keys sharp in sharp keys, flat in flat keys
SHARPS = "C C# D D# E F F# G G# A A# B"
FLATS = "C D- D E- E F G- G A- A B- B"
SPELLINGS = {
    "C": SHARPS, "G": SHARPS, "D": SHARPS, "A": SHARPS, "E": SHARPS, "B": SHARPS,
    "F#": "C C# D D# E E# F# G G# A A# B",
    "F": FLATS, "Bb": FLATS, "Eb": FLATS, "Ab": FLATS, "Db": FLATS,
    "Am": SHARPS, "Em": SHARPS, "Bm": SHARPS,
    "F#m": "C C# D D# E E# F# G G# A A# B",
    "C#m": "B# C# D D# E F F# G G# A A# B",
    "G#m": "C C# D D# E E# F# F## G# A A# B",
    "Dm": "C C# D E- E F G- G A- A B- B",
    "Gm": "C D- D E- E F F# G A- A B- B",
    "Cm": FLATS, "Fm": FLATS, "Bbm": FLATS,
    "Ebm": "C D- D E- E F G- G A- A B- C-",
}
KEYS = [(t, "major") for t in MAJOR_TONIC] + [(t, "minor") for t in MINOR_TONIC]
ABC_NOTE = re.compile(r"(\^\^|\^|=|__|_)?([A-Ga-g])([,']*)")


def _read_with_bar_accidentals(abc, sig, *, per_octave):
    """MIDI numbers as a reader reads them that carries an accidental to the end of the bar, on the same
    letter in the same octave (ABC 2.1) or in every octave (some older readers); music21 carries none.
    ``sig`` is music21's KeySignature of the tune."""
    import music21

    out, carried = [], {}
    for token in abc.split("\nK:", 1)[1].split("\n", 1)[1].split():
        if token.startswith("|"):
            carried.clear()
        elif m := ABC_NOTE.match(token):
            acc, letter, marks = m.groups()
            octave = (5 if letter.islower() else 4) + marks.count("'") - marks.count(",")
            step = letter.upper()
            where = (step, octave) if per_octave else step
            if acc is not None:
                carried[where] = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}[acc]
            in_sig = sig.accidentalByStep(step)
            out.append(music21.pitch.Pitch(f"{step}{octave}").midi + carried.get(where, in_sig.alter if in_sig else 0))
    return out


@pytest.mark.parametrize(("tonic", "mode"), KEYS, ids=[key_field(t, m) for t, m in KEYS])
def test_every_key_spells_the_twelve_pitch_classes_as_a_musician_does(tonic, mode):
    import music21

    # in eighths: two octaves of the chromatic scale up and down, then each semitone up with its upper
    # note an octave higher; so every pitch class comes after the same letter with another accidental
    # in the bar, in the same octave and in another one
    pitches = list(range(60, 84)) + list(range(83, 59, -1)) + [x for p in range(60, 72) for x in (p, p + 13)]
    notes = [(i * 0.25, (i + 1) * 0.25, p) for i, p in enumerate(pitches)]
    abc = notes_to_abc(notes, beats=_grid(50, 120), tempo=120, meter="4/4", tonic=tonic, mode=mode)
    field = key_field(tonic, mode)
    assert f"\nK:{field}\n" in abc
    score = music21.converter.parse(abc, format="abc").flatten()
    read = [n.pitch for n in score.notes]
    assert [p.midi for p in read] == pitches
    expected = SPELLINGS[field].split()
    assert [p.name for p in read] == [expected[m % 12] for m in pitches]
    # every accidental is written, so readers that carry accidentals through the bar read the same
    sig = score.getElementsByClass("KeySignature")[0]
    for per_octave in (True, False):
        assert _read_with_bar_accidentals(abc, sig, per_octave=per_octave) == pitches


def test_spelling_examples_from_the_audit():
    cases = {("C", "minor", 71): "=B", ("G", "minor", 66): "^F", ("D", "minor", 61): "^C", ("A", "minor", 68): "^G",
             ("G", "major", 65): "=F", ("D", "major", 72): "=c", ("Bb", "major", 64): "=E", ("F#", "minor", 65): "^E"}
    for (tonic, mode, midi), text in cases.items():
        abc = notes_to_abc([(0.0, 0.5, midi)], beats=_grid(4, 120), tempo=120, meter="4/4", tonic=tonic, mode=mode)
        assert abc.splitlines()[-1].startswith(text + "4"), (tonic, mode, abc.splitlines()[-1])
