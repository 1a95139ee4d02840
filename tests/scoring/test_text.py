"""Segmentation, word matching and the lexicons, on small inputs with known answers."""

from __future__ import annotations

import pytest

from m2i.scoring import lexicon as lx
from m2i.scoring.text import clean, find_terms, ngram_repeat_fraction, segments, words


def test_segments_strip_markdown_and_join_headings():
    text = "**Title:** Ember Tide\n\nColor Palette:\n* Deep blues for the sky. Gold light on the water.\n---\n"
    assert segments(text) == [
        "Title: Ember Tide Color Palette: Deep blues for the sky.",
        "Gold light on the water.",
    ]


def test_segments_split_sentences_and_keep_order():
    text = "A fox sleeps in the snow. The moon is pale and low! Does the wind carry ash? Yes it does now."
    assert segments(text) == [
        "A fox sleeps in the snow.",
        "The moon is pale and low!",
        "Does the wind carry ash?",
        "Yes it does now.",
    ]


@pytest.mark.parametrize("text", ["", None, "   \n\n", "---\n***\n"])
def test_segments_of_empty_text_is_empty(text):
    assert segments(text) == []
    assert words(text) == []


def test_a_lone_short_fragment_is_one_segment():
    assert segments("Blue.") == ["Blue."]


def test_clean_removes_bullets_but_not_hyphenated_words():
    assert clean("- a close-up of a moth\n1. wide-angle view") == "a close-up of a moth\nwide-angle view"


def test_find_terms_prefers_longest_match_and_folds_plurals():
    vocab = frozenset({"golden hour", "golden", "red", "roof", "sun"})
    toks = words("Golden hour over red roofs, sun-drenched")
    assert find_terms(toks, vocab) == ["golden hour", "red", "roof", "sun"]


def test_repeat_fraction_golden_values():
    assert ngram_repeat_fraction(words("a b c d a b c d"), n=4) == pytest.approx(1 / 5)
    assert ngram_repeat_fraction(words("one two three four five"), n=4) == 0.0
    assert ngram_repeat_fraction(words("too short"), n=4) == 0.0
    pasted = words("the moon is pale " * 10)
    assert ngram_repeat_fraction(pasted, n=4) > 0.8


@pytest.mark.parametrize(
    "a,b",
    [
        (lx.AROUSAL_HIGH, lx.AROUSAL_LOW),
        (lx.VALENCE_POS, lx.VALENCE_NEG),
        (lx.DYNAMICS_LOUD, lx.DYNAMICS_SOFT),
    ],
)
def test_opposite_lexicons_do_not_share_a_word(a, b):
    assert not (a & b)


def test_feature_tables_do_not_give_one_word_both_signs():
    for table in (lx.FEATURE_AROUSAL, lx.FEATURE_VALENCE, lx.FEATURE_DYNAMICS):
        assert set(table.values()) <= {1, -1}


def test_every_detail_category_is_lower_case_and_non_trivial():
    for name, vocab in lx.CATEGORIES.items():
        assert len(vocab) >= 40, name
        assert all(t == t.lower() and t.strip() == t for t in vocab), name


def test_importing_scoring_loads_no_heavy_library():
    """``import m2i.scoring`` must stay fast: torch, tokenizers and scipy load only when scoring."""
    import subprocess
    import sys

    code = (
        "import sys, m2i.scoring, m2i.scoring.legacy, m2i.scoring.views, m2i.exports\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'tokenizers', 'scipy',"
        " 'librosa', 'safetensors') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
