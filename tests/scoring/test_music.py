"""Expectations read from the feature record, full and legacy forms."""

from __future__ import annotations

from m2i.scoring.music import expectations, verbalize

FULL = {
    "key": "F#", "tonality": "minor", "tempo": 72.0, "time_signature": "3/4",
    "mood": {"valence": 0.2, "arousal": 0.25, "words": ["calm", "sad"]},
    "melody_contour": {"shape": "arch", "range_semitones": 12.0},
    "harmonic_progression": {"roman": ["i", "iv", "V", "i"], "text": "i-iv-V-i"},
    "dynamic_intensity": {"label": "pp", "loudness_db": -38.0, "range_db": 6.0, "trend": "steady"},
}
LEGACY = {
    "key": "D", "tonality": "major", "tempo": 170.45, "time_signature": "4/4",
    "mood": "energetic, bright, dramatic", "melody_contour": "descending",
    "harmonic_progression": "complex_progression", "dynamic_intensity": "very_intense",
}


def test_full_form_slow_sad_soft_minor():
    e = expectations(FULL)
    assert e == {"tempo": -1, "arousal": -1, "valence": -1, "energy": -1, "mode": -1, "dynamics": -1}


def test_legacy_form_fast_bright_loud_major():
    e = expectations(LEGACY)
    assert e == {"tempo": 1, "arousal": 1, "valence": 1, "energy": 1, "mode": 1, "dynamics": 1}


def test_numbers_decide_when_the_mood_has_no_words():
    e = expectations({"mood": {"valence": 0.9, "arousal": 0.1, "words": []}, "tempo": 100.0})
    assert (e["valence"], e["arousal"], e["tempo"], e["energy"]) == (1, -1, None, -1)


def test_empty_features_expect_nothing_and_verbalize_to_empty():
    assert set(expectations(None).values()) == {None}
    assert verbalize({}) == ""


def test_moderate_dynamics_and_mid_tempo_set_no_expectation():
    e = expectations({"tempo": 105.0, "dynamic_intensity": "moderate", "mood": "moderate, dark"})
    assert e["tempo"] is None and e["dynamics"] is None and e["arousal"] is None and e["valence"] == -1


def test_verbalize_names_values_and_their_reading():
    text = verbalize(LEGACY)
    assert text.startswith("Music in D major, 170 BPM, energetic, bright, dramatic mood, descending melody")
    assert "fast, energetic, driving rhythm" in text and "loud, powerful, intense dynamics" in text
