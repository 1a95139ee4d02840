"""ABC notation from a transcribed melody.

Notes ``(onset_s, offset_s, midi)`` are placed on the detected beat grid (beat times from the
tracker, extrapolated at the tempo outside them), quantised to sixteenths (simple metres) or
eighths (6/8), split at bar lines with ties, and spelled in the detected key (:func:`key_spelling`).
Every accidental that differs from the key signature, or follows an altered note of the same letter
in the bar, is written explicitly, so the text reads the same under every ABC reader's accidental
rules.

The header always has X, T, M, L, Q and K, with K spelled ``K:F#m`` / ``K:Bb`` / ``K:Ebm``.
"""

from __future__ import annotations

import re

import numpy as np

LETTERS = "CDEFGAB"
NATURAL_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SHARP_ORDER = "FCGDAEB"
FLAT_ORDER = "BEADGCF"
MAJOR_FIFTHS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7, "Gb": -6, "Db": -5,
                "Ab": -4, "Eb": -3, "Bb": -2, "F": -1, "Cb": -7}
MINOR_FIFTHS = {"A": 0, "E": 1, "B": 2, "F#": 3, "C#": 4, "G#": 5, "D#": 6, "A#": 7, "Eb": -6, "Bb": -5,
                "F": -4, "C": -3, "G": -2, "D": -1, "Ab": -7}
METERS = {"2/4": (8, 4, 1), "3/4": (12, 4, 1), "4/4": (16, 4, 1), "6/8": (12, 6, 2)}
"""metre -> (sixteenths per bar, sixteenths per tracked beat, quantisation step in sixteenths)"""
NOTATABLE = (16, 12, 8, 6, 4, 3, 2, 1)
ACCIDENTALS = {2: "^^", 1: "^", 0: "=", -1: "_", -2: "__"}


def key_field(tonic: str, mode: str) -> str:
    """ABC ``K:`` value: ``"F#m"``, ``"Bb"``, ``"Ebm"``.

    >>> key_field("F#", "minor"), key_field("Bb", "major")
    ('F#m', 'Bb')
    """
    if not re.fullmatch(r"[A-G][#b]?", tonic):
        raise ValueError(f"tonic {tonic!r} is not a spelled pitch name like 'F#' or 'Bb'")
    return tonic + ("m" if mode == "minor" else "")


def _fifths(tonic: str, mode: str) -> int:
    """Sharps (> 0) or flats (< 0) in the key signature; an unknown tonic reads as C major / A minor."""
    return (MINOR_FIFTHS if mode == "minor" else MAJOR_FIFTHS).get(tonic, 0)


def key_alterations(tonic: str, mode: str) -> dict[str, int]:
    """Alteration (-1, 0, +1) of each letter in the key signature."""
    fifths = _fifths(tonic, mode)
    alt = {letter: 0 for letter in LETTERS}
    if fifths > 0:
        for letter in SHARP_ORDER[:fifths]:
            alt[letter] = 1
    elif fifths < 0:
        for letter in FLAT_ORDER[: -fifths]:
            alt[letter] = -1
    return alt


def key_spelling(tonic: str, mode: str) -> dict[int, tuple[str, int]]:
    """``(letter, alteration)`` of each pitch class in a key, as a musician spells it.

    In order of precedence: the key signature's seven notes; in minor, the raised 6th and 7th
    degrees (F# and E natural in G minor, B natural in C minor, E# in F# minor, F## in G# minor);
    the natural of a letter the signature alters (F natural in G major, E natural in Bb major);
    and the rest, all black keys, as sharps in sharp keys (C major and A minor included) and flats
    in flat keys. So no Cb, Fb, E#, B# or double accidental unless the signature or a raised degree
    calls for it.

    >>> key_spelling("C", "minor")[11], key_spelling("G", "major")[5], key_spelling("F#", "minor")[5]
    (('B', 0), ('F', 0), ('E', 1))
    """
    alt = key_alterations(tonic, mode)
    spelling = {(NATURAL_PC[letter] + alt[letter]) % 12: (letter, alt[letter]) for letter in LETTERS}
    if mode == "minor":
        first = LETTERS.index(tonic[0])
        for degree in (5, 6):
            letter = LETTERS[(first + degree) % 7]
            spelling[(NATURAL_PC[letter] + alt[letter] + 1) % 12] = (letter, alt[letter] + 1)
    for letter in LETTERS:
        spelling.setdefault(NATURAL_PC[letter], (letter, 0))
    sharp = _fifths(tonic, mode) >= 0
    for pc in range(12):
        if pc not in spelling:  # a black key: the letter below sharpened or the letter above flattened
            letter = next(x for x in LETTERS if NATURAL_PC[x] == (pc - 1 if sharp else pc + 1) % 12)
            spelling[pc] = (letter, 1 if sharp else -1)
    return spelling


