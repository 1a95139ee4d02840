"""Realistic run stores for the dashboard tests: features, prompts, scores, failures, a report.

Rows are written through ``m2i.store.ops`` exactly as the runner writes them (claim, complete,
fail), then every timestamp is pinned so screenshots do not change from one day to the next.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import text

from m2i.store import open_store, ops

FIXED_TS = "2026-11-26 21:00:00.000000"
KEYS = [("D", "minor"), ("G", "major"), ("F#", "minor"), ("Bb", "major"), ("E", "minor"), ("C", "major")]
MOODS = [["tense", "driving"], ["calm", "warm"], ["dark", "brooding"], ["bright", "playful"], ["sad", "slow"],
         ["stately", "hopeful"]]
WORDS = ["amber", "storm", "lantern", "glacier", "orchard", "harbor", "cathedral", "meadow", "ember", "tide"]


@dataclass
class SeedClip:
    source: str
    meta: dict
    pcm: np.ndarray | None
    error: str | None = None


def features_for(i: int) -> dict:
    key, tonality = KEYS[i % len(KEYS)]
    return {
        "key": key, "tonality": tonality, "key_runner_up": "A major",
        "tempo": 72.0 + 9 * i, "beats": [0.4 + 0.8 * k for k in range(8)],
        "time_signature": ["4/4", "3/4", "6/8"][i % 3],
        "mood": {"valence": round(0.2 + 0.1 * (i % 6), 2), "arousal": round(0.7 - 0.08 * (i % 6), 2),
                 "words": MOODS[i % len(MOODS)]},
        "melody_contour": {"shape": ["arch", "ascending", "wave"][i % 3], "range_semitones": 7.0 + i},
        "harmonic_progression": {"roman": ["i", "iv", "V", "i"], "text": "i-iv-V-i"},
        "dynamic_intensity": {"label": "mf", "loudness_db": -18.0 - i, "range_db": 9.5, "trend": "crescendo"},
        "chords": [[0.0, 1.2, f"{key}:min"]],
        "confidence": {"key": 0.8},
    }


def abc_for(i: int) -> str:
    key, tonality = KEYS[i % len(KEYS)]
    return f"X:1\nT:clip {i}\nM:4/4\nL:1/8\nQ:1/4={72 + 9 * i}\nK:{key}{'m' if tonality == 'minor' else ''}\n|: A2 d2 f2 e2 | d4 c4 :|"


def prompt_values(pid: int, mode: str, i: int) -> dict:
    w = WORDS[(pid * 7) % len(WORDS)]
    return {
        "title": f"{w.title()} at dusk",
        "text": f"A {mode} vision of clip {i}: a {w} under low {'violet' if mode == 'divergent' else 'golden'} light, "
                f"wide shot, slow movement, layered textures.",
        "image_prompt": f"{w}, dusk, {mode} mood, cinematic, detailed",
        "provider": "anthropic", "model": "claude-sonnet-4-5", "tokens_in": 812, "tokens_out": 96,
    }


def score_values(row_prompt_mode: str, clip: int, slot: int) -> dict:
    base = 0.45 + 0.03 * (clip % 5) + 0.01 * slot
    bump = 0.12 if row_prompt_mode == "divergent" else 0.0
    v = {"originality": base + bump, "elaboration": base + 0.05, "alignment": base + 0.1 - bump / 2,
         "coherence": base + 0.08 - bump / 3}
    v["overall"] = sum(v.values()) / 4
    return {k: round(x, 4) for k, x in v.items()} | {"method": "m2i-score/1"}


def make_clips(n: int, *, seed: int = 0) -> list[SeedClip]:
    rng = np.random.default_rng(seed)
    return [SeedClip(f"demo/clip{i:02d}.flac", {"i": i}, (rng.standard_normal(1600) * 0.1).astype(np.float32))
            for i in range(n)]


def seed_store(
    db: Path,
    *,
    clips: int = 6,
    fail_analyze: tuple[int, ...] = (5,),
    fail_generate: int = 2,
    fail_render: int = 1,
    score: bool = True,
    report: bool = True,
    render: int = 8,
    image_dir: Path | None = None,
    name: str = "bach-vs-folk",
) -> int:
    """Create ``db`` with one run in mid flight; returns its id.

    Clips in ``fail_analyze`` fail analysis for good; the first ``fail_generate`` prompts fail
    generation; every other prompt is written, scored (when ``score``), and the first ``render``
    images are rendered (PNG files in ``image_dir`` when given), ``fail_render`` failing.
    """
    store = open_store(db)
    try:
        run_id = ops.create_run(store, name=name, config={
            "seed": 1, "llm": "anthropic", "model": "claude-sonnet-4-5", "images": "sdxl", "device": "cuda:0",
            "modes": ops.DEFAULT_MODES, "max_attempts": 1})
        ops.add_samples(store, run_id, make_clips(clips))
        rows = ops.claim(store, "analyze", worker="w", n=clips)
        for r in rows:
            if r["idx"] in fail_analyze:
                ops.fail(store, "analyze", r["id"], worker="w", error="InputError: clip is silent (peak -90 dBFS); "
                         "check the source file.", retryable=False)
            else:
                ops.complete(store, "analyze", r["id"], worker="w",
                             values={"features": features_for(r["idx"]), "abc": abc_for(r["idx"]), "duration_s": 10.0})
        prompts = ops.claim(store, "generate", worker="w", n=1000)
        idx_of = _sample_idx(store)
        for k, p in enumerate(prompts):
            if k < fail_generate:
                ops.fail(store, "generate", p["id"], worker="w", retryable=False,
                         error="ProviderError: Anthropic answered 529 overloaded three times; retry later.")
            else:
                ops.complete(store, "generate", p["id"], worker="w", values=prompt_values(p["id"], p["mode"],
                                                                                          idx_of[p["sample_id"]]))
        if score:
            meta = _prompt_meta(store)
            srows = ops.claim(store, "score", worker="w", n=1000)
            for s in srows:
                mode, clip, slot = meta[s["prompt_id"]]
                ops.complete(store, "score", s["id"], worker="w", values=score_values(mode, clip, slot))
        if render:
            irows = ops.claim(store, "render", worker="w", n=render)
            for k, im in enumerate(irows):
                if k < fail_render:
                    ops.fail(store, "render", im["id"], worker="w", retryable=False,
                             error="BackendError: CUDA out of memory at 1024x1024; lower --width/--height.")
                    continue
                path = None
                if image_dir is not None:
                    path = str(write_png(image_dir / f"img{im['id']:04d}.png", im["id"]))
                ops.complete(store, "render", im["id"], worker="w",
                             values={"path": path or f"/nonexistent/img{im['id']}.png", "backend": "sdxl",
                                     "device": "cuda:0", "width": 64, "height": 64, "seconds": 3.2})
        if report:
            save_modes_report(store, run_id)
    finally:
        store.close()
    if "://" not in str(db):
        pin_times(db)  # SQLite files only: the snapshots need fixed times
    return run_id


def _sample_idx(store) -> dict[int, int]:
    with store.read() as conn:
        return dict(conn.exec_driver_sql("SELECT id, idx FROM sample").all())


def _prompt_meta(store) -> dict[int, tuple[str, int, int]]:
    with store.read() as conn:
        return {pid: (mode, idx, slot) for pid, mode, idx, slot in conn.exec_driver_sql(
            "SELECT p.id, p.mode, s.idx, p.slot FROM prompt p JOIN sample s ON s.id = p.sample_id").all()}


def save_modes_report(store, run_id: int) -> None:
    """The convergent-vs-divergent report, computed by the real ``compare_modes``."""
    from m2i.scoring.stats import compare_modes

    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(text(
            "SELECT p.sample_id, p.mode, s.originality, s.elaboration, s.alignment, s.coherence, s.overall "
            "FROM score s JOIN prompt p ON p.id = s.prompt_id WHERE s.status = 'done' AND s.run_id = :r"),
            {"r": run_id}).mappings()]
    ops.save_report(store, run_id, "modes", compare_modes(rows, n_boot=500, seed=0))


def write_png(path: Path, n: int) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.stack([(x * 4 + n * 20) % 256, (y * 4) % 256, ((x + y) * 2 + n * 40) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path)
    return path


def pin_times(db: Path) -> None:
    """Set every timestamp to one fixed instant so screenshots are stable."""
    con = sqlite3.connect(db)
    try:
        con.execute("UPDATE event SET ts = ?", (FIXED_TS,))
        con.execute("UPDATE run SET created_at = ?", (FIXED_TS,))
        con.commit()
    finally:
        con.close()


def render_previews(db: Path, run_id: int, out: Path) -> None:
    """Draw the run's pending images with the preview backend under the real runner, into ``out``."""
    from m2i.runner import Runner, run_blocking
    from m2i.stages import RenderStage

    store = open_store(str(db))
    try:
        run_blocking(Runner(store, run_id, [RenderStage(backend="preview", settings={}, out_dir=out)], poll_s=0.02),
                     handle_signals=False)
    finally:
        store.close()
