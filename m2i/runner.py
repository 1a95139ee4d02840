"""The asyncio runner: one worker group per stage, leases, graceful shutdown.

Each stage is a :class:`StageImpl` (the adapters in :mod:`m2i.stages`): the runner claims rows
for it, keeps their leases fresh while it works, and writes what it returns. A stage's group
claims up to ``batch_size * concurrency`` rows at a time and runs up to ``concurrency`` batches
at once; CPU-heavy stages hand their work to a process pool (:attr:`RunContext.executor`), the
image stage keeps two batches in flight on its device (one generating, one writing its PNGs).

Shutdown: the first :meth:`Runner.request_stop` (SIGINT/SIGTERM/SIGHUP) stops claiming; batches in
flight get ``grace_s`` to finish, after which they are cancelled and their rows handed back
(pending again, the attempt not counted). A second signal exits the process at once; the
leases of its rows then expire and another runner takes them.

A stage that cannot go on at all (its LLM provider rejected the key, or has answered nothing for
a long time) raises :class:`StageStop`: its rows are handed back, the runner stops the same
graceful way, and :meth:`Runner.run` then raises that error (one sentence; the CLI exits 1).
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from m2i.errors import InputError, M2IError
from m2i.procs import pool_size
from m2i.provenance import software_line
from m2i.store import ops
from m2i.store.engine import Store

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a stage made of one row: ``values`` to store, or an ``error``."""

    id: int
    values: dict[str, Any] | None = None
    error: str | None = None
    retryable: bool = True
    # the work was lost for a reason outside the row (a pool worker process died): during a stop
    # the row goes back to pending with the attempt not counted; otherwise it is a retryable failure
    lost: bool = False
    # not the row's fault at all (its LLM provider is unavailable): pending again, the attempt not
    # counted, whether or not the runner is stopping; ``error`` only says why
    handback: bool = False


class StageStop(M2IError):
    """Raised by :meth:`StageImpl.process` (or ``setup``) when no row of the stage can succeed until
    the user acts; the message is the one sentence to show. The runner hands the rows back (the
    attempt not counted), stops gracefully and raises it from :meth:`Runner.run`."""


@dataclass
class RunContext:
    store: Store
    run: dict[str, Any]
    worker: str
    executor: Executor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stop: asyncio.Event | None = None
    """Set when the runner stops (a signal, or a stage that cannot go on): long waits end on it."""

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    @property
    def run_id(self) -> int:
        return int(self.run["id"])

    @property
    def config(self) -> dict[str, Any]:
        return self.run.get("config") or {}

    def event(self, message: str, *, level: str = "info", stage: str | None = None, item: int | None = None) -> None:
        ops.log_event(self.store, self.run_id, message, level=level, stage=stage, item=item)


class StageImpl(abc.ABC):
    """A stage adapter. Subclasses set ``name`` and implement :meth:`process`."""

    name: str = ""
    batch_size: int = 1
    concurrency: int = 1
    worker_tag: str = ""
    """Added to the runner's worker id (``host:pid``) for rows this adapter takes, e.g. its device."""

    async def setup(self, ctx: RunContext) -> None:
        """Load models, check providers. Raise :class:`M2IError` with one sentence to refuse to start."""

    @abc.abstractmethod
    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        """Work on claimed rows; return one :class:`Outcome` per row (a row left out is failed)."""

    async def finalize(self, ctx: RunContext) -> None:
        """Called once when the stage has no work left (e.g. write the run's report)."""

    async def close(self) -> None:
        """Release models and connections."""


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
"""Signals that stop a runner gracefully. SIGHUP too: an SSH session that drops without tmux
hangs up its runner, which then hands its rows back instead of leaving them 'running'."""

REPEAT_WINDOW_S = 0.5
"""The same SIGTERM or SIGHUP repeated within this time counts once: ``timeout`` and some job
schedulers send SIGTERM to the process and then to its process group, which is not a user's
second stop. A second Ctrl-C always counts."""


REAP_EVERY_S = 5.0
"""How often a stage, before it claims, looks for rows held by a runner of this host that is gone (kill -9)."""


def exit_now() -> None:
    """The second stop signal: exit at once; the rows' leases expire and the next runner takes them."""
    log.warning("second interrupt: exiting now; leases will expire and the rows run again")
    os._exit(130)


def worker_id(tag: str = "") -> str:
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{tag}" if tag else base