def spell(midi: int, spelling: dict[int, tuple[str, int]]) -> tuple[str, int, int]:
    """Spell a MIDI pitch as ``(letter, alteration, octave)`` with a :func:`key_spelling` table."""
    letter, alt = spelling[midi % 12]
    octave = (midi - NATURAL_PC[letter] - alt) // 12 - 1
    return letter, alt, int(octave)


def _pitch_text(letter: str, octave: int) -> str:
    if octave >= 5:
        return letter.lower() + "'" * (octave - 5)
    return letter + "," * (4 - octave)


def _split(units: int) -> list[int]:
    out = []
    while units > 0:
        for n in NOTATABLE:
            if n <= units:
                out.append(n)
                units -= n
                break
    return out


def bar_starts(beats: list[float] | np.ndarray, meter: str, downbeat: int) -> list[float]:
    """The tracked beats that start a bar, where :func:`notes_to_abc` puts its bar lines: every
    second beat from ``downbeat`` in 2/4 and 6/8 (whose tracked beat is the dotted quarter), every
    third in 3/4, every fourth in 4/4.

    >>> bar_starts([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "3/4", downbeat=1)
    [0.5, 2.0]
    """
    if meter not in METERS:
        raise ValueError(f"meter {meter!r} must be one of {', '.join(METERS)}")
    bar_units, per_beat, _ = METERS[meter]
    n = bar_units // per_beat
    return [float(t) for t in list(beats)[downbeat % n::n]]


def _to_beats(times: np.ndarray, beats: np.ndarray, tempo: float) -> np.ndarray:
    """Map seconds to (fractional) beat indices on the tracked grid, linear outside it."""
    period = 60.0 / tempo
    if beats.size < 2:
        return times / period
    idx = np.arange(beats.size, dtype=float)
    out = np.interp(times, beats, idx)
    out = np.where(times < beats[0], (times - beats[0]) / period, out)
    out = np.where(times > beats[-1], beats.size - 1 + (times - beats[-1]) / period, out)
    return out


