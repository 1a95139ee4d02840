"""The runner: stages end to end, failures, two and four runners, kill -9 recovery, graceful stop.

Every test runs on SQLite and on PostgreSQL (the ``db_url`` fixture in conftest.py).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from store_helpers import RecordingStage, all_stages, seed_render_rows, seed_run

from m2i.runner import REPEAT_WINDOW_S, Outcome, Runner, StageStop
from m2i.store import open_store, ops

SCRIPT = Path(__file__).with_name("run_script.py")


def _run(store, run_id, impls, **kw):
    return asyncio.run(Runner(store, run_id, impls, poll_s=0.02, **kw).run())


def _assert_complete(store, run_id, n_samples):
    counts = ops.status_counts(store, run_id)
    assert counts["analyze"]["done"] == n_samples
    for stage in ("generate", "score", "render"):
        assert counts[stage]["done"] == n_samples * 5, (stage, counts)
        assert counts[stage]["pending"] == counts[stage]["running"] == counts[stage]["failed"] == 0
    with store.read() as conn:
        per_sample = conn.execute(text("SELECT sample_id, count(*) FROM prompt GROUP BY sample_id")).all()
        assert all(n == 5 for _, n in per_sample) and len(per_sample) == n_samples
        assert conn.execute(text("SELECT count(DISTINCT prompt_id) FROM score")).scalar() == n_samples * 5
        assert conn.execute(text("SELECT count(DISTINCT prompt_id) FROM image")).scalar() == n_samples * 5


def test_all_stages_run_to_completion(tmp_path, db_url):
    store = open_store(db_url)
    run_id = seed_run(store, 4)
    log = tmp_path / "log"
    _run(store, run_id, all_stages(log))
    _assert_complete(store, run_id, 4)
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 4 + 3 * 20  # each row processed once
    # a second run on the same database redoes nothing
    _run(store, run_id, all_stages(log))
    assert len(log.read_text().split("\n")[:-1]) == len(lines)


def test_the_software_that_wrote_a_runs_rows_is_recorded_and_reported(tmp_path, db_url):
    """A run continued after an upgrade holds rows written by two versions: the report says which,
    while a runner that found nothing to do (a finished run opened again) records nothing."""
    from m2i.provenance import software_line
    from m2i.report import build_report, format_text

    store = open_store(db_url)
    run_id = seed_run(store, 2)
    _run(store, run_id, all_stages(tmp_path / "log"))
    _run(store, run_id, all_stages(tmp_path / "log"))  # nothing left: writes no row
    messages = [e["message"] for e in ops.recent_events(store, run_id)]
    assert messages.count(software_line()) == 1
    line = software_line()
    assert line.startswith("software: m2i 0.1.0") and " · python 3." in line and " · librosa " in line
    report = build_report(store, run_id)
    assert [x["software"] for x in report["software"]] == [line.removeprefix("software: ")]
    assert f"\n{line}\n" in format_text(report) and "NOTE: 2 different" not in format_text(report)
    # a later runner under another version (an upgrade between two sessions) writes rows too
    ops.log_event(store, run_id, "software: m2i 0.2.0 · python 3.12.1 · librosa 0.11.0")
    text_report = format_text(build_report(store, run_id))
    assert "NOTE: 2 different software versions wrote this run's rows" in text_report
    assert text_report.index(line.removeprefix("software: ")) < text_report.index(": m2i 0.2.0 · python 3.12.1")
    from m2i.exports import build_exports

    exported = build_exports(store, run_id)["visual_prompts_complete"]["metadata"]["m2i_run"]["software"]
    assert exported == [line.removeprefix("software: "), "m2i 0.2.0 · python 3.12.1 · librosa 0.11.0"]


def test_a_failing_stage_keeps_the_error_and_others_go_on(db_url):
    store = open_store(db_url)
    run_id = seed_run(store, 3, config={"max_attempts": 2, "seed": 0})
    impls = [RecordingStage("analyze", fail_ids={1})] + [RecordingStage(s) for s in ("generate", "score", "render")]
    _run(store, run_id, impls)
    counts = ops.status_counts(store, run_id)
    assert counts["analyze"]["failed"] == 1 and counts["analyze"]["done"] == 2
    assert counts["render"]["done"] == 10
    with store.read() as conn:
        row = conn.execute(text("SELECT attempts, error FROM sample WHERE idx=1")).one()
    assert row.attempts == 2 and row.error == "boom on 1"
    # requeue --failed and a fixed stage: the clip completes
    assert ops.requeue(store, run_id=run_id)["analyze"] == 1
    _run(store, run_id, all_stages())
    _assert_complete(store, run_id, 3)


def test_a_stage_that_raises_does_not_stop_the_runner(db_url):
    class Exploding(RecordingStage):
        async def process(self, rows, ctx):
            if any(r["idx"] == 0 for r in rows):
                raise ValueError("unexpected")
            return await super().process(rows, ctx)

    store = open_store(db_url)
    run_id = seed_run(store, 2, config={"max_attempts": 1})
    _run(store, run_id, [Exploding("analyze")])
    with store.read() as conn:
        rows = dict(conn.execute(text("SELECT idx, coalesce(error, status) FROM sample")).all())
    assert rows[0] == "ValueError: unexpected" and rows[1] == "done"


def test_a_runner_on_a_paused_run_says_so_waits_and_goes_on_when_resumed(db_url, caplog):
    """`m2i run` on a paused run used to sit silent for ever; it says why it waits, then finishes on resume."""
    store = open_store(db_url)
    run_id = seed_run(store, 2)
    ops.set_paused(store, run_id, True)

    def states():
        with store.read() as conn:
            return [r["state"] for r in ops.runners(conn, run_id)]

    async def main():
        task = asyncio.create_task(Runner(store, run_id, all_stages(), poll_s=0.02).run())
        await asyncio.sleep(1.5)
        assert not task.done() and ops.status_counts(store, run_id)["analyze"]["done"] == 0
        assert states() == ["waiting"]  # m2i status: "waiting for `m2i resume`"
        ops.set_paused(store, run_id, False)
        for _ in range(200):
            if task.done() or states() == ["working"]:
                break
            await asyncio.sleep(0.05)
        assert task.done() or states() == ["working"]
        await asyncio.wait_for(task, 30)

    with caplog.at_level("INFO", logger="m2i"):
        asyncio.run(main())
    said = [r.getMessage() for r in caplog.records]
    assert sum("is paused: this runner waits for `m2i resume`" in m for m in said) == 1, said
    assert any(m.endswith("resumed") for m in said)
    _assert_complete(store, run_id, 2)


def test_a_runner_waits_out_another_programs_open_transaction_and_finishes(tmp_path, monkeypatch, caplog):
    """A runner found the SQLite file locked past the busy timeout (an sqlite3 shell left inside
    BEGIN, DB Browser with unsaved changes) and died with a traceback, its work in flight unsaved.
    It now waits, says so once per busy timeout (not once per stage), and goes on when let go."""
    import sqlite3
    import threading

    from m2i.store import engine

    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 200)
    db = tmp_path / "m2i.db"
    store = open_store(db)
    run_id = seed_run(store, 2)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(1.5, lambda: other.execute("ROLLBACK")).start()
    with caplog.at_level("INFO", logger="m2i"):
        _run(store, run_id, all_stages())
    other.close()
    _assert_complete(store, run_id, 2)
    said = [r.getMessage() for r in caplog.records if r.name == "m2i.store.engine"]
    waiting = [m for m in said if "has been locked by another program" in m]
    assert waiting and all(m.endswith("waiting for it: commit or close that program and the run goes on.")
                           for m in waiting), said
    assert len(waiting) <= 1.5 / 0.1 + 1, "told once per half busy timeout, whatever the number of stages waiting"
    # "free" once per story, after its "locked" (with a 0.2 s busy timeout the runner's own threads,
    # under load, may also keep each other waiting that long: a second, short story)
    story = ["free" if m.startswith("the database is free again after about") else "locked"
             for m in said if "locked by another program" in m or m.startswith("the database is free again")]
    told = [k for i, k in enumerate(story) if i == 0 or k != story[i - 1]]
    assert told[-1] == "free" and told == ["locked", "free"] * (len(told) // 2), story
    assert story.count("free") == len(told) // 2, "each story is over once: one 'free' however many stages waited"


def test_a_runner_says_who_it_is_and_that_it_loads_its_models_until_it_works(db_url, monkeypatch):
    """A runner loading SDXL (minutes, with torch.compile) holds no row: the dashboard said "nothing
    running" and people killed it. Its row in `runner` says it is starting, then working; it is
    renewed while it runs and gone when it ends."""
    monkeypatch.setattr(ops, "RUNNER_BEAT_S", 0.2)
    store = open_store(db_url)
    run_id = seed_run(store, 2)
    loaded = asyncio.Event()

    class LoadsAModel(RecordingStage):
        async def setup(self, ctx):
            await loaded.wait()

    def now_seen():
        with store.read() as conn:
            return ops.runners(conn, run_id)

    async def until(cond, what):
        for _ in range(300):
            if got := cond():
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"waited 15 s for {what}")

    async def main():
        stages = [*all_stages()[:3], LoadsAModel("render")]
        task = asyncio.create_task(Runner(store, run_id, stages, poll_s=0.02, worker="box:7").run())
        [first] = await until(now_seen, "the runner's row")
        assert (first["worker"], first["state"]) == ("box:7", "starting")
        [later] = await until(lambda: [r for r in now_seen() if r["seen_at"] > first["seen_at"]], "a heartbeat")
        assert later["state"] == "starting" and later["started_at"] == first["started_at"]
        assert ops.status_counts(store, run_id)["analyze"]["done"] == 0  # nothing claimed while loading
        loaded.set()
        await until(lambda: task.done() or [r["state"] for r in now_seen()] == ["working"], "working")
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    _assert_complete(store, run_id, 2)
    assert now_seen() == []  # a runner that ended is no longer listed
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM runner")).scalar() == 0


def test_runners_that_are_gone_are_not_listed(db_url):
    from datetime import timedelta

    store = open_store(db_url)
    run_id = seed_run(store, 1)
    for worker in ("here:111", "here:333", "elsewhere:222", "elsewhere:444"):
        ops.runner_seen(store, run_id, worker, state="working")
    with store.transaction() as conn:  # elsewhere:444's box was lost two minutes ago
        conn.execute(text("UPDATE runner SET seen_at = :t WHERE worker = 'elsewhere:444'"),
                     {"t": ops.utcnow() - timedelta(seconds=2 * ops.RUNNER_GONE_S)})
    with store.read() as conn:
        listed = ops.runners(conn, run_id, host="here", alive=lambda pid: pid == 111)  # here:333 was killed
    assert [r["worker"] for r in listed] == ["here:111", "elsewhere:222"]
    ops.runner_left(store, run_id, "here:111")
    # a heartbeat still in its thread as the runner ended (a flaky CI run caught it) does not bring its row back
    ops.runner_seen(store, run_id, "here:111")
    with store.read() as conn:
        assert [r["worker"] for r in ops.runners(conn, run_id, host="there")] == ["here:333", "elsewhere:222"]


def test_graceful_stop_releases_work_in_flight(db_url):
    store = open_store(db_url)
    run_id = seed_run(store, 4)

    async def main():
        runner = Runner(store, run_id, [RecordingStage("analyze", delay=5.0, concurrency=2)], poll_s=0.02, grace_s=0.1)
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.5)
        runner.request_stop()
        await task

    asyncio.run(main())
    counts = ops.status_counts(store, run_id)["analyze"]
    assert counts["running"] == 0 and counts["pending"] == 4
    with store.read() as conn:
        assert conn.execute(text("SELECT max(attempts) FROM sample")).scalar() == 0


def test_a_stage_that_cannot_go_on_stops_the_runner_and_hands_every_row_back(db_url):
    """StageStop (a revoked key, say): the rows in flight and the rest stay pending, no attempt counted;
    run() raises the stage's sentence once the runner has stopped; one error event says it."""

    class Revoked(RecordingStage):
        async def process(self, rows, ctx):
            if any(r["idx"] >= 2 for r in rows):
                raise StageStop("the key was revoked; set a new one.")
            return await super().process(rows, ctx)

    store = open_store(db_url)
    run_id = seed_run(store, 6)
    with pytest.raises(StageStop, match="the key was revoked"):
        _run(store, run_id, [Revoked("analyze", concurrency=3)])
    counts = ops.status_counts(store, run_id)["analyze"]
    assert counts["failed"] == counts["running"] == 0 and counts["done"] + counts["pending"] == 6
    assert counts["done"] <= 2
    with store.read() as conn:
        assert conn.execute(text("SELECT max(attempts) FROM sample WHERE status='pending'")).scalar() == 0
    errors = [e["message"] for e in ops.recent_events(store, run_id) if e["level"] == "error"]
    assert errors == ["the key was revoked; set a new one."]


