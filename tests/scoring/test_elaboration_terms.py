"""Text-only parts of the metrics: golden values on small inputs (no model needed)."""

from __future__ import annotations

import math

import pytest

from m2i.errors import ConfigError
from m2i.scoring.metrics import (
    elaboration_parts,
    mood_contradiction,
    polarity_counts,
    resolve_settings,
    term_agreement,
)

FOX = "A red fox in the snow at dawn, close-up."


def test_elaboration_golden_value():
    # words 9; details red (colour), fox (objects), snow (setting), dawn (light, setting),
    # close-up (composition): D = 5, C = 5 of 6, density 5/9 capped at full credit
    e = elaboration_parts(FOX)
    assert (e["details"], e["categories"], e["words"]) == (5, 5, 9)
    expected = 0.5 * (1 - math.exp(-5 / 15)) + 0.25 * 5 / 6 + 0.25 * 1.0
    assert e["elaboration"] == pytest.approx(expected, abs=1e-12)


def test_padding_and_repetition_do_not_pay():
    base = elaboration_parts(FOX)["elaboration"]
    padded = FOX + " It is something that one might perhaps think about in a way that is quite general." * 4
    repeated = " ".join([FOX] * 5)
    assert elaboration_parts(padded)["elaboration"] < base
    assert elaboration_parts(repeated)["elaboration"] < base


def test_more_distinct_detail_scores_higher():
    rich = (
        "A red fox curls in fresh snow at dawn beneath birch trees; pale gold light, long blue shadows, "
        "frosted fur, a frozen river in the background and a wooden cabin on the left, close-up."
    )
    assert elaboration_parts(rich)["elaboration"] > elaboration_parts(FOX)["elaboration"]
    assert elaboration_parts(rich)["categories"] == 6


def test_elaboration_of_empty_and_abstract_text():
    assert elaboration_parts("")["elaboration"] == 0.0
    abstract = "It is about feelings and ideas and what they might mean to someone."
    assert elaboration_parts(abstract)["elaboration"] == 0.0


def test_term_agreement_golden_values():
    counts = polarity_counts("a dark, gloomy alley in D minor")
    assert counts["valence_neg"] == 2 and counts["minor"] == 1
    ta = term_agreement(counts, {"valence": -1, "mode": -1, "energy": None, "dynamics": None})
    # mood: (2 + 1) / (2 + 0 + 2) = 0.75 ; mode: (2 + 3 + 1) / (5 + 0 + 2) = 6/7
    assert ta["facets"] == {"mood": 0.75, "mode": round(6 / 7, 4)}
    assert ta["terms"] == pytest.approx((0.75 + 6 / 7) / 2)


def test_term_agreement_penalises_the_wrong_mode_and_energy():
    good = term_agreement(polarity_counts("a frantic, explosive storm in E minor"), {"energy": 1, "mode": -1})
    bad = term_agreement(polarity_counts("a calm, still pond in E major"), {"energy": 1, "mode": -1})
    assert good["terms"] > 0.75 > 0.25 > bad["terms"]


def test_no_expectation_means_no_term_score():
    assert term_agreement(polarity_counts("anything"), {})["terms"] is None


def test_mood_contradiction_golden_values():
    mc = mood_contradiction(polarity_counts("joyful, cheerful and dark"), {"valence": -1})
    assert (mc["agree"], mc["contradict"]) == (1, 2)
    assert mc["contradiction"] == pytest.approx(2 / 3)
    assert mood_contradiction(polarity_counts("a stone wall"), {"valence": 1})["contradiction"] == 0.0


@pytest.mark.parametrize(
    "settings",
    [
        {"weights": {"originality": -1}},
        {"weights": {"novelty": 1.0}},
        {"weights": dict.fromkeys(("originality", "elaboration", "alignment", "coherence"), 0)},
        {"colour": 1},
        {"max_prompt_tokens": 0},
        {"precision": "fp8"},
        {"threads": 0},
    ],
)
def test_bad_settings_raise_config_error(settings):
    with pytest.raises(ConfigError):
        from m2i.scoring.embed import resolve_precision

        cfg = resolve_settings(settings)
        resolve_precision(cfg["precision"])