def notes_to_abc(
    notes: list[tuple[float, float, int]],
    *,
    beats: list[float] | np.ndarray,
    tempo: float,
    meter: str,
    tonic: str,
    mode: str,
    downbeat: int = 0,
    title: str = "m2i transcription",
) -> str:
    """Write a melody as ABC.

    Parameters
    ----------
    notes : list of (onset_s, offset_s, midi)
        The transcribed melody, in time order.
    beats : array [shape=(n,)]
        Beat times in seconds.
    tempo : float > 0
        Beats per minute of the tracked beat.
    meter : {"2/4", "3/4", "4/4", "6/8"}
    tonic : str
        Spelled tonic, e.g. ``"F#"``.
    mode : {"major", "minor"}
    downbeat : int
        Index of the first tracked beat that starts a bar.
    title : str

    Returns
    -------
    str
        A complete tune (header and body) ending with a newline.

    Examples
    --------
    >>> abc = notes_to_abc([(0.0, 0.5, 60), (0.5, 1.0, 64)], beats=[0, 0.5, 1, 1.5], tempo=120,
    ...                    meter="2/4", tonic="C", mode="major")
    >>> abc.splitlines()[-1]
    'C4 E4 |]'
    """
    if meter not in METERS:
        raise ValueError(f"meter {meter!r} must be one of {', '.join(METERS)}")
    bar_units, per_beat, step = METERS[meter]
    kalt = key_alterations(tonic, mode)
    spelling = key_spelling(tonic, mode)
    bt = np.asarray(beats, dtype=float)
    q = "3/8" if meter == "6/8" else "1/4"
    header = [
        "X:1",
        f"T:{title}",
        f"M:{meter}",
        "L:1/16",
        f"Q:{q}={int(round(tempo))}",
        f"K:{key_field(tonic, mode)}",
    ]
    events: list[tuple[int, int, int]] = []  # (start_unit, end_unit, midi)
    if notes:
        ons = _to_beats(np.array([n[0] for n in notes]), bt, tempo) - downbeat
        offs = _to_beats(np.array([n[1] for n in notes]), bt, tempo) - downbeat
        starts = np.round(ons * per_beat / step).astype(int) * step  # units from the downbeat, on the grid
        # the bar of the first note as written: a note a hair before the first beat (the melody's
        # latency compensation) rounds onto the beat and must not open a bar of rests before it
        first_bar = int(np.floor(starts.min() / bar_units))
        origin = first_bar * bar_units
        for start, off, (_, _, midi) in zip(starts, offs, notes):
            s = max(0, int(start) - origin)
            e = int(round(off * per_beat / step)) * step - origin
            if e <= s:
                e = s + step
            if events and s < events[-1][1]:  # overlap: the earlier note ends where this one starts
                prev = events[-1]
                if s <= prev[0]:
                    continue  # both quantised to the same slot: keep the first
                events[-1] = (prev[0], s, prev[2])
            events.append((s, e, midi))
    body_tokens: list[str] = []
    if not events:
        body_tokens = ["z" + str(bar_units), "|]"]
        return "\n".join(header + [" ".join(body_tokens)]) + "\n"
    total = events[-1][1]
    n_bars = int(np.ceil(total / bar_units))
    end = n_bars * bar_units
    # timeline of (start, length, midi or None) segments filling every bar
    segs: list[tuple[int, int, int | None]] = []
    pos = 0
    for s, e, m in events:
        if s > pos:
            segs.append((pos, s - pos, None))
        segs.append((s, e - s, m))
        pos = e
    if pos < end:
        segs.append((pos, end - pos, None))
    lines: list[str] = []
    bar: list[str] = []
    state: dict[tuple[str, int], int] = {}
    altered_letters: set[str] = set()
    bar_index = 0

    def close_bar() -> None:
        nonlocal bar, bar_index
        lines.append(" ".join(bar))
        bar = []
        bar_index += 1
        state.clear()
        altered_letters.clear()

    for start, length, midi in segs:
        cur = start
        remaining = length
        while remaining > 0:
            in_bar = bar_units - (cur % bar_units)
            take = min(remaining, in_bar)
            pieces = _split(take)
            for i, n in enumerate(pieces):
                dur = "" if n == 1 else str(n)
                if midi is None:
                    bar.append(f"z{dur}")
                else:
                    letter, alt, octave = spell(int(midi), spelling)
                    cur_alt = state.get((letter, octave), kalt[letter])
                    acc = ""
                    if alt != cur_alt or letter in altered_letters:
                        acc = ACCIDENTALS[alt]
                        state[(letter, octave)] = alt
                        if alt != kalt[letter]:
                            altered_letters.add(letter)
                    tie = "-" if (i < len(pieces) - 1 or remaining - take > 0) else ""
                    bar.append(f"{acc}{_pitch_text(letter, octave)}{dur}{tie}")
            cur += take
            remaining -= take
            if cur % bar_units == 0:
                close_bar()
    if bar:
        close_bar()
    body = []
    for i in range(0, len(lines), 4):
        chunk = lines[i : i + 4]
        body.append(" | ".join(chunk) + (" |]" if i + 4 >= len(lines) else " |"))
    return "\n".join(header + body) + "\n"


def abc_notes(abc: str) -> list[tuple[float, float, int]]:
    """Parse ABC with music21 and return ``(onset_qL, duration_qL, midi)`` of its notes (ties merged).

    Raises
    ------
    ValueError
        When music21 cannot parse the text.
    """
    import music21

    try:
        score = music21.converter.parse(abc, format="abc")
    except Exception as exc:  # music21 raises several unrelated classes
        raise ValueError(f"music21 could not parse the ABC: {exc}") from exc
    out = []
    for n in score.stripTies().flatten().notes:
        if n.isNote:
            out.append((float(n.offset), float(n.quarterLength), int(n.pitch.midi)))
    return out