def test_rows_handed_back_cost_no_attempt_and_run_again(db_url):
    """Outcome(handback=True) (the provider was unavailable): pending again, the attempt not counted."""

    class Unavailable(RecordingStage):
        seen: set = set()

        async def process(self, rows, ctx):
            first = [r for r in rows if r["id"] not in self.seen]
            self.seen.update(r["id"] for r in rows)
            if first:
                return [Outcome(id=r["id"], error="provider unavailable", handback=True) for r in rows]
            return await super().process(rows, ctx)

    store = open_store(db_url)
    run_id = seed_run(store, 3)
    _run(store, run_id, [Unavailable("analyze")])
    with store.read() as conn:
        assert conn.execute(text("SELECT status, attempts FROM sample")).all() == [("done", 1)] * 3


def _spawn(db, run_id, log, delay, lease="2.0", stages="analyze,generate,score,render", batch=2):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(db), str(run_id), str(log), str(delay), stages, lease, str(batch)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )


def test_two_runners_never_process_a_row_twice(tmp_path, db_url):
    db = db_url
    store = open_store(db)
    run_id = seed_run(store, 12)
    log = tmp_path / "log"
    procs = [_spawn(db, run_id, log, 0.01, lease="60") for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    _assert_complete(store, run_id, 12)
    entries = [tuple(line.split()[:2]) for line in log.read_text().splitlines()]
    dup = [k for k, n in collections.Counter(entries).items() if n > 1]
    assert dup == []
    pids = {line.split()[2] for line in log.read_text().splitlines()}
    assert len(pids) == 2  # both runners did work


def test_kill_9_then_run_again_finishes_everything_exactly_once(tmp_path, db_url):
    db = db_url
    store = open_store(db)
    run_id = seed_run(store, 10)
    log = tmp_path / "log"
    p = _spawn(db, run_id, log, 0.05, lease="1.0")
    deadline = time.time() + 60
    while time.time() < deadline:
        if log.exists() and sum(1 for line in log.read_text().splitlines() if line.startswith("generate")) >= 8:
            break
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    mid = ops.status_counts(store, run_id)
    assert mid["render"]["done"] < 50  # it really was killed mid-run
    time.sleep(1.1)  # the dead runner's leases expire
    p2 = _spawn(db, run_id, log, 0.0, lease="1.0")
    out, err = p2.communicate(timeout=120)
    assert p2.returncode == 0, err
    _assert_complete(store, run_id, 10)


@pytest.mark.slow
def test_four_runners_share_10000_rows_exactly_once(tmp_path, db_url):
    """Four runner processes on one database, 10,000 image rows: each row is done once, by one
    worker, and every runner got a share."""
    store = open_store(db_url)
    run_id = seed_render_rows(store, 10_000)
    log = tmp_path / "log"
    procs = [_spawn(db_url, run_id, log, 0.0, lease="60", stages="render", batch=50) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    counts = ops.status_counts(store, run_id)["render"]
    assert counts == {"pending": 0, "running": 0, "done": 10_000, "failed": 0, "cancelled": 0}
    lines = log.read_text().splitlines()
    ids = collections.Counter(line.split()[1] for line in lines)
    assert len(ids) == 10_000 and max(ids.values()) == 1  # exactly once
    assert len({line.split()[2] for line in lines}) == 4  # all four runners worked
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM image WHERE attempts <> 1 OR worker IS NULL")).scalar() == 0
        assert conn.execute(text("SELECT count(DISTINCT worker) FROM image")).scalar() == 4
    store.close()


def _started(log, n=2, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the runner did no work")


@pytest.mark.parametrize("signals", [
    pytest.param((signal.SIGHUP,), id="sighup"),  # an SSH session dropped without tmux
    pytest.param((signal.SIGTERM, signal.SIGTERM), id="sigterm-to-process-and-group"),  # what `timeout` sends
])
def test_hangup_and_a_repeated_sigterm_stop_gracefully(tmp_path, signals):
    """SIGHUP used to kill the runner on the spot (its rows 'running' until their lease ran out),
    and `timeout`'s SIGTERM to the process and then its group counted as two signals: exit at once."""
    db = tmp_path / "m2i.db"
    store = open_store(db)
    run_id = seed_run(store, 6)
    log = tmp_path / "log"
    p = _spawn(db, run_id, log, 0.5, lease="600")
    _started(log)
    for sig in signals:
        os.kill(p.pid, sig)
        time.sleep(0.05)  # delivered one by one, not merged by the kernel while pending
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "done" in out and "second interrupt" not in err
    counts = ops.status_counts(store, run_id)
    assert all(c["running"] == 0 for c in counts.values()), counts  # every row handed back or finished


def test_timeouts_second_sigterm_while_a_stopped_runner_exits_does_not_kill_it(tmp_path):
    """A runner with little in flight stops within milliseconds; `timeout`'s second SIGTERM (to the
    group) then arrived after Python had put the default signal actions back on its way out, and
    killed a runner that had stopped gracefully: exit status -15 instead of 0 (seen in CI)."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from store_helpers import RecordingStage\n"
        "from m2i.runner import Runner, run_blocking\n"
        "from m2i.store import open_store\n"
        "class LateExit:\n"  # destroyed with the modules, after Python has put the default actions back
        "    def __del__(self, path=sys.argv[3], open=open, sleep=time.sleep):\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('exiting')\n"
        "        sleep(1.0)\n"
        "late_exit = LateExit()\n"
        "runner = Runner(open_store(sys.argv[1]), 1, [RecordingStage('analyze', log=Path(sys.argv[2]), delay=0.02)],\n"
        "                poll_s=0.05, grace_s=5)\n"
        "run_blocking(runner)\n"
        "print('stopped', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(Path(__file__).parent)])}
    for attempt in range(3):  # a machine too busy to see the exit within the window tries again
        db, log, marker = tmp_path / f"m2i{attempt}.db", tmp_path / f"log{attempt}", tmp_path / f"exiting{attempt}"
        seed_run(open_store(db), 400)
        p = subprocess.Popen([sys.executable, "-c", code, str(db), str(log), str(marker)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _started(log, n=1)
        t0 = time.monotonic()
        os.kill(p.pid, signal.SIGTERM)
        deadline = t0 + 30
        while not marker.exists():
            assert time.monotonic() < deadline and p.poll() is None, "the runner did not stop"
            time.sleep(0.005)
        in_window = time.monotonic() - t0 < REPEAT_WINDOW_S
        os.kill(p.pid, signal.SIGTERM)  # the same SIGTERM again, to the group
        out, err = p.communicate(timeout=60)
        if in_window:
            break
    assert in_window, "the machine was too busy to send the second signal within the repeat window"
    assert "stopped" in out and "second interrupt" not in err
    assert p.returncode == 0, err


def test_a_second_ctrl_c_after_the_work_stopped_exits_at_once_without_a_traceback(tmp_path):
    """After the first Ctrl-C the loop (and its signal handlers) ends; a second Ctrl-C while the
    process winds down raised KeyboardInterrupt in an atexit hook: a traceback, and exit status 0."""
    code = (
        "import os, signal, sys, time\n"
        "from store_helpers import RecordingStage\n"
        "from m2i.runner import Runner, run_blocking\n"
        "from m2i.store import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "runner = Runner(store, 1, [RecordingStage('analyze', delay=0.2)], poll_s=0.05, grace_s=5)\n"
        "asyncio_stop = lambda: os.kill(os.getpid(), signal.SIGINT)\n"
        "import threading; threading.Timer(0.5, asyncio_stop).start()\n"
        "run_blocking(runner)\n"
        "print('stopped', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(5)\n"
        "print('still here', flush=True)\n"
    )
    db = tmp_path / "m2i.db"
    seed_run(open_store(db), 20)
    r = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(Path(__file__).parent)])})
    assert "stopped" in r.stdout and "still here" not in r.stdout
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr


def _mid_work(store, run_id: int, log: Path) -> bool:
    """Whether the runner holds a row it has not yet worked on (a :class:`RecordingStage` logs a row
    after its delay, then the row is marked done: a 'running' row already in the log may be done a
    moment later, and a kill then found none running, about one CI run in five on PostgreSQL)."""
    from sqlalchemy import select

    logged = {tuple(line.split()[:2]) for line in log.read_text().splitlines()} if log.exists() else set()
    with store.read() as conn:
        for stage in ops.STAGE_ORDER:
            t = ops.table_of(stage)
            held = conn.execute(select(t.c.id).where(t.c.run_id == run_id, t.c.status == "running")).scalars()
            if any((stage, str(i)) not in logged for i in held):
                return True
    return False


def test_after_kill_9_a_new_runner_on_the_same_host_takes_the_dead_ones_rows_at_once(tmp_path, db_url):
    """The rows of a runner killed with kill -9 used to stay 'running' until their lease ran out
    (two minutes by default) while the runner started again sat idle; its pid is gone, so they
    are taken back at once."""
    store = open_store(db_url)
    run_id = seed_run(store, 6)
    log = tmp_path / "log"
    p = _spawn(db_url, run_id, log, 1.0, lease="600")
    _started(log)
    deadline = time.monotonic() + 30
    while not _mid_work(store, run_id, log):  # kill it mid-row
        assert time.monotonic() < deadline, "the runner never held a row"
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert sum(c["running"] for c in ops.status_counts(store, run_id).values()) > 0
    t0 = time.monotonic()
    p2 = _spawn(db_url, run_id, log, 0.0, lease="600")
    out, err = p2.communicate(timeout=120)
    assert p2.returncode == 0, err
    assert time.monotonic() - t0 < 60  # not the 600 s lease
    _assert_complete(store, run_id, 6)
    events = [e["message"] for e in ops.recent_events(store, run_id)]
    assert any("taken back" in m and f":{p.pid}" in m for m in events), events


def test_a_runner_killed_three_times_while_analysing_does_not_fail_its_clips(tmp_path, db_url):
    """Clips are analysed in pool processes, so a runner's death says nothing about them. But the
    restarted runner's first claim took the dead one's expired rows (the attempt counted) before its
    reaper looked for dead runners, so each kill cost the clips an attempt, and a runner killed three
    times while analysing (the out-of-memory killer, restarted after the lease) failed the clips it
    held "on every attempt" (seen in CI, in the end-to-end kill -9 test)."""
    store = open_store(db_url)
    run_id = seed_run(store, 4)
    log = tmp_path / "log"
    for _ in range(3):
        p = _spawn(db_url, run_id, log, 30.0, lease="1.0", stages="analyze")
        deadline = time.monotonic() + 30
        while sum(c["running"] for c in ops.status_counts(store, run_id).values()) < 4:  # kill it mid-row
            assert time.monotonic() < deadline and p.poll() is None, "the runner never held the rows"
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(1.2)  # the dead runner's leases expire before the next one starts
    p = _spawn(db_url, run_id, log, 0.0, lease="1.0", stages="analyze")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert ops.status_counts(store, run_id)["analyze"] == {"pending": 0, "running": 0, "done": 4, "failed": 0,
                                                          "cancelled": 0}
    with store.read() as conn:
        assert conn.execute(text("SELECT max(attempts) FROM sample")).scalar() == 1


def test_rows_of_a_live_runner_or_another_host_are_not_taken_back(db_url):
    store = open_store(db_url)
    run_id = seed_run(store, 3)
    ops.claim(store, "analyze", worker="here:111", n=1, lease_s=600, run_id=run_id)
    ops.claim(store, "analyze", worker="elsewhere:222", n=1, lease_s=600, run_id=run_id)
    ops.claim(store, "analyze", worker="here:333:cuda:0", n=1, lease_s=600, run_id=run_id)
    dead = ops.expire_dead_workers(store, "analyze", host="here", run_id=run_id, alive=lambda pid: pid == 111)
    assert dead == {"here:333:cuda:0": 1}
    taken = ops.claim(store, "analyze", worker="here:444", n=3, lease_s=600, run_id=run_id)
    assert [r["attempts"] for r in taken] == [1]  # only the dead one's row; analysis: its attempt not counted


def test_running_rows_are_told_apart_by_whether_their_runner_still_holds_them(db_url):
    """After `kill -9` (or the OOM killer, or a lost box) a row stays 'running' until another runner
    claims it: `m2i status` and the dashboard said "working" for as long as nobody ran m2i again."""
    store = open_store(db_url)
    run_id = seed_run(store, 5)
    ops.claim(store, "analyze", worker="here:111", n=1, lease_s=600, run_id=run_id)  # alive
    ops.claim(store, "analyze", worker="elsewhere:222", n=1, lease_s=600, run_id=run_id)  # another box, lease current
    ops.claim(store, "analyze", worker="here:333", n=1, lease_s=600, run_id=run_id)  # killed on this box
    ops.claim(store, "analyze", worker="elsewhere:444", n=1, lease_s=-5, run_id=run_id)  # its lease ran out
    with store.read() as conn:
        flight = ops.in_flight(conn, run_id, host="here", alive=lambda pid: pid == 111)
    assert (flight.held, flight.left, flight.gone) == (2, 2, ("elsewhere:444", "here:333"))
    with store.read() as conn:  # seen from another machine, a runner of "here" can only be judged by its lease
        assert ops.in_flight(conn, run_id, host="there", alive=lambda pid: False) == ops.InFlight(3, 1, ("elsewhere:444",))
