"""The analysis process pool starts even when sys.stderr is not a real file (inside the dashboard)."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = r"""
import io, sys
from m2i.runner import make_process_pool
class Captured(io.StringIO):
    def fileno(self):
        return -1          # what a UI's stderr capture reports
sys.stderr = Captured()
try:
    pool = make_process_pool(1)
    print(pool.submit(pow, 2, 10).result(timeout=120))
    pool.shutdown()
except Exception as exc:
    print(repr(exc))
"""


def test_pool_starts_with_a_captured_stderr():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1024"


def test_captured_stream_really_breaks_a_plain_spawn():
    """The condition the fix is for: without it, spawning with such a stderr fails."""
    code = CODE.replace("from m2i.runner import make_process_pool", "import multiprocessing as mp\n"
                        "from concurrent.futures import ProcessPoolExecutor\n"
                        "make_process_pool = lambda n: ProcessPoolExecutor(n, mp_context=mp.get_context('spawn'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert "fds_to_keep" in r.stdout


ANALYZE = r"""
from m2i.audio.datasets import load_dataset
from m2i.audio.analyze import analyze_clip
clip = next(iter(load_dataset("demo")))
print(analyze_clip(clip.pcm, 16000)["features"]["key"])
"""


def test_concurrent_workers_never_corrupt_the_numba_cache(tmp_path):
    """Two processes compiling at once used to leave a cache that crashed the next process (SIGSEGV)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "M2I_NUMBA_CACHE_BASE"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")
    first = [subprocess.Popen([sys.executable, "-c", ANALYZE], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    keys = []
    for p in first:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        keys.append(out.strip())
    again = subprocess.run([sys.executable, "-c", ANALYZE], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, f"exit {again.returncode}: {again.stderr[-2000:]}"
    assert again.stdout.strip() == keys[0] == keys[1]
    assert sorted(p.name for p in (tmp_path / "numba").iterdir()) == ["slot-0", "slot-1"]


ORPHAN = r"""
import os
from m2i.runner import make_process_pool
pool = make_process_pool(2)
import time
for f in [pool.submit(time.sleep, 1.0) for _ in range(2)]:  # two at once: both workers start
    f.result()
pids = list(pool._processes)
print(" ".join(map(str, sorted(pids))), flush=True)
os.kill(os.getpid(), 9)  # the runner is killed: no pool shutdown, no atexit
"""


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_pool_workers_exit_when_the_runner_is_killed():
    """kill -9 of a runner used to leave its analysis workers (a few hundred MB each) running for ever."""
    import os
    import signal
    import time

    r = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, text=True, timeout=180)
    assert r.returncode == -signal.SIGKILL, r.stderr
    pids = [int(p) for p in r.stdout.split()]
    assert pids and os.getpid() not in pids
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    left = [p for p in pids if _alive(p)]
    for p in left:  # don't leave them behind if the assertion fails
        os.kill(p, signal.SIGKILL)
    assert left == []


RUNNER = r"""
import json, os, signal, sys, threading, time
from m2i.audio.datasets import load_dataset
from m2i.runner import Runner, run_blocking
from m2i.stages import AnalyzeStage
from m2i.store import open_store, ops


def main():
    db, mode = sys.argv[1], sys.argv[2]
    store = open_store(db)
    rid = ops.create_run(store, name="t", config={})
    ops.add_samples(store, rid, load_dataset("demo"))
    stage = AnalyzeStage(workers=1)

    def kill_every_worker():  # workers that die as they start, whatever the clip
        while True:
            pool = stage._pool
            for pid in list(pool._processes) if pool is not None and pool._processes else []:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)

    if mode == "kill-every-worker":
        threading.Thread(target=kill_every_worker, daemon=True).start()
        run_blocking(Runner(store, rid, [stage]), handle_signals=False)
        return

    def after_first_clip():
        while ops.status_counts(store, rid)["analyze"]["done"] < 1 or not (stage._pool and stage._pool._processes):
            time.sleep(0.01)
        if mode == "kill-worker":  # what the out-of-memory killer does
            for pid in list(stage._pool._processes):
                os.kill(pid, signal.SIGKILL)
        elif mode == "term-every-process":  # what Slurm's scancel does: SIGTERM to each process
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            for pid in list(stage._pool._processes):
                os.kill(pid, signal.SIGTERM)
        else:  # what `timeout` and job schedulers do: SIGTERM to the whole process group
            print("ready", flush=True)

    threading.Thread(target=after_first_clip, daemon=True).start()
    run_blocking(Runner(store, rid, [stage]), handle_signals=mode != "kill-worker")


if __name__ == "__main__":
    main()
"""


def _rows(db):
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT status, attempts, error FROM sample ORDER BY id").fetchall()
    finally:
        con.close()


def _run(tmp_path, mode):
    """Run RUNNER on the demo clips; its exit and the sample rows (status, attempts, error)."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    db = tmp_path / "m2i.db"
    r = subprocess.run([sys.executable, str(script), str(db), mode], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r, _rows(db)


def test_a_dead_analysis_worker_costs_one_attempt_not_every_clip_after_it(tmp_path):
    """A killed worker (out of memory) used to break the pool for good: every later clip failed."""
    r, rows = _run(tmp_path, "kill-worker")
    assert [s for s, _, _ in rows] == ["done"] * len(rows) and len(rows) >= 5
    assert sum(a for _, a, _ in rows) <= len(rows) + 1  # at most the clip in flight was tried twice
    assert "Traceback" not in r.stderr and "starting a fresh pool" in r.stderr


def test_sigterm_to_the_process_group_lets_the_clip_in_flight_finish(tmp_path):
    """A group-wide SIGTERM used to kill the analysis workers too: the clip in flight failed."""
    import signal

    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    db = tmp_path / "m2i.db"
    p = subprocess.Popen([sys.executable, str(script), str(db), "group-term"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        os.killpg(p.pid, signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-2000:]
    rows = _rows(db)
    assert all(e is None for _, _, e in rows), rows
    assert all(s in ("done", "pending") for s, _, _ in rows)
    assert all(a == 0 for s, a, _ in rows if s == "pending")  # nothing counted against the clips left
    assert sum(s == "done" for s, _, _ in rows) >= 1


def test_sigterm_to_every_process_hands_the_clip_in_flight_back_uncounted(tmp_path):
    """The workers die with the runner's stop: the clip they held goes back to pending, no attempt counted."""
    _, rows = _run(tmp_path, "term-every-process")
    assert all(s in ("done", "pending") for s, _, _ in rows), rows
    assert all(a == 0 for s, a, _ in rows if s == "pending"), rows
    assert sum(s == "pending" for s, _, _ in rows) >= 1


def test_workers_that_always_die_end_the_stage_with_one_clear_reason(tmp_path):
    """A pool is started afresh at most a few times in a row; then the clips fail with the reason, not for ever."""
    r, rows = _run(tmp_path, "kill-every-worker")
    assert [s for s, _, _ in rows] == ["failed"] * len(rows)
    assert r.stderr.count("an analysis worker process died") == 3
    gave_up = [e for _, _, e in rows if "died 3 times in a row" in e]
    assert gave_up and all("__main__" in e for e in gave_up)


SCRIPT_BODY = """\
runs = open_runs(sys.argv[1])
run = runs.new_run("script", llm="local", images="preview")
run.ingest("demo", samples=1)
print(run.process(["analyze"])["analyze"]["done"])
"""


def test_an_unguarded_script_is_refused_with_its_line_before_any_worker_runs_it(tmp_path):
    """Unguarded, every spawned worker used to import the script again and run it: new runs, failed clips."""
    import sqlite3

    head = "import sys\nfrom m2i.api import open_runs\n\n"
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text(head + SCRIPT_BODY)
    guarded = tmp_path / "guarded.py"
    guarded.write_text(head + "def main():\n" + "".join("    " + ln + "\n" for ln in SCRIPT_BODY.splitlines())
                       + '\n\nif __name__ == "__main__":\n    main()\n')
    r = subprocess.run([sys.executable, str(unguarded), str(tmp_path / "u.db")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0
    assert (f'm2i.errors.InputError: {unguarded}:7 runs m2i at the top level of the script; put it under '
            '`if __name__ == "__main__":`') in r.stderr
    con = sqlite3.connect(tmp_path / "u.db")
    try:
        assert con.execute("SELECT count(*) FROM run").fetchone()[0] == 1  # no run made by a worker
    finally:
        con.close()
    g = subprocess.run([sys.executable, str(guarded), str(tmp_path / "g.db")], capture_output=True, text=True,
                       timeout=300)
    assert g.returncode == 0, g.stderr[-2000:]
    assert g.stdout.strip() == "1"


def test_a_script_read_from_standard_input_analyses_its_clips(tmp_path):
    """`python - <<EOF`, a quick way to try the Python API: its main script is named "<stdin>", which
    every spawned worker tried to open and run; each died as it started and the clip was failed
    after three pools. The script has no file to run again, so the workers start without it."""
    script = "import sys\nfrom m2i.api import open_runs\n\n" + SCRIPT_BODY + "\n"
    r = subprocess.run([sys.executable, "-", str(tmp_path / "s.db")], input=script, capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "1" and "worker process died" not in r.stderr, r.stderr[-2000:]
