"""Dashboard benchmark: one refresh's queries at 100,000 prompt rows, and the app's start time.

Builds a run store with 20,000 clips x 5 prompts (100,000 prompt rows, as many score and image
rows), about 1 % failed, a convergent-vs-divergent report computed by ``compare_modes`` and
2,000 events; then times :meth:`tui.data.Reader.snapshot` for what each screen asks on every
refresh (worst case: the counts changed, so nothing is reused from the previous refresh), the
load of a new report on the Compare screen, and the app from process start to its first painted
screen and to its first data (headless, ``run_test``).

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_tui.py [--clips 20000] [--repeat 30]``.
Not run by CI. Figures are printed one per line with their targets.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

START_SCRIPT = r"""
import asyncio, sys, time
t0 = float(sys.argv[2])
from tui.app import make_app
app = make_app(sys.argv[1], refresh_s=None)
async def main():
    async with app.run_test(size=(80, 24)) as pilot:
        painted = time.time() - t0  # the first screen is composed and shown
        while app.refreshes < 1:
            await pilot.pause(0.005)
        await pilot.pause()
        assert app.view.snap.run is not None, app.view.snap.problem
        print(painted, time.time() - t0)
asyncio.run(main())
"""


def build(db: Path, clips: int) -> int:
    """Seed the store; returns the run id."""
    import numpy as np

    from m2i.scoring.stats import compare_modes
    from m2i.store import open_store, ops

    rng = np.random.default_rng(0)
    store = open_store(str(db))
    run_id = ops.create_run(store, name="bench", config={"llm": "anthropic", "model": "claude-sonnet-4-5",
                                                         "images": "sdxl", "device": "cuda:0", "seed": 0})
    store.close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    now = "2026-11-26 21:00:00.000000"
    feats = json.dumps({"key": "D", "tonality": "minor", "tempo": 96.0, "time_signature": "3/4",
                        "mood": {"valence": 0.3, "arousal": 0.7, "words": ["tense", "driving"]},
                        "melody_contour": {"shape": "arch", "range_semitones": 12.0},
                        "harmonic_progression": {"roman": ["i", "iv", "V", "i"], "text": "i-iv-V-i"},
                        "dynamic_intensity": {"label": "mf", "loudness_db": -18.2, "trend": "crescendo"}})
    con.executemany(
        "INSERT INTO sample (id, run_id, idx, source, meta, features, abc, duration_s, status, priority, attempts,"
        " max_attempts) VALUES (?, ?, ?, ?, '{}', ?, ?, 10.0, 'done', 0, 1, 3)",
        [(i + 1, run_id, i, f"clips/clip{i:05d}.flac", feats, "X:1\nK:Dm\nA2 d2|") for i in range(clips)],
    )
    prompts, scores, images, report_rows = [], [], [], []
    pid = 0
    for i in range(clips):
        for slot in range(5):
            pid += 1
            mode = "convergent" if slot < 3 else "divergent"
            u = rng.random()
            p_status = "failed" if u < 0.01 else "done" if u < 0.8 else "pending"
            prompts.append((pid, run_id, i + 1, slot, mode, 0.4 if slot < 3 else 0.8, pid, p_status,
                            "ProviderError: 529 overloaded" if p_status == "failed" else None,
                            f"Title {pid}", f"a long description of prompt {pid} " * 4, f"image prompt {pid}"))
            if p_status != "done":
                continue
            vals = rng.random(4) * 0.3 + (0.5 if mode == "divergent" else 0.45)
            s_status = "done" if rng.random() < 0.9 else "pending"
            scores.append((pid, run_id, pid, s_status, *(vals.tolist() if s_status == "done" else [None] * 4),
                           float(vals.mean()) if s_status == "done" else None))
            v = rng.random()
            im_status = "failed" if v < 0.01 else "done" if v < 0.5 else "pending"
            images.append((pid, run_id, pid, im_status, f"/data/images/{pid}.png" if im_status == "done" else None,
                           "CUDA out of memory" if im_status == "failed" else None))
            if s_status == "done":
                report_rows.append({"sample_id": i + 1, "mode": mode, "originality": vals[0], "elaboration": vals[1],
                                    "alignment": vals[2], "coherence": vals[3], "overall": float(vals.mean())})
    con.executemany(
        "INSERT INTO prompt (id, run_id, sample_id, slot, mode, temperature, seed, status, error, title, text,"
        " image_prompt, priority, attempts, max_attempts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0,1,3)", prompts)
    con.executemany(
        "INSERT INTO score (id, run_id, prompt_id, status, originality, elaboration, alignment, coherence, overall,"
        " priority, attempts, max_attempts) VALUES (?,?,?,?,?,?,?,?,?,0,1,3)", scores)
    con.executemany(
        "INSERT INTO image (id, run_id, prompt_id, status, path, error, backend, device, priority, attempts,"
        " max_attempts) VALUES (?,?,?,?,?,?,'sdxl','cuda:0',0,1,3)", images)
    con.executemany(
        "INSERT INTO event (ts, run_id, level, stage, item, message) VALUES (?, ?, ?, 'render', ?, ?)",
        [(now, run_id, "error" if k % 10 == 0 else "info", k, f"event {k}") for k in range(2000)],
    )
    con.commit()
    con.close()
    report = compare_modes(report_rows, n_boot=200, seed=0)
    store = open_store(str(db))
    ops.save_report(store, run_id, "modes", report)
    store.close()
    return run_id


def time_snapshots(db: Path, repeat: int) -> dict[str, list[float]]:
    from tui.data import Reader, Want

    reader = Reader(str(db))
    first = reader.snapshot(Want())
    assert first.problem is None, first.problem
    rid = first.report_id
    last_event = first.events[-1].id if first.events else 0
    wants = {
        "dashboard": Want(events_after=last_event, report_id=rid),
        "compare": Want(events_after=last_event, report_id=rid, report=True),
        "failures": Want(events_after=last_event, report_id=rid, failures=True),
        "samples_page1": Want(events_after=last_event, report_id=rid, samples_page=0),
        "samples_page50": Want(events_after=last_event, report_id=rid, samples_page=50),
        "detail": Want(events_after=last_event, report_id=rid, detail=12345),
    }
    out: dict[str, list[float]] = {k: [] for k in wants}
    for _ in range(repeat):
        for name, want in wants.items():
            reader._memo.clear()  # worst case: the counts changed since the last refresh
            t = time.perf_counter()
            snap = reader.snapshot(want)
            out[name].append((time.perf_counter() - t) * 1000)
            assert snap.problem is None, snap.problem
    out["report_load"] = []
    for _ in range(max(3, repeat // 5)):
        t = time.perf_counter()
        snap = reader.snapshot(Want(events_after=last_event, report_id=None, report=True))
        out["report_load"].append((time.perf_counter() - t) * 1000)
        assert snap.report_changed
    reader.close()
    return out


def time_start(db: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Seconds from process start to the first painted screen, and to the first data on it."""
    painted, data = [], []
    for _ in range(repeat):
        res = subprocess.run([sys.executable, "-c", START_SCRIPT, str(db), repr(time.time())],
                             cwd=REPO, capture_output=True, text=True, check=True)
        a, b = res.stdout.strip().splitlines()[-1].split()
        painted.append(float(a))
        data.append(float(b))
    return painted, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--db", help="reuse (or create) the seeded database at this path instead of a temporary one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "bench.db"
        t = time.perf_counter()
        if not db.exists():
            build(db, args.clips)
        with sqlite3.connect(db) as con:
            n_prompts = con.execute("SELECT count(*) FROM prompt").fetchone()[0]
            report_kb = con.execute("SELECT length(data) FROM report").fetchone()[0] / 1024
        print(f"seeded_prompt_rows: {n_prompts} (report {report_kb:.0f} KiB, built in {time.perf_counter() - t:.1f} s)")
        times = time_snapshots(db, args.repeat)
        for name, ms in times.items():
            med, worst = statistics.median(ms), max(ms)
            target = " (a new report on Compare, at most every 5 s)" if name == "report_load" else " (target <= 50)"
            print(f"refresh_ms_{name}: median {med:.1f}, p90 {sorted(ms)[int(0.9 * len(ms))]:.1f}, max {worst:.1f}{target}")
        steady = max(statistics.median(v) for k, v in times.items() if k != "report_load")
        print(f"refresh_ms_worst_screen_median: {steady:.1f} (target <= 50)")
        painted, data = time_start(db, args.starts)
        print(f"app_start_s: median {statistics.median(painted):.2f}, max {max(painted):.2f} (target <= 1.5)")
        print(f"app_first_data_s: median {statistics.median(data):.2f}, max {max(data):.2f}")


if __name__ == "__main__":
    main()
