"""Run-store figures on SQLite and PostgreSQL: claim + complete throughput (one worker, and
four worker processes sharing 10,000 rows, checked for lost and doubled rows), status latency.

    python benchmarks/bench_store.py                      # both databases
    python benchmarks/bench_store.py --backends sqlite    # SQLite only
    python benchmarks/bench_store.py --db-url URL         # one given database

PostgreSQL: $M2I_BENCH_PG_URL, or a throwaway server started with scripts/pg.sh (durable
commits unless --pg-fsync off). Prints one line per figure with its target, and the machine's
load average (the figures move with it). Uses the real claim/complete functions of m2i.store.ops.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text  # noqa: E402

from m2i.store import open_store, ops  # noqa: E402
from m2i.store.models import Image, Prompt, Run, Sample  # noqa: E402


def seed_images(store, n_images: int, *, status: str = "pending") -> int:
    """A run with n_images/5 samples, 5 prompts each and one image row per prompt (bulk insert)."""
    n_samples = max(1, n_images // 5)
    with store.transaction() as conn:
        run_id = conn.execute(insert(Run.__table__).values(name="bench", config={}, created_at=ops.utcnow())
                              .returning(Run.__table__.c.id)).scalar_one()
        conn.execute(insert(Sample.__table__), [
            {"run_id": run_id, "idx": i, "source": f"s{i}", "meta": {}, "status": "done"} for i in range(n_samples)
        ])
        sids = [r[0] for r in conn.execute(text("SELECT id FROM sample WHERE run_id=:r ORDER BY idx"), {"r": run_id})]
        conn.execute(insert(Prompt.__table__), [
            {"run_id": run_id, "sample_id": sid, "slot": k, "mode": "convergent" if k < 3 else "divergent",
             "temperature": 0.4 if k < 3 else 0.8, "seed": k, "status": status}
            for sid in sids for k in range(5)
        ])
        pids = [r[0] for r in conn.execute(text("SELECT id FROM prompt WHERE run_id=:r ORDER BY id"), {"r": run_id})]
        conn.execute(insert(Image.__table__), [{"run_id": run_id, "prompt_id": pid} for pid in pids[:n_images]])
    return int(run_id)


def single_worker(url: str, n: int, batch: int) -> float:
    store = open_store(url)
    run_id = seed_images(store, n)
    t0 = time.perf_counter()
    done = 0
    while True:
        rows = ops.claim(store, "render", worker="w1", n=batch, run_id=run_id)
        if not rows:
            break
        ops.complete_many(store, "render", [(r["id"], {"path": f"{r['id']}.png"}) for r in rows], worker="w1")
        done += len(rows)
    dt = time.perf_counter() - t0
    assert done == n, (done, n)
    store.close()
    return n / dt


def _worker(url: str, run_id: int, name: str, batch: int, ready, go, q) -> None:
    store = open_store(url)
    ops.status_counts(store, run_id)  # connect before the clock starts
    ready.put(name)
    go.wait()
    got = []
    try:
        while True:
            rows = ops.claim(store, "render", worker=name, n=batch, run_id=run_id)
            if not rows:
                break
            acc = ops.complete_many(store, "render", [(r["id"], {"worker": name}) for r in rows], worker=name)
            got.extend(r["id"] for r, ok in zip(rows, acc) if ok)
    finally:
        q.put((name, got, time.perf_counter()))
        store.close()


def many_workers(url: str, n: int, workers: int, batch: int) -> tuple[float, int, int, int]:
    """Worker processes claim and complete ``n`` rows; the clock runs from "go" (all connected) to
    the last worker finding nothing left. Returns rows/s, lost, doubled, workers that got rows."""
    store = open_store(url)
    run_id = seed_images(store, n)
    ctx = mp.get_context("spawn")
    ready, q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, run_id, f"w{i}", batch, ready, go, q)) for i in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    t0 = time.perf_counter()
    go.set()
    results = [q.get(timeout=600) for _ in procs]
    dt = max(r[2] for r in results) - t0
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise SystemExit(f"worker process failed (exit code {p.exitcode}); see its traceback above")
    ids = [i for r in results for i in r[1]]
    c = collections.Counter(ids)
    doubled = sum(1 for v in c.values() if v > 1)
    counts = ops.status_counts(store, run_id)["render"]
    lost = n - counts["done"]
    store.close()
    return n / dt, lost, doubled, sum(1 for r in results if r[1])


def status_latency(url: str, n_prompts: int) -> float:
    store = open_store(url)
    run_id = seed_images(store, n_prompts)
    # a realistic mix of statuses
    with store.transaction() as conn:
        conn.execute(text("UPDATE prompt SET status='done' WHERE id % 3 = 0"))
        conn.execute(text("UPDATE prompt SET status='failed' WHERE id % 97 = 0"))
        conn.execute(text("UPDATE image SET status='done' WHERE id % 4 = 0"))
    if store.dialect == "sqlite":
        with store.transaction() as conn:
            conn.exec_driver_sql("ANALYZE")
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        ops.status_counts(store, run_id)
        times.append(time.perf_counter() - t0)
    store.close()
    return statistics.median(times) * 1000


def start_throwaway_pg(workdir: Path, *, durable: bool) -> str | None:
    """Start a PostgreSQL server with scripts/pg.sh (Debian `postgresql` binaries); None if not installed."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "pg.sh"
    env = {**os.environ, "PG_FSYNC": "on" if durable else "off"}
    r = subprocess.run(["bash", str(script), "start", str(workdir)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"postgresql: not measured ({r.stderr.strip()})")
        return None
    return r.stdout.strip().splitlines()[-1]


def stop_throwaway_pg(workdir: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "pg.sh"
    subprocess.run(["bash", str(script), "stop", str(workdir)], capture_output=True)
    shutil.rmtree(workdir, ignore_errors=True)


def measure(label: str, url_for, *, rows: int, workers: int) -> None:
    rate = single_worker(url_for("single"), rows, 100)
    print(f"{label} claim+complete, 1 worker, {rows} rows, batch 100: {rate:,.0f} rows/s (target >= 3,000)")
    rate1 = single_worker(url_for("single1"), 2000, 1)
    print(f"{label} claim+complete, 1 worker, one row per claim: {rate1:,.0f} rows/s")
    rate, lost, doubled, active = many_workers(url_for("many"), rows, workers, 50)
    target = " (target >= 2,000 rows/s with 4 workers)" if label.startswith("postgresql") else ""
    print(f"{label} {workers} worker processes, {rows} rows, batch 50: {rate:,.0f} rows/s{target}")
    print(f"{label} {workers} worker processes: lost {lost}, doubled {doubled}, workers that got rows {active} "
          f"(target: 0 lost, 0 doubled)")
    ms = status_latency(url_for("status"), 100_000)
    print(f"{label} status counts over 100,000 prompt rows: {ms:.1f} ms median of 30 (target <= 30 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db-url", help="measure only this database (a SQLite path/URL or postgresql+psycopg://)")
    ap.add_argument("--backends", default="sqlite,postgresql",
                    help="without --db-url: which to measure (default both; PostgreSQL from $M2I_BENCH_PG_URL "
                         "or a throwaway server started with scripts/pg.sh)")
    ap.add_argument("--pg-fsync", choices=["on", "off"], default="on",
                    help="throwaway server: durable commits (on, default) or test settings (off)")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="m2i-bench-"))
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start")
    if args.db_url:
        label = "postgresql" if "postgres" in args.db_url else "sqlite"
        measure(label, lambda name: args.db_url, rows=args.rows, workers=args.workers)
        return
    for backend in args.backends.split(","):
        if backend == "sqlite":
            measure("sqlite", lambda name: str(tmp / f"{name}.db"), rows=args.rows, workers=args.workers)
        elif backend == "postgresql":
            url = os.environ.get("M2I_BENCH_PG_URL")
            workdir = None
            if not url:
                workdir = Path(tempfile.mkdtemp(prefix="m2i-bench-pg-"))
                os.chmod(workdir, 0o755)
                url = start_throwaway_pg(workdir, durable=args.pg_fsync == "on")
                if url is None:
                    continue
            try:
                label = f"postgresql (fsync {args.pg_fsync})" if workdir else "postgresql"
                measure(label, lambda name, url=url: url, rows=args.rows, workers=args.workers)
            finally:
                if workdir is not None:
                    stop_throwaway_pg(workdir)
        else:
            raise SystemExit(f"unknown backend {backend!r}; use sqlite and/or postgresql")
    load = os.getloadavg()
    print(f"machine: load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at end")


if __name__ == "__main__":
    main()
