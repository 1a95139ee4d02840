"""What a clip's features lead one to expect of a prompt, and the features as descriptive text.

Both functions read the feature record only through :func:`m2i.features.summarize`, so m2i's
full form and the legacy plain-string form give the same kind of answer.

Conventions: an expectation is ``+1`` (fast / positive / major / loud), ``-1`` (slow / negative /
minor / soft) or ``None`` (the features say nothing either way).
"""

from __future__ import annotations

import re
from typing import Any

from m2i.features import summarize
from m2i.scoring.lexicon import FEATURE_AROUSAL, FEATURE_DYNAMICS, FEATURE_VALENCE

FAST_BPM = 120.0
SLOW_BPM = 90.0

_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_VAL = re.compile(r"valence\s+(-?\d+(?:\.\d+)?)")
_ARO = re.compile(r"arousal\s+(-?\d+(?:\.\d+)?)")


def _sign(x: float) -> int | None:
    return None if x == 0 else (1 if x > 0 else -1)


def _vote(words: list[str], table: dict[str, int]) -> float:
    return float(sum(table.get(w, 0) for w in words))


def _mood_words(mood: str) -> list[str]:
    head = mood.split("(")[0]
    return [w.strip().lower().replace(" ", "_") for w in re.split(r"[,/;]| and ", head) if w.strip()]


def expectations(features: dict[str, Any] | None) -> dict[str, int | None]:
    """Polarity expected of a prompt for each musical facet.

    Parameters
    ----------
    features : dict or None
        A sample's ``features`` object, full or legacy form.

    Returns
    -------
    dict
        ``tempo`` (from BPM: > 120 fast, < 90 slow), ``arousal`` and ``valence`` (from the mood
        words, or from the valence/arousal numbers when the words are silent: > 0.6 / < 0.4),
        ``energy`` (sign of tempo + arousal), ``mode`` (major +1, minor -1) and ``dynamics``
        (soft -1, intense/loud +1, moderate ``None``).

    Examples
    --------
    >>> expectations({"tonality": "minor", "tempo": 150.0, "mood": "upbeat, dark"})["valence"]
    -1
    """
    s = summarize(features)
    out: dict[str, int | None] = {}
    m = _NUM.search(s["tempo"])
    bpm = float(m.group()) if m else None
    out["tempo"] = None if bpm is None else (1 if bpm > FAST_BPM else (-1 if bpm < SLOW_BPM else None))

    mood = s["mood"].lower()
    words = _mood_words(mood)
    aro = _sign(_vote(words, FEATURE_AROUSAL))
    val = _sign(_vote(words, FEATURE_VALENCE))
    if aro is None and (m := _ARO.search(mood)):
        x = float(m.group(1))
        aro = 1 if x > 0.6 else (-1 if x < 0.4 else None)
    if val is None and (m := _VAL.search(mood)):
        x = float(m.group(1))
        val = 1 if x > 0.6 else (-1 if x < 0.4 else None)
    out["arousal"] = aro
    out["valence"] = val
    out["energy"] = _sign((out["tempo"] or 0) + (aro or 0))

    ton = s["tonality"].strip().lower()
    out["mode"] = 1 if ton.startswith("maj") else (-1 if ton.startswith("min") else None)

    dyn = s["dynamic_intensity"].split(",")[0].strip().lower().replace(" ", "_")
    out["dynamics"] = FEATURE_DYNAMICS.get(dyn)
    return out


_WORDS = {
    "energy": {1: "fast, energetic, driving rhythm", -1: "slow, calm, unhurried pace"},
    "valence": {1: "bright, joyful, hopeful mood", -1: "dark, melancholic, brooding mood"},
    "mode": {1: "major key, warm and bright", -1: "minor key, sombre and shadowy"},
    "dynamics": {1: "loud, powerful, intense dynamics", -1: "soft, quiet, delicate dynamics"},
}


def verbalize(features: dict[str, Any] | None) -> str:
    """The features as one descriptive sentence for the embedding model.

    The literal values (key, tempo, mood words, contour, dynamics) are followed by the
    plain-language reading of each expectation (``"fast, energetic, driving rhythm"``), because
    the embedding model relates prompts to such words far better than to ``"125 BPM"``.

    Returns ``""`` when the features are empty.

    Examples
    --------
    >>> verbalize({"key": "F", "tonality": "minor", "tempo": 150.0, "mood": "upbeat, dark"})
    'Music in F minor, 150 BPM, upbeat, dark mood. fast, energetic, driving rhythm; dark, melancholic, brooding mood; minor key, sombre and shadowy.'
    """
    s = summarize(features)
    if not any(s.values()):
        return ""
    head = []
    key = " ".join(p for p in (s["key"], s["tonality"]) if p)
    if key:
        head.append(f"Music in {key}")
    if s["tempo"]:
        head.append(s["tempo"])
    if s["mood"]:
        head.append(f"{s['mood'].split('(')[0].strip()} mood")
    if s["melody_contour"]:
        head.append(f"{s['melody_contour'].replace('_', ' ')} melody")
    if s["dynamic_intensity"]:
        head.append(f"{s['dynamic_intensity'].replace('_', ' ')} dynamics")
    exp = expectations(features)
    tail = [_WORDS[k][exp[k]] for k in ("energy", "valence", "mode", "dynamics") if exp.get(k)]
    text = ", ".join(head) + "."
    if tail:
        text += " " + "; ".join(tail) + "."
    return text
