"""The musical-feature record shared by every stage, and its plain-text views.

A sample's ``features`` column holds one JSON object. m2i's own analysis writes the full form;
rows imported from the earlier system (``m2i import-legacy``) hold plain strings. Every consumer
(prompt template, scorers, report, gallery, TUI) reads features only through :func:`summarize`
and :func:`describe`, so both forms work everywhere.

Full form (written by ``m2i.audio``)::

    {
      "key": "F#", "tonality": "minor",                 # tonic spelled with #/b, mode major|minor
      "key_runner_up": "A major",
      "tempo": 96.0, "beats": [0.41, 1.03, ...],       # BPM, beat times in s
      "time_signature": "3/4",                          # 2/4 | 3/4 | 4/4 | 6/8
      "downbeats": [1.03, 2.89, ...],                   # the beats that start a bar (the ABC's bar lines)
      "mood": {"valence": 0.31, "arousal": 0.72, "words": ["tense", "driving"]},   # each in [0, 1]
      "melody_contour": {"shape": "arch", "range_semitones": 12.0},
      "harmonic_progression": {"roman": ["i", "iv", "V", "i"], "text": "i-iv-V-i"},
      "dynamic_intensity": {"label": "mf", "loudness_db": -18.2, "range_db": 11.5, "trend": "crescendo"},
      "chords": [[0.0, 1.2, "F#:min"], ...],            # beat-synchronous [start_s, end_s, label]
      "melody_notes": [[0.03, 0.14, 66], ...],          # transcribed melody [onset_s, offset_s, MIDI pitch]
      "spectrogram": "optional short text summary of the mel spectrogram",
      "confidence": {"key": 0.8, "tonality": 0.8, "tempo": 0.9, "time_signature": 0.6, "mood": 0.5,
                     "melody_contour": 0.7, "harmonic_progression": 0.6, "dynamic_intensity": 0.9}
    }

Legacy form: the same eight keys with string values (``"mood": "upbeat, dark"``).
"""

from __future__ import annotations

from typing import Any

FEATURE_NAMES = (
    "key",
    "tonality",
    "tempo",
    "time_signature",
    "mood",
    "melody_contour",
    "harmonic_progression",
    "dynamic_intensity",
)


UNSURE_BELOW = 0.1
"""A key, melody or tempo measured with a confidence under this is not stated: :func:`summarize`
leaves it out, and with it what rests on it (the tonality and the Roman numerals on the key; the
ABC on the melody; the time signature on the tempo, :func:`unsure`). m2i gives drum loops and noise
0.00 for the key and the melody, so without this the LLM was told "key: Ab major, melody ascending,
harmony I-V" about a drum kit, and the alignment score held prompts to it; a chord held for 10 s
gets 0.00 for the tempo (it had read 52 BPM). Of the evaluation set's 263 key clips and the 292
pop-style analyses of ``bench_meter.py`` with a key, 1 and 3 have the key under 0.1; no clip of
either set has the melody under 0.1 (lowest 0.72 and 0.48). Noise and notes at random times get
0.00 for the tempo too (no pulse); music rarely does: 21 of 836 analyses of the evaluation set, the
pop-style renders (as rendered and cut mid-bar) and 200 folk songs, 14 of them with a wrong tempo.
A solo line gets 0 for the harmonic progression (no chords sound): 30 of the evaluation set's 32
solo folk melodies and 180 of the 200 folk songs, 1 of its 134 chorale clips, none of the pop-style
renders or the melodies over an accompaniment."""

_RESTS_ON = {"key": ("key",), "tonality": ("key",), "harmonic_progression": ("key", "harmonic_progression"),
             "melody_contour": ("melody_contour",), "tempo": ("tempo",), "time_signature": ("tempo",)}


def unsure(features: dict[str, Any] | None, name: str) -> bool:
    """True when ``name`` rests on a key, melody, tempo or chords that m2i measured with a
    confidence under :data:`UNSURE_BELOW` (``"melody_contour"`` also stands for the ABC
    transcription; the harmonic progression rests on the key and on chords being heard at all: a
    solo line gets 0 for it). Features without confidences (the legacy form) are never unsure.

    Examples
    --------
    >>> unsure({"key": "Ab", "harmonic_progression": "I-V", "confidence": {"key": 0.0}}, "harmonic_progression")
    True
    """
    conf = (features or {}).get("confidence")
    if not isinstance(conf, dict):
        return False
    return any(isinstance(v := conf.get(basis), (int, float)) and v < UNSURE_BELOW for basis in _RESTS_ON.get(name, ()))