class Runner:
    """Drives the stages of one run until no work is left or a stop is requested."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        impls: Sequence[StageImpl],
        *,
        lease_s: float = 120.0,
        poll_s: float = 0.2,
        grace_s: float = 30.0,
        executor: Executor | None = None,
        worker: str | None = None,
        on_progress: Callable[[dict[str, dict[str, int]]], None] | None = None,
    ) -> None:
        self.store = store
        store.wait_when_locked = True  # another program's open transaction pauses the run, never ends it
        self.run_id = run_id
        self.impls = list(impls)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.executor = executor
        self.worker = worker or worker_id()
        self.on_progress = on_progress
        self._stop = asyncio.Event()
        self._signals = 0
        self._first_signal = 0.0
        self._first_signum: int | None = None
        self._reaped: dict[str, float] = {}
        self._pause_checked = -1e9
        self._paused_seen = False
        self._software_logged = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.halted: M2IError | None = None
        """Why a stage stopped the runner (:class:`StageStop`), raised by :meth:`run` at its end."""
        self.processed: dict[str, int] = {i.name: 0 for i in self.impls}
        self.stage_names = [i.name for i in self.impls]

    # ------------------------------------------------------------------ control

    def request_stop(self, signum: int | None = None) -> None:
        """A graceful stop; the second one exits at once (:func:`exit_now`).

        The same SIGTERM or SIGHUP again within :data:`REPEAT_WINDOW_S` counts once (``timeout``
        signals the process and then its group); a second Ctrl-C always counts (a terminal sends one
        SIGINT per key press).
        """
        now = time.monotonic()
        if self._repeats_first_signal(signum, now):
            return
        self._signals += 1
        if self._signals >= 2:
            exit_now()
        self._first_signal, self._first_signum = now, signum
        log.info("stopping: no new work is claimed; finishing what is in flight")
        with contextlib.suppress(RuntimeError):  # after the loop has closed there is nothing to wake
            self._stop.set()

    def _repeats_first_signal(self, signum: int | None, now: float) -> bool:
        """Whether ``signum`` at ``now`` is the first stop signal again, to be counted once: the same
        SIGTERM or SIGHUP within :data:`REPEAT_WINDOW_S` (never a Ctrl-C)."""
        return bool(self._signals and signum is not None and signum == self._first_signum
                    and signum != signal.SIGINT and now - self._first_signal < REPEAT_WINDOW_S)

    def ignore_repeat_at_exit(self) -> None:
        """Registered at exit after a stop signal: a repeat of it is ignored from then on.

        At exit Python puts the default action back on the signals it handled. A runner with little
        in flight stops within milliseconds, and ``timeout``'s second SIGTERM (to the group) then
        killed the process that had stopped gracefully: exit status -15 instead of 0.
        """
        if self._repeats_first_signal(self._first_signum, time.monotonic()):
            with contextlib.suppress(ValueError, OSError):
                signal.signal(self._first_signum, signal.SIG_IGN)  # type: ignore[arg-type]

    def stop_threadsafe(self) -> None:
        """Request a graceful stop from another thread (the dashboard's quit key)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop.set)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def halt(self, stage: str, exc: M2IError) -> None:
        """A stage cannot go on: stop like a graceful stop, and make :meth:`run` raise ``exc``."""
        if self.halted is None:
            self.halted = exc
            log.info("stopping: the %s stage cannot go on; its rows in flight are handed back", stage)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """Stop signals call :meth:`request_stop`, for the rest of the process (main thread only).

        Installed with :func:`signal.signal`, not the loop's ``add_signal_handler``: the loop's
        handlers go with the loop, and a signal that arrives while the loop winds down (``timeout``
        signals the process and then its group) would then kill the process with the default action.
        """
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_from_signal(signum)

    def stop_from_signal(self, signum: int) -> None:
        """:meth:`request_stop` for a stop signal caught on any thread (a signal handler runs between
        the main thread's bytecodes): handed to the runner's loop while it runs."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self.request_stop, signum)  # handlers run between bytecodes of the loop
        else:
            self.request_stop(signum)  # winding down: a repeated SIGTERM is ignored, a second stop exits

    # ------------------------------------------------------------------ main loop

    async def run(self) -> dict[str, dict[str, int]]:
        self._loop = asyncio.get_running_loop()
        run = await asyncio.to_thread(ops.get_run, self.store, self.run_id)
        if run is None:
            raise M2IError(f"Run {self.run_id} does not exist.")
        ctx = RunContext(store=self.store, run=run, worker=self.worker, executor=self.executor, stop=self._stop)
        started: list[StageImpl] = []
        # who works on the run, and that it is loading its models first (minutes for SDXL, holding no row)
        await asyncio.to_thread(ops.runner_seen, self.store, self.run_id, self.worker, state="starting")
        beat = asyncio.create_task(self._beat())
        try:
            for impl in self.impls:
                await impl.setup(ctx)
                started.append(impl)
            await asyncio.to_thread(ops.runner_seen, self.store, self.run_id, self.worker, state="working")
            await asyncio.gather(*(self._stage_loop(impl, ctx) for impl in self.impls))
        finally:
            beat.cancel()
            for impl in reversed(started):
                with contextlib.suppress(Exception):
                    await impl.close()
            try:
                await asyncio.to_thread(ops.runner_left, self.store, self.run_id, self.worker)
            except Exception as exc:  # the row ages out (ops.RUNNER_GONE_S)
                log.debug("could not remove this runner's row: %s", exc)
        if self.halted is not None:
            raise self.halted
        return await asyncio.to_thread(ops.status_counts, self.store, self.run_id)

    async def _beat(self) -> None:
        """Renew this runner's ``runner`` row every :data:`ops.RUNNER_BEAT_S` while it runs."""
        while True:
            await asyncio.sleep(ops.RUNNER_BEAT_S)
            try:
                await asyncio.to_thread(ops.runner_seen, self.store, self.run_id, self.worker)
            except Exception as exc:  # a beat missed is not the run's concern; the next one may land
                log.debug("runner heartbeat failed: %s", exc)

    def worker_for(self, impl: StageImpl) -> str:
        return f"{self.worker}:{impl.worker_tag}" if impl.worker_tag else self.worker

    def _upstream(self, stage: str) -> list[str]:
        order = ops.STAGE_ORDER
        return list(order[: order.index(stage)])

    async def _finished(self, stage: str) -> bool:
        counts = await asyncio.to_thread(ops.status_counts, self.store, self.run_id)
        if self.on_progress is not None:
            self.on_progress(counts)
        if counts[stage]["pending"] + counts[stage]["running"]:
            return False
        for up in self._upstream(stage):
            c = counts[up]
            if c["running"]:
                return False  # someone is producing rows for us
            if c["pending"] and up in self.stage_names:
                return False
        return True

    async def _stage_loop(self, impl: StageImpl, ctx: RunContext) -> None:
        in_flight: set[asyncio.Task] = set()
        stage = impl.name
        cap = max(1, impl.batch_size) * max(1, impl.concurrency)
        try:
            while not self.stopping:
                free_batches = impl.concurrency - len(in_flight)
                rows: list[dict[str, Any]] = []
                if free_batches > 0:
                    # before claiming: a dead runner's rows go back its way (an analysis attempt
                    # not counted), not as expired leases, which would count it
                    await self._take_back_dead(stage)
                    rows = await asyncio.to_thread(
                        ops.claim, self.store, stage, worker=self.worker_for(impl), run_id=self.run_id,
                        n=min(cap, free_batches * impl.batch_size), lease_s=self.lease_s,
                    )
                for i in range(0, len(rows), impl.batch_size):
                    batch = rows[i : i + impl.batch_size]
                    task = asyncio.create_task(self._run_batch(impl, ctx, batch))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if rows:
                    if self._paused_seen:  # claims succeed again: the run was resumed
                        await self._say_if_paused(now=True)
                    continue
                if not in_flight and await self._finished(stage):
                    break
                await self._say_if_paused()
                waiters = [asyncio.create_task(self._stop.wait())]
                if in_flight:
                    waiters.append(asyncio.create_task(asyncio.wait(set(in_flight), return_when=asyncio.FIRST_COMPLETED)))
                done, pending = await asyncio.wait(waiters, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
                for w in pending:
                    w.cancel()
            if not self.stopping:
                await impl.finalize(ctx)
        finally:
            if in_flight:
                _, still = await asyncio.wait(set(in_flight), timeout=self.grace_s)
                for task in still:
                    task.cancel()
                if still:
                    await asyncio.gather(*still, return_exceptions=True)

    async def _say_if_paused(self, *, now: bool = False) -> None:
        """Say once that the run is paused (this runner then waits, it does not exit) and once when resumed."""
        t = time.monotonic()
        if not now and t - self._pause_checked < max(self.poll_s, 1.0):
            return
        self._pause_checked = t
        run = await asyncio.to_thread(ops.get_run, self.store, self.run_id)
        paused = bool(run and run["paused"])
        if paused != self._paused_seen:  # and its runner row says so (m2i status, the run picker)
            await asyncio.to_thread(ops.runner_seen, self.store, self.run_id, self.worker,
                                    state="waiting" if paused else "working")
        if paused and not self._paused_seen:
            log.warning("run %s is paused: this runner waits for `m2i resume` (Ctrl-C stops it)", run["name"])
        elif self._paused_seen and not paused:
            log.info("run %s resumed", run["name"] if run else self.run_id)
        self._paused_seen = paused

    async def _take_back_dead(self, stage: str) -> None:
        """Make the rows of a dead runner on this host claimable (looked for every few seconds)."""
        now = time.monotonic()
        if now - self._reaped.get(stage, -1e9) < REAP_EVERY_S:
            return
        self._reaped[stage] = now
        host = self.worker.split(":")[0]
        dead = await asyncio.to_thread(ops.expire_dead_workers, self.store, stage, host=host, run_id=self.run_id)
        for w, n in dead.items():
            log.info("%s: took back %d row(s) of %s, which is no longer running", stage, n, w)

    async def _renew_forever(self, stage: str, ids: list[int], worker: str) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.lease_s / 3))
            held = await asyncio.to_thread(ops.renew, self.store, stage, ids, worker=worker, lease_s=self.lease_s)
            if held == 0:
                return

    async def _run_batch(self, impl: StageImpl, ctx: RunContext, rows: list[dict[str, Any]]) -> None:
        stage = impl.name
        worker = self.worker_for(impl)
        ids = [r["id"] for r in rows]
        renewer = asyncio.create_task(self._renew_forever(stage, ids, worker))
        try:
            try:
                outcomes = await impl.process(rows, ctx)
            except asyncio.CancelledError:
                await asyncio.shield(asyncio.to_thread(ops.release, self.store, stage, ids, worker=worker))
                raise
            except StageStop as exc:
                first = self.halted is None
                self.halt(stage, exc)
                await asyncio.to_thread(ops.release, self.store, stage, ids, worker=worker)
                if first:
                    await asyncio.to_thread(ctx.event, str(exc), level="error", stage=stage)
                return
            except M2IError as exc:
                outcomes = [Outcome(id=i, error=str(exc), retryable=True) for i in ids]
            except Exception as exc:  # a bug in a stage must not take the runner down
                log.exception("stage %s crashed on rows %s", stage, ids)
                outcomes = [Outcome(id=i, error=f"{type(exc).__name__}: {exc}", retryable=True) for i in ids]
        finally:
            renewer.cancel()
        by_id = {o.id: o for o in outcomes}
        missing = [i for i in ids if i not in by_id]
        for i in missing:
            by_id[i] = Outcome(id=i, error=f"the {stage} stage returned no result for this row", retryable=True)
        good = [(o.id, o.values or {}) for o in by_id.values() if o.error is None]
        if good:
            accepted = await asyncio.to_thread(ops.complete_many, self.store, stage, good, worker=worker)
            self.processed[stage] += sum(accepted)
            if sum(accepted) and not self._software_logged:
                # the first row this runner finished: from now on this software has written into the run
                self._software_logged = True
                await asyncio.to_thread(lambda: ctx.event(software_line()))  # git describe, once, off the loop
        # handed back: the provider was unavailable, or a stop signal sent to every process killed the
        # pool's workers; not the rows' fault
        lost = [o.id for o in by_id.values() if o.error is not None and (o.handback or (o.lost and self.stopping))]
        if lost:
            await asyncio.to_thread(ops.release, self.store, stage, lost, worker=worker)
        for o in by_id.values():
            if o.error is not None and o.id not in lost:
                await asyncio.to_thread(
                    ops.fail, self.store, stage, o.id, worker=worker, error=o.error, retryable=o.retryable,
                    values=o.values,
                )


