"""The ``preview`` backend: deterministic pictures of the music, fast, never passed off as SDXL."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from m2i.images.backends import get_backend
from m2i.images.backends.preview import PREVIEW_MODEL, draw, look_of
from m2i.images.png import read_png_text


def arr(picture) -> np.ndarray:
    return np.asarray(picture, dtype=np.int16)


def test_renders_jobs_with_preview_recorded_everywhere(make_job, features_full, tmp_path):
    backend = get_backend("preview")
    jobs = [
        make_job(
            i,
            "a spiral staircase of light",
            sample_idx=12,
            slot=i,
            features=features_full,
            width=None,
            height=None,
        )
        for i in range(5)
    ]
    results = backend.render(jobs)
    assert [r.error for r in results] == [None] * 5
    for job, res in zip(jobs, results):
        assert res.path == str(
            tmp_path / "out" / "images" / "sample_012" / f"sample_012_prompt_{job.slot:02d}.png"
        )
        assert (res.backend, res.model, res.device, res.width, res.height) == (
            "preview",
            PREVIEW_MODEL,
            "cpu",
            512,
            512,
        )
        assert res.steps is None and res.guidance is None and res.scheduler is None
        text = read_png_text(res.path)
        assert text["backend"] == "preview" and text["model"] == PREVIEW_MODEL
        assert "not an SDXL render" in text["note"]
        assert text["prompt"] == "a spiral staircase of light" and text["seed"] == str(job.seed)


def test_same_features_and_seed_give_the_same_pixels(features_full):
    assert np.array_equal(arr(draw(features_full, seed=5)), arr(draw(features_full, seed=5)))
    assert np.abs(arr(draw(features_full, seed=5)) - arr(draw(features_full, seed=6))).mean() > 1.0


def test_the_picture_follows_the_music(features_full):
    bright = dict(
        features_full,
        tonality="major",
        mood={"valence": 0.9, "arousal": 0.4, "words": ["joyful"]},
        dynamic_intensity={"label": "ff", "loudness_db": -8.0},
    )
    dark = dict(
        features_full,
        mood={"valence": 0.1, "arousal": 0.4, "words": ["sad"]},
        dynamic_intensity={"label": "pp", "loudness_db": -35.0},
    )
    assert arr(draw(bright, seed=1)).mean() > arr(draw(dark, seed=1)).mean() + 20

    # key sets the hue: C major and G major (neighbours on the circle of fifths) are closer
    # in colour than C major and F# major (opposites)
    def mean_rgb(key):
        return arr(draw(dict(features_full, key=key, tonality="major"), seed=1))[:400].reshape(-1, 3).mean(0)

    c, g, fs = mean_rgb("C"), mean_rgb("G"), mean_rgb("F#")
    assert np.linalg.norm(c - g) < np.linalg.norm(c - fs)

    slow, fast = look_of(dict(features_full, tempo=60.0)), look_of(dict(features_full, tempo=180.0))
    assert slow.tempo == 60.0 and fast.tempo == 180.0
    assert (
        np.abs(
            arr(draw(dict(features_full, tempo=60.0), seed=1))
            - arr(draw(dict(features_full, tempo=180.0), seed=1))
        ).mean()
        > 2
    )


def test_melody_contour_is_drawn_where_the_melody_goes(features_full):
    def line_rows(shape):
        f = dict(
            features_full,
            melody_contour={"shape": shape, "range_semitones": 19.0},
            mood={"valence": 0.5, "arousal": 0.0, "words": []},
            tempo=40.0,
        )
        img = arr(draw(f, seed=3)).sum(-1)
        return img[:480, 20].argmax(), img[:480, 490].argmax()  # brightest row near left / right edge

    left, right = line_rows("ascending")
    assert right < left - 100  # rows grow downwards: an ascending line ends higher up
    left, right = line_rows("descending")
    assert right > left + 100


def test_legacy_string_features_work(features_legacy, make_job):
    look = look_of(features_legacy)
    assert look.minor and look.tempo == 125.0 and look.contour == "ascending"
    assert look.label == "F minor · 125 BPM"
    res = get_backend("preview").render([make_job(1, "x", features=features_legacy)])[0]
    assert res.error is None
    assert look_of(None).label == ""  # no features at all still draws
    assert look_of('{"key": "D", "tonality": "major"}').label == "D major"  # JSON text
    assert look_of("not json").label == "" and look_of(["a list"]).label == ""


def test_a_512px_picture_takes_at_most_50_ms(features_full):
    draw(features_full, seed=0)  # warm numpy/Pillow code paths
    times = []
    for seed in range(7):
        t0 = time.perf_counter()
        draw(features_full, seed=seed)
        times.append(time.perf_counter() - t0)
    # the CPU is shared with other jobs, so the best of 7 (what the code costs when it has the
    # core) is compared with the 50 ms budget; benchmarks/bench_images.py reports the spread
    assert min(times) <= 0.050, f"best of 7: {min(times) * 1000:.1f} ms"


def test_bad_jobs_fail_alone(make_job, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    results = get_backend("preview").render(
        [
            make_job(1, ""),
            make_job(2, "ok", out_dir=blocker),
            make_job(3, "ok", width=8192, height=8192),
            make_job(4, "fine"),
        ]
    )
    assert "empty image_prompt" in results[0].error
    assert "writable output folder" in results[1].error
    assert "4096" in results[2].error
    assert results[3].error is None
    with Image.open(results[3].path) as im:
        assert im.size == (64, 64)