def stated_abc(features: dict[str, Any] | None, abc: str | None) -> str:
    """The ABC to show or send beside ``features``: ``abc``, or ``""`` when the melody it
    transcribes was not heard (:func:`unsure`).

    Examples
    --------
    >>> stated_abc({"confidence": {"melody_contour": 0.0}}, "X:1")
    ''
    """
    return "" if unsure(features, "melody_contour") else abc or ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def summarize(features: dict[str, Any] | None) -> dict[str, str]:
    """Return the eight features as short human-readable strings.

    Parameters
    ----------
    features : dict or None
        A sample's ``features`` object, full or legacy form.

    Returns
    -------
    dict[str, str]
        One entry per name in :data:`FEATURE_NAMES`; missing features, and those resting on a key,
        melody or tempo measured too unsure to state (:func:`unsure`), are ``""``.

    Examples
    --------
    >>> summarize({"key": "F#", "tonality": "minor", "tempo": 96.0})["tempo"]
    '96 BPM'
    """
    f = features or {}
    out: dict[str, str] = {}
    out["key"] = _text(f.get("key"))
    out["tonality"] = _text(f.get("tonality"))
    tempo = f.get("tempo")
    out["tempo"] = f"{float(tempo):.0f} BPM" if isinstance(tempo, (int, float)) else _text(tempo)
    out["time_signature"] = _text(f.get("time_signature"))

    mood = f.get("mood")
    if isinstance(mood, dict):
        words = _text(mood.get("words"))
        nums = []
        if mood.get("valence") is not None:
            nums.append(f"valence {float(mood['valence']):.2f}")
        if mood.get("arousal") is not None:
            nums.append(f"arousal {float(mood['arousal']):.2f}")
        out["mood"] = f"{words} ({', '.join(nums)})" if nums and words else (words or ", ".join(nums))
    else:
        out["mood"] = _text(mood)

    contour = f.get("melody_contour")
    if isinstance(contour, dict):
        shape = _text(contour.get("shape"))
        rng = contour.get("range_semitones")
        out["melody_contour"] = f"{shape}, range {float(rng):.0f} semitones" if rng is not None else shape
    else:
        out["melody_contour"] = _text(contour)

    prog = f.get("harmonic_progression")
    if isinstance(prog, dict):
        out["harmonic_progression"] = _text(prog.get("text") or "-".join(prog.get("roman") or []))
    else:
        out["harmonic_progression"] = _text(prog)

    dyn = f.get("dynamic_intensity")
    if isinstance(dyn, dict):
        parts = [_text(dyn.get("label"))]
        if dyn.get("loudness_db") is not None:
            parts.append(f"{float(dyn['loudness_db']):.0f} dB")
        if dyn.get("trend"):
            parts.append(_text(dyn.get("trend")))
        out["dynamic_intensity"] = ", ".join(p for p in parts if p)
    else:
        out["dynamic_intensity"] = _text(dyn)
    for name in FEATURE_NAMES:
        if unsure(f, name):
            out[name] = ""
    return out


def describe(features: dict[str, Any] | None) -> str:
    """One line per feature, ``name: value``, in :data:`FEATURE_NAMES` order (blank ones left out)."""
    s = summarize(features)
    return "\n".join(f"{name.replace('_', ' ')}: {s[name]}" for name in FEATURE_NAMES if s[name])


def key_label(features: dict[str, Any] | None) -> str:
    """``"F# minor"`` style label, or ``""``."""
    s = summarize(features)
    return " ".join(p for p in (s["key"], s["tonality"]) if p)


def clip_label(source: str | None, meta: dict[str, Any] | None) -> str:
    """How a clip is named to a person (dashboard, gallery): its track and artists from the
    annotation file's ``audio_meta`` (or the earlier system's metadata) when it has them, else its
    file name with its place in the file (``label.npy#12``: a row of a .npy; ``song.wav@30``: a
    window).

    >>> clip_label("/data/label.npy#12", {"track_name": "Jóga", "artist_name": ["Björk"]})
    'Jóga · Björk'
    >>> clip_label("/music/song.wav@30", {"file": "/music/song.wav"})
    'song.wav@30'
    """
    meta = meta if isinstance(meta, dict) else {}
    track = meta.get("track_name") or meta.get("title")
    if track:
        artists = meta.get("artist_name")
        artist = ", ".join(map(str, artists)) if isinstance(artists, list) else artists
        return f"{track} · {artist}" if artist else str(track)
    return str(source or "").replace("\\", "/").rsplit("/", 1)[-1]
