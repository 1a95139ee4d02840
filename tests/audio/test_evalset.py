"""The evaluation set's key excerpts: their windows must hold what the key label is made of."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

RENDER = Path(__file__).resolve().parents[2] / "benchmarks" / "evalset" / "render.py"


@pytest.fixture(scope="module")
def render():
    spec = importlib.util.spec_from_file_location("m2i_evalset_render", RENDER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def chorale():
    corpus = pytest.importorskip("music21.corpus")
    return corpus.parse("bach/bwv269")  # G major, 3/4, ends on G in the bass


def test_key_label_is_signature_plus_final_bass(render, chorale):
    assert render.score_key(chorale) == ("G", "major")


@pytest.mark.parametrize("qpm", [50.0, 100.0, 150.0])
def test_key_end_window_ends_in_the_final_bar(render, chorale, qpm):
    m = render.key_window(chorale, "end", qpm, random.Random(0))
    mo = render.measure_offsets(chorale.parts[0])
    total = float(chorale.parts[0].highestTime)
    end = mo[m] + render.CLIP_S * qpm / 60.0
    bar = float(chorale.recurse().getElementsByClass("TimeSignature")[0].barDuration.quarterLength)
    assert end <= total + 1e-9
    assert end > total - bar - 1e-9  # the window reaches into the final bar


def test_key_open_window_starts_in_the_first_bars(render, chorale):
    starts = {render.key_window(chorale, "open", 90.0, random.Random(s)) for s in range(20)}
    assert starts <= {0, 1, 2} and len(starts) >= 2


def test_key_model_counts_chords_relative_to_the_tonic(chorale):
    """fit_key.py labels a chorale's eighth-note segments in key-relative states, and the generated
    key model holds tonal harmony's basic facts: I, V and IV are the commonest major-key triads,
    i, V and III the commonest minor-key ones, and V moves to the tonic."""
    spec = importlib.util.spec_from_file_location("m2i_evalset_fit_key", RENDER.with_name("fit_key.py"))
    fit_key = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit_key)
    mode, rel, mid = fit_key.piece_states(chorale)
    assert mode == "major"
    assert [s for s in rel if s >= 0][-1] == 0  # bwv269 ends on its tonic triad, G major
    assert list(mid[:4]) == [0, 1, 0, 1] and len(mid) == len(rel)

    import numpy as np

    from m2i.audio.key_model import CHORD_COUNTS, TRANSITION_COUNTS

    assert list(np.argsort(CHORD_COUNTS["major"])[::-1][:3]) == [0, 7, 5]
    assert list(np.argsort(CHORD_COUNTS["minor"])[::-1][:3]) == [12, 7, 3]
    for mode, tonic in (("major", 0), ("minor", 12)):
        from_v = np.array(TRANSITION_COUNTS[mode][0][7])
        from_v[7] = 0
        assert int(from_v.argmax()) == tonic, mode


def test_low_arrangement_moves_a_melody_down_by_octaves_within_the_instrument(render):
    """The low-register set (bench_features.py) plays the folk melodies on low instruments: the
    notes it scores against are the melody moved by whole octaves, never under the instrument's
    lowest note or E2, and most draws move it down."""
    melody = [(0.0, 0.5, 67), (0.5, 1.0, 72), (1.0, 2.0, 79)]
    shifts = []
    for seed in range(60):
        name, played = render.low_arrangement(melody, random.Random(seed))
        shift = played[0][2] - melody[0][2]
        assert [(on, off) for on, off, _ in played] == [(on, off) for on, off, _ in melody]
        assert all(p - q == shift for (_, _, p), (_, _, q) in zip(played, melody)) and shift % 12 == 0
        assert min(p for _, _, p in played) >= max(render.LOW_PROGRAMS[name][1], render.LOW_FLOOR)
        shifts.append(shift)
    assert sum(s < 0 for s in shifts) > len(shifts) / 2 and -24 in shifts