def make_process_pool(workers: int | None = None) -> Executor:
    """A process pool whose workers ignore Ctrl-C (the runner decides when to stop).

    Raises
    ------
    InputError
        Called from the top level of a script that is not under ``if __name__ == "__main__":``:
        each worker would import the script again and run it (new runs, failed clips).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    where = unguarded_main_line()
    if where is not None:
        raise InputError(f"{where} runs m2i at the top level of the script; put it under "
                         "`if __name__ == \"__main__\":` (each analysis worker process imports the script "
                         "again and would run it too).")
    n = pool_size(workers)
    _start_resource_tracker()
    pool = ProcessPoolExecutor(
        max_workers=n, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
    )
    with _unreadable_main_script_hidden() as hidden:
        if hidden:  # start every worker now, while the spawn cannot see the script name (a busy
            # worker is not idle, so each of these n tasks starts a worker of its own)
            for f in [pool.submit(time.sleep, 0.25) for _ in range(n)]:
                f.result()
    return pool


@contextlib.contextmanager
def _unreadable_main_script_hidden() -> Iterator[bool]:
    """Hide ``__main__.__file__`` while it names no file; yields whether it did.

    A spawned worker first runs the parent's main script, found by that name. A script read from
    standard input (``python - <<EOF``) is named ``<stdin>``, which no worker can open: each died
    as it started, and after three pools the clip was failed. Without the name a worker runs no
    script, as for a notebook or ``python -c``.
    """
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or os.path.isfile(path) or getattr(main, "__spec__", None) is not None:
        yield False
        return
    del main.__file__
    try:
        yield True
    finally:
        main.__file__ = path


def unguarded_main_line() -> str | None:
    """``file:line`` of the statement of the running script that led here, when it sits at the
    script's top level outside ``if __name__ == "__main__":``; None when it is guarded, inside
    a function only called from the guard, or when there is no script file (``python -c``, a
    notebook) or this thread did not start from it."""
    import ast
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    line = None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is main.__dict__:
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None

    def is_main_test(test: ast.expr) -> bool:
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return False
        sides = [test.left, test.comparators[0]]
        return (any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
                and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))

    for node in tree.body:
        if (isinstance(node, ast.If) and is_main_test(node.test)
                and node.lineno <= line <= (node.end_lineno or node.lineno)):
            return None
    return f"{path}:{line}"


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with a real stderr.

    The tracker is started on the first spawn and hands it ``sys.stderr.fileno()``; inside the
    dashboard (``m2i tui --run``) sys.stderr is Textual's capture object, whose descriptor is not
    a real one, and the spawn fails with "bad value(s) in fds_to_keep".
    """
    import sys
    from multiprocessing import resource_tracker

    saved = sys.stderr
    try:
        try:
            ok = saved is not None and saved.fileno() >= 0
        except (AttributeError, OSError, ValueError):
            ok = False
        if not ok and sys.__stderr__ is not None:
            sys.stderr = sys.__stderr__
        resource_tracker.ensure_running()
    finally:
        sys.stderr = saved


