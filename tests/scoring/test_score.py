"""score_prompts with the real all-MiniLM-L6-v2 on small, readable inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m2i.errors import ConfigError, InputError
from m2i.scoring import METHOD, score_prompts
from m2i.scoring.metrics import RUN_DISTANCE

CALM_MAJOR = {"key": "C", "tonality": "major", "tempo": 66.0, "mood": "calm, bright", "dynamic_intensity": "soft"}
WILD_MINOR = {"key": "E", "tonality": "minor", "tempo": 168.0, "mood": "energetic, dark, dramatic",
              "dynamic_intensity": "very_intense"}

SCENES = [
    "A red fox sleeps curled in fresh snow beneath birch trees at dawn, pale gold light on its fur.",
    "A neon-lit city street in the rain at midnight, reflections of pink signs on wet asphalt.",
    "An old wooden sailboat drifts on a glassy lake at sunset, orange sky mirrored in the water.",
    "A desert canyon at noon, red sandstone walls, a lone hawk circling in a hard blue sky.",
]


def prompt(pid, sample_id, text, mode="convergent", image_prompt=None):
    return {"id": pid, "sample_id": sample_id, "slot": pid, "mode": mode, "title": None,
            "text": text, "image_prompt": image_prompt}


def test_every_target_gets_four_metrics_in_range_in_order(embedder):
    ps = [prompt(i, i // 2, s, mode="convergent" if i % 2 == 0 else "divergent") for i, s in enumerate(SCENES)]
    rows = score_prompts(list(reversed(ps)), context=ps, samples={0: CALM_MAJOR, 1: WILD_MINOR}, embedder=embedder)
    assert len(rows) == 4
    for r in rows:
        assert r["method"] == METHOD
        for m in ("originality", "elaboration", "alignment", "coherence", "overall"):
            assert 0.0 <= r[m] <= 1.0, m
        json.dumps(r["details"])
    # reversed order in, reversed order out: the first row is the last scene's
    assert rows[0]["details"]["words"] == len(SCENES[3].split())


def test_a_prompt_unlike_the_rest_is_more_original(embedder):
    forest = [
        "A misty pine forest at dawn, soft light between the trunks, moss on the ground.",
        "Morning fog in a pine forest, pale sunlight falling between tall trunks onto mossy ground.",
        "Tall pines in dawn mist, gentle light through the trees, a carpet of green moss below.",
        "A foggy forest of pines at sunrise, rays of light slanting through onto the moss.",
    ]
    odd = "A chrome robot repairs a broken violin on a crowded subway train under flickering tubes."
    ps = [prompt(i, i, t) for i, t in enumerate(forest + [odd])]
    rows = score_prompts(ps, context=ps, samples={}, embedder=embedder)
    orig = [r["originality"] for r in rows]
    assert orig[4] > max(orig[:4]) + 0.2
    # only one prompt per clip: originality is the run component alone
    assert all(r["details"]["orig_clip"] is None for r in rows)


def test_identical_prompts_have_no_clip_distinctness(embedder):
    same = "A lighthouse on a black cliff above a stormy sea, its beam cutting the fog."
    ps = [prompt(1, 1, same), prompt(2, 1, same, mode="divergent"), prompt(3, 2, SCENES[0])]
    rows = score_prompts(ps[:2], context=ps, samples={}, embedder=embedder)
    for r in rows:
        assert r["details"]["sim_clip_max"] == pytest.approx(1.0, abs=1e-3)
        assert r["details"]["orig_clip"] == 0.0
    assert rows[0] == rows[1]


def test_one_prompt_alone_scores_what_it_can(embedder):
    only = [prompt(7, 3, SCENES[2], image_prompt="old sailboat, glassy lake, sunset")]
    (r,) = score_prompts(only, context=[], samples={3: CALM_MAJOR}, embedder=embedder)
    assert r["originality"] is None  # nothing to be original against
    assert r["details"]["align_rank"] is None
    assert r["alignment"] == pytest.approx(r["details"]["align_terms"], abs=1e-4)
    assert r["overall"] is not None and 0 < r["overall"] <= 1


def test_empty_text_scores_zero_explicitly(embedder):
    ps = [prompt(1, 1, ""), prompt(2, 1, SCENES[0]), prompt(3, 2, "   ", image_prompt="")]
    rows = score_prompts([ps[0], ps[2]], context=ps, samples={1: CALM_MAJOR}, embedder=embedder)
    for r in rows:
        assert r["details"] == {"empty": True}
        assert [r[m] for m in ("originality", "elaboration", "alignment", "coherence", "overall")] == [0.0] * 5


def test_alignment_prefers_the_clip_the_prompt_describes(embedder):
    calm = ("A calm, still lake at dawn under a soft pastel sky, gentle mist, a quiet wooden jetty, "
            "warm light and a peaceful, hopeful mood.")
    wild = ("A violent storm tears through a dark city at night, explosive lightning, racing clouds, "
            "crashing waves against the harbour wall, ominous and frantic.")
    ps = [prompt(1, "calm", calm), prompt(2, "wild", wild)]
    matched = score_prompts(ps, context=ps, samples={"calm": CALM_MAJOR, "wild": WILD_MINOR}, embedder=embedder)
    swapped = score_prompts(ps, context=ps, samples={"calm": WILD_MINOR, "wild": CALM_MAJOR}, embedder=embedder)
    for good, bad in zip(matched, swapped):
        assert good["alignment"] > bad["alignment"] + 0.3
        assert good["details"]["align_rank"] == 1.0 and bad["details"]["align_rank"] == 0.0


def test_coherence_penalises_topic_jumps_repeats_and_mood_contradictions(embedder):
    steady = ("A lighthouse stands on a rocky cliff above the sea. Its beam sweeps across the dark waves. "
              "Spray rises where the waves hit the rocks below the tower. Gulls circle the lamp in the wind.")
    jumpy = ("A lighthouse stands on a rocky cliff above the sea. My tax return is due next Tuesday. "
             "Quantum chromodynamics describes the strong force between quarks. Bake the bread for forty minutes.")
    pasted = " ".join(["A lighthouse stands on a rocky cliff above the sea."] * 4)
    cheerful = ("A joyful, cheerful lighthouse on a sunny cliff. Happy, playful gulls over a bright, delightful sea. "
                "Everything is cheerful and full of joy. Laughing children wave at the happy boats.")
    ps = [prompt(i, i, t) for i, t in enumerate([steady, jumpy, pasted, cheerful])]
    sad = {"tonality": "minor", "mood": "dark, sad"}
    rows = score_prompts(ps, context=ps, samples=dict.fromkeys(range(4), sad), embedder=embedder)
    coh = [r["coherence"] for r in rows]
    assert coh[0] > coh[1] + 0.2
    assert rows[2]["details"]["repeat_4gram"] > 0.5 and coh[2] < 0.1
    assert rows[3]["details"]["mood_contradict"] > 5 and coh[3] < coh[0]


def test_weights_are_configurable_and_renormalised(embedder):
    ps = [prompt(i, i, s) for i, s in enumerate(SCENES)]
    rows = score_prompts(ps, context=ps, samples={}, embedder=embedder,
                         settings={"weights": {"originality": 1, "elaboration": 0, "alignment": 0, "coherence": 0}})
    for r in rows:
        assert r["overall"] == pytest.approx(r["originality"], abs=1e-6)
    # no features: alignment is None and drops out of overall
    rows = score_prompts(ps, context=ps, samples={}, embedder=embedder)
    for r in rows:
        assert r["alignment"] is None
        w = {"originality": 0.3, "elaboration": 0.2, "coherence": 0.2}
        expected = sum(w[m] * r[m] for m in w) / sum(w.values())
        assert r["overall"] == pytest.approx(expected, abs=1e-5)


def test_targets_missing_from_context_are_scored_against_it(embedder):
    ps = [prompt(i, i, s) for i, s in enumerate(SCENES)]
    a = score_prompts([ps[0]], context=ps[1:], samples={}, embedder=embedder)
    b = score_prompts([ps[0]], context=ps, samples={}, embedder=embedder)
    assert a == b


def test_bad_input_raises_clear_errors(embedder):
    with pytest.raises(InputError, match="sample_id"):
        score_prompts([{"id": 1, "text": "x"}], context=[], samples={}, embedder=embedder)
    with pytest.raises(ConfigError, match="weight"):
        score_prompts([prompt(1, 1, "x")], context=[], samples={}, settings={"weights": {"originality": "high"}})
    assert score_prompts([], context=[], samples={}) == []


def test_run_distance_calibration_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    assert f"{RUN_DISTANCE[0]:.2f}" in doc and f"{RUN_DISTANCE[1]:.2f}" in doc


def test_embedder_matches_sentence_transformers(embedder):
    """The fast path gives the sentence-transformers embedding (mean-pooled, normalised)."""
    from sentence_transformers import SentenceTransformer

    from m2i.scoring.embed import model_dir

    st = SentenceTransformer(str(model_dir()), device="cpu")
    st.max_seq_length = embedder.max_tokens
    texts = SCENES + ["Deep blues and purples give way to vibrant oranges and reds.", "a"]
    ref = st.encode(texts, normalize_embeddings=True)
    ours = embedder.encode(texts)
    cos = (ref * ours).sum(1)
    assert cos.min() >= 0.99, cos
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    assert not embedder.encode([""]).any()
