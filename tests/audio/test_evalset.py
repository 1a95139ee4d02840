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
