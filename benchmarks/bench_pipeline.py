"""Wall time and peak memory of the demo run, stage by stage.

    python benchmarks/bench_pipeline.py [--samples N] [--llm local] [--images auto]

Runs the real CLI (`m2i run --stages S`) once per stage on a fresh database, in stage order,
and samples the resident memory of the whole process tree (process pool included) every
100 ms. Prints one line per stage and a total.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("analyze", "generate", "score", "render")


def tree_rss(p: psutil.Process) -> int:
    total = 0
    for proc in [p, *p.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_stage(stage: str, args: list[str], cwd: Path) -> tuple[float, int, int]:
    cmd = [sys.executable, str(ROOT / "cli.py"), "run", "--stages", stage, *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, tree_rss(ps))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out = proc.stdout.read() if proc.stdout else ""
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        print(out[-2000:])
        raise SystemExit(f"stage {stage} failed with exit code {proc.returncode}")
    return dt, peak, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--llm", default="local")
    ap.add_argument("--model", default=None)
    ap.add_argument("--images", default="auto")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="m2i-bench-pipeline-"))
    args = ["--db", str(work / "m2i.db"), "--out", str(work / "out"), "--samples", str(a.samples),
            "--llm", a.llm, "--images", a.images] + (["--model", a.model] if a.model else [])
    total = 0.0
    for stage in STAGES:
        dt, peak, _ = run_stage(stage, args, work)
        total += dt
        print(f"{stage:<8} {dt:7.1f} s wall (new process, model loads included)  peak RSS {peak / 2**20:7.0f} MiB")
    import sqlite3

    con = sqlite3.connect(work / "m2i.db")
    counts = {t: con.execute(f"SELECT count(*) FROM {t} WHERE status='done'").fetchone()[0]
              for t in ("sample", "prompt", "score", "image")}
    print(f"total    {total:7.1f} s wall for {a.samples} clips: {counts}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