def _init_worker(parent: int) -> None:
    """Pool worker start-up: ignore Ctrl-C, leave the runner's process group, and exit when the
    runner that started it is gone.

    Own process group: ``timeout``, job schedulers and ``kill -TERM -PGID`` signal the runner's
    whole group; the runner then stops gracefully and finishes the clips in flight, which it
    could not do if the same signal had killed the workers analysing them.

    A runner killed with ``kill -9`` (or a second Ctrl-C) never shuts its pool down, and the
    workers, blocked on a queue whose write end they hold themselves, would otherwise live on
    (a few hundred MB each) until the machine reboots.
    """
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.setpgrp()
    threading.Thread(target=_exit_with_parent, args=(parent,), name="m2i-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(0)


def run_blocking(runner: Runner, *, handle_signals: bool = True) -> dict[str, dict[str, int]]:
    """Run a :class:`Runner` to completion in a fresh event loop (the CLI's entry)."""

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if handle_signals else {}
    if handle_signals:
        # before the loop starts, and kept after it ends if a stop was asked for: a second signal
        # while the process winds down (summary, pool shutdown at exit) exits at once instead of
        # raising KeyboardInterrupt inside an atexit hook, and `timeout`'s repeated SIGTERM still
        # counts once
        runner.install_signal_handlers()
    t0 = time.perf_counter()
    try:
        return asyncio.run(runner.run())
    finally:
        log.info("runner finished in %.1f s", time.perf_counter() - t0)
        if previous and not runner._signals:  # kept after a stop signal; restored after a stage's own stop
            for sig, handler in previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, handler)
        elif previous:
            atexit.register(runner.ignore_repeat_at_exit)
