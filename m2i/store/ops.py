"""Operations on the run store: runs, ingest, claiming with leases, completion, requeue.

Every mutating call runs in one write transaction (``BEGIN IMMEDIATE`` on SQLite) and returns
what it changed. Claiming is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT :n) RETURNING *``
that also sets the lease owner and expiry; on PostgreSQL the inner select adds
``FOR UPDATE SKIP LOCKED`` (:func:`_skip_locked`, the only dialect-specific function), on SQLite
the transaction is ``BEGIN IMMEDIATE``. Callers never learn which database they talk to.
Mutating calls are retried whole when PostgreSQL picks their transaction as a deadlock victim
(:func:`m2i.store.engine.retry_transient`).

Completing a row creates its downstream rows in the same transaction, so a crash can never
leave a finished sample without its prompts, nor a finished prompt without its score and image.
A completion is accepted only from the worker that holds the row: a worker whose lease expired
and whose row was taken over loses its result instead of writing it twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    null,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from m2i.errors import InputError, StoreError
from m2i.procs import pid_alive
from m2i.store.engine import Store, retry_transient
from m2i.store.models import (
    STAGES,
    TABLES_BY_STAGE,
    Clip,
    Event,
    Image,
    Prompt,
    Report,
    Run,
    RunnerSeen,
    Sample,
    Score,
    StageCount,
    Status,
    utcnow,
)

log = logging.getLogger(__name__)

STAGE_ORDER = ("analyze", "generate", "score", "render")
ACTIVE = (Status.pending.value, Status.running.value)

DEFAULT_MODES: list[dict[str, Any]] = [
    {"mode": "convergent", "count": 3, "temperature": 0.4},
    {"mode": "divergent", "count": 2, "temperature": 0.8},
]


def table_of(stage: str) -> Table:
    try:
        return TABLES_BY_STAGE[stage].__table__  # type: ignore[return-value]
    except KeyError:
        raise InputError(f"Unknown stage {stage!r}; choose one of {', '.join(STAGE_ORDER)}.") from None


def _t(model) -> Table:
    return model.__table__


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (run seed, sample index, slot ...)."""
    h = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------- runs


def check_run_name(name: str) -> None:
    """Refuse a run name that :func:`get_run` would read as a run id (all digits).

    Raises
    ------
    InputError
        ``name`` is all digits.
    """
    if name.isdigit():
        raise InputError(
            f"A run name cannot be all digits ({name!r}), because `--run {name}` means run id {name}; "
            f"choose a name with a letter in it, such as run-{name}."
        )


def create_run(store: Store, *, name: str, config: dict[str, Any]) -> int:
    check_run_name(name)
    with store.transaction() as conn:
        run_id = conn.execute(
            insert(_t(Run)).values(name=name, config=config, created_at=utcnow()).returning(_t(Run).c.id)
        ).scalar_one()
        _event(conn, run_id, "info", None, None, f"run {name!r} created")
    return int(run_id)


def get_run(store: Store, run: int | str | None = None) -> dict[str, Any] | None:
    """A run by id or name; the newest one when ``run`` is None."""
    t = _t(Run)
    q = select(t)
    if run is None:
        q = q.order_by(t.c.id.desc()).limit(1)
    elif isinstance(run, int) or (isinstance(run, str) and run.isdigit()):
        q = q.where(t.c.id == int(run))
    else:
        q = q.where(t.c.name == run).order_by(t.c.id.desc()).limit(1)
    with store.read() as conn:
        row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def list_runs(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r) for r in conn.execute(select(_t(Run)).order_by(_t(Run).c.id)).mappings()]


def no_such_run(store: Store, run: int | str, hint: str = "") -> InputError:
    """The error for a run id or name this store does not have, naming the runs it does have."""
    runs = list_runs(store)
    if not runs:
        return InputError(f"No run {run!r} in this database, which has no run yet; start one with `m2i run`.")
    shown = ", ".join(f"{r['id']} ({r['name']})" for r in runs[-10:])
    more = f"the newest 10 of {len(runs)}" if len(runs) > 10 else "its runs"
    return InputError(f"No run {run!r} in this database ({more}: {shown})" + (f"; {hint}" if hint else "") + ".")


def update_run_config(store: Store, run_id: int, config: dict[str, Any]) -> None:
    with store.transaction() as conn:
        conn.execute(update(_t(Run)).where(_t(Run).c.id == run_id).values(config=config))


@retry_transient
def set_paused(store: Store, run_id: int, paused: bool) -> bool:
    """Pause or resume a run; returns whether anything changed. Work in flight finishes."""
    t = _t(Run)
    with store.transaction() as conn:
        n = conn.execute(update(t).where(t.c.id == run_id, t.c.paused != paused).values(paused=paused)).rowcount
        if n:
            _event(conn, run_id, "info", None, None, "run paused" if paused else "run resumed")
    return bool(n)


# --------------------------------------------------------------------------- ingest


INGEST_NEWS_S = 10.0
"""How often a long ingest says how far it is."""


def add_samples(store: Store, run_id: int, clips: Iterable[Any], *, limit: int | None = None) -> dict[str, int]:
    """Add clips (``m2i.audio.datasets.Clip``-like: source, meta, pcm, error) to a run.

    A clip whose audio is already in the run (same SHA-256) is skipped; a bad clip becomes a
    failed sample holding its reason. ``limit`` caps the run's usable clips (``--samples N``): the
    bad clips met on the way are recorded but do not count, so ``--samples 3`` gives 3 clips to analyse.

    Returns
    -------
    dict
        ``{"added": n, "failed": n, "skipped": n}``.
    """
    import numpy as np

    from m2i.audio.datasets import WARNING_KEYS, plain_json

    s, c = _t(Sample), _t(Clip)
    counts = {"added": 0, "failed": 0, "skipped": 0}
    with store.read() as conn:
        known_sha = set(
            conn.execute(select(s.c.audio_sha256).where(s.c.run_id == run_id, s.c.audio_sha256.is_not(None))).scalars()
        )
        known_bad = set(
            conn.execute(select(s.c.source).where(s.c.run_id == run_id, s.c.audio_sha256.is_(None))).scalars()
        )
        next_idx = conn.execute(select(func.coalesce(func.max(s.c.idx) + 1, 0)).where(s.c.run_id == run_id)).scalar_one()
        cfg = conn.execute(select(_t(Run).c.config).where(_t(Run).c.id == run_id)).scalar_one() or {}
    max_attempts = int(cfg.get("max_attempts", 3))
    total = len(known_sha)  # usable clips already in the run
    told = time.monotonic()
    for clip in clips:
        if limit is not None and total >= limit:
            break
        if time.monotonic() - told >= INGEST_NEWS_S:  # a folder of thousands of files takes minutes
            told = time.monotonic()
            log.info("ingest: %(added)d added, %(failed)d bad, %(skipped)d already present so far", dict(counts))
        if clip.error is not None or clip.pcm is None:
            if clip.source in known_bad:
                counts["skipped"] += 1
                continue
            with store.transaction() as conn:
                sample_id = conn.execute(
                    insert(s).values(
                        run_id=run_id, idx=next_idx, source=clip.source, meta=plain_json(clip.meta),
                        status=Status.failed.value, error=clip.error or "no audio", finished_at=utcnow(),
                    ).returning(s.c.id)
                ).scalar_one()
                _event(conn, run_id, "error", "analyze", sample_id, f"{clip.source}: {clip.error}")  # as Failures names it
            known_bad.add(clip.source)
            counts["failed"] += 1
            next_idx += 1
            continue
        pcm = np.ascontiguousarray(clip.pcm, dtype="<f4")
        sha = pcm_sha256(pcm)
        if sha in known_sha:
            counts["skipped"] += 1
            continue
        with store.transaction() as conn:
            have = conn.execute(select(c.c.sha256).where(c.c.sha256 == sha)).first()
            if not have:
                conn.execute(insert(c).values(sha256=sha, sample_rate=16000, n_samples=int(pcm.size), pcm=pcm.tobytes()))
            sample_id = conn.execute(
                insert(s).values(
                    run_id=run_id, idx=next_idx, source=clip.source, audio_sha256=sha,
                    duration_s=float(pcm.size) / 16000.0, meta=plain_json(clip.meta), max_attempts=max_attempts,
                ).returning(s.c.id)
            ).scalar_one()
            for key in WARNING_KEYS:  # read past damage, or at a rate that may be wrong: analysed, and said
                if warning := clip.meta.get(key):
                    log.warning("%s: %s", clip.source, warning)
                    _event(conn, run_id, "warning", "analyze", sample_id, f"{clip.source}: {warning}")
        known_sha.add(sha)
        counts["added"] += 1
        next_idx += 1
        total += 1
    return counts


def pcm_sha256(pcm) -> str:
    """Content hash of a clip: SHA-256 of its float32 little-endian samples (how clips are deduplicated)."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(pcm, dtype="<f4").tobytes()).hexdigest()


def load_pcm(store: Store, sha256: str):
    import numpy as np

    c = _t(Clip)
    with store.read() as conn:
        row = conn.execute(select(c.c.pcm, c.c.sample_rate).where(c.c.sha256 == sha256)).first()
    if row is None:
        raise StoreError(f"The audio {sha256[:12]} is missing from the store; ingest it again.")
    return np.frombuffer(row[0], dtype="<f4").copy(), int(row[1])


# --------------------------------------------------------------------------- claiming


def _now(conn: Connection):
    """The time leases are measured in: the database server's clock on PostgreSQL (runners on
    many hosts then agree whatever their own clocks say), this machine's on SQLite (one host).

    On PostgreSQL it is the time of each statement (``statement_timestamp()``), not of the
    transaction's start (``now()``): a claim whose transaction began before another transaction
    finished a prompt, and whose statement saw that prompt done, must record a later time than
    the prompt's finish (:func:`stale_score_cond` compares the two). On SQLite one writer at a
    time holds the database, and the time is read after it took the lock.
    """
    if conn.dialect.name == "postgresql":
        return func.statement_timestamp(type_=DateTime(timezone=True))
    return utcnow()


def _claimable_ids(conn: Connection, stage: str, *, run_id: int | None, now: Any, n: int, expired: bool):
    """Which rows of a stage a worker may take now: pending ones, or (``expired``) running ones
    whose worker's lease ran out. Highest priority first, then oldest; read in that order from
    ``ix_<table>_claim`` so that taking n rows touches about n index entries."""
    t = table_of(stage)
    r = _t(Run)
    if expired:
        cond = [t.c.status == Status.running.value, t.c.lease_until < now]
    else:
        cond = [t.c.status == Status.pending.value]
    if run_id is not None:
        # Run-level conditions checked once per claim, not once per row.
        cond.append(t.c.run_id == run_id)
        cond.append(exists().where(r.c.id == run_id, r.c.paused == False, r.c.cancelled == False))  # noqa: E712
    else:
        cond.append(t.c.run_id.in_(select(r.c.id).where(r.c.paused == False, r.c.cancelled == False)))  # noqa: E712
    if stage == "score":
        cond.append(not_(_run_writing(run_id if run_id is not None else t.c.run_id)))
    q = select(t.c.id).where(*cond).order_by(t.c.priority.desc(), t.c.id).limit(n)
    return _skip_locked(conn, q)


def _run_writing(run: Any) -> ColumnElement[bool]:
    """Whether a run (an id, or a column holding one) still has clips in analysis or prompts being
    written. Originality and alignment are relative to the whole run, so the score stage waits
    until this is false (an analysed clip brings new prompts)."""
    p, s = _t(Prompt), _t(Sample)
    return exists().where(p.c.run_id == run, p.c.status.in_(ACTIVE)) | exists().where(
        s.c.run_id == run, s.c.status.in_(ACTIVE))


def _skip_locked(conn: Connection, q):
    """The one dialect-aware piece of claiming: rows another transaction holds are passed over.

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` inside the claiming ``UPDATE``, so many
    runners claim at once and never wait for (or take) each other's rows. SQLite: the whole
    transaction is ``BEGIN IMMEDIATE`` (one writer at a time), so the plain select is already exclusive.
    Returns something ``Column.in_()`` accepts.
    """
    if conn.dialect.name == "postgresql":
        return q.with_for_update(skip_locked=True).scalar_subquery()
    return q


@retry_transient
def claim(
    store: Store, stage: str, *, worker: str, n: int = 1, lease_s: float = 60.0, run_id: int | None = None
) -> list[dict[str, Any]]:
    """Atomically take up to ``n`` claimable rows of a stage, leased to ``worker``.

    Rows whose lease expired (their worker died) are claimable again; one that has already used
    all its attempts that way is marked failed instead. For the score stage, done scores computed
    before a prompt of their run finished are put back first (:func:`_rescore_stale`).
    """
    t = table_of(stage)
    with store.transaction() as conn:
        now = _now(conn)
        if stage == "score":  # only when the run could be scored now: a run still being written waits anyway
            for rid in ([run_id] if run_id is not None else conn.execute(select(_t(Run).c.id)).scalars().all()):
                if not conn.execute(select(_run_writing(rid))).scalar():
                    _rescore_stale(conn, rid)
        exhausted = select(t.c.id).where(
            t.c.status == Status.running.value,
            t.c.lease_until < now,
            t.c.attempts >= t.c.max_attempts,
            *([t.c.run_id == run_id] if run_id is not None else []),
        )
        dead = conn.execute(
            update(t)
            .where(t.c.id.in_(_skip_locked(conn, exhausted)))
            .values(
                status=Status.failed.value,
                error="its worker stopped (lease expired) on every attempt",
                finished_at=now,
                lease_until=None,
            )
            .returning(t.c.id, t.c.run_id)
        ).all()
        for row_id, rid in dead:
            _event(conn, rid, "error", stage, row_id, "failed: its worker stopped on every attempt")
        rows: list[Any] = []
        for expired in (True, False):  # a dead worker's rows first: they were started before
            if len(rows) >= n:
                break
            ids = _claimable_ids(conn, stage, run_id=run_id, now=now, n=n - len(rows), expired=expired)
            rows += conn.execute(
                update(t)
                .where(t.c.id.in_(ids))
                .values(
                    status=Status.running.value,
                    attempts=t.c.attempts + 1,
                    lease_until=now + timedelta(seconds=lease_s),
                    worker=worker,
                    started_at=now,
                )
                .returning(*t.c)
            ).mappings().all()
    out = [dict(r) for r in rows]
    out.sort(key=lambda r: (-r["priority"], r["id"]))
    return out


def _gone_here(worker: str, host: str, alive) -> bool:
    """Whether ``worker`` (``host:pid[:tag]``) is a runner of ``host`` whose pid is no longer running."""
    parts = worker.split(":")
    return len(parts) >= 2 and parts[0] == host and parts[1].isdigit() and not alive(int(parts[1]))


@retry_transient
def expire_dead_workers(
    store: Store, stage: str, *, host: str, run_id: int | None = None, alive=pid_alive
) -> dict[str, int]:
    """End now the leases of rows held by runners of this host that are no longer running.

    A worker id is ``host:pid[:tag]``; a runner killed with ``kill -9`` leaves its rows 'running'
    until their lease runs out (two minutes by default), and a runner started again on the same
    machine would sit idle that long. Its pid is gone, so the lease is ended at once and
    :func:`claim` takes the rows as it takes any expired ones (the attempt counted: a prompt or an
    image can be what killed its runner). Analysis rows are handed back pending with the attempt
    not counted: clips are analysed in pool worker processes, never in the runner's own, so the
    runner's death says nothing about them (a worker that dies costs its clip one attempt, counted
    by the stage), and a runner killed three times while analysing no longer fails the clips. A
    live pid, or a worker of another host, is left to its lease.

    Returns
    -------
    dict
        ``{worker: rows}`` for each dead worker whose leases were ended.
    """
    t = table_of(stage)
    run_cond = [t.c.run_id == run_id] if run_id is not None else []
    with store.read() as conn:
        workers = conn.execute(
            select(t.c.worker).distinct().where(t.c.status == Status.running.value, t.c.worker.like(f"{host}:%"), *run_cond)
        ).scalars().all()
    dead = [w for w in workers if _gone_here(str(w), host, alive)]
    out: dict[str, int] = {}
    if not dead:
        return out
    with store.transaction() as conn:
        now = _now(conn)
        for w in dead:
            stmt = update(t).where(t.c.status == Status.running.value, t.c.worker == w, *run_cond)
            if stage == "analyze":
                stmt = stmt.values(status=Status.pending.value, attempts=t.c.attempts - 1, lease_until=None, worker=None)
            else:
                stmt = stmt.values(lease_until=now - timedelta(seconds=1))
            rows = conn.execute(stmt.returning(t.c.run_id)).scalars().all()
            if rows:
                out[w] = len(rows)
                for rid in sorted(set(rows)):
                    _event(conn, rid, "warning", stage, None,
                           f"{rows.count(rid)} row(s) of {w} taken back: that runner is no longer running")
    return out


@dataclass(frozen=True)
class InFlight:
    """A run's running rows, told apart by whether a runner still holds them."""

    held: int = 0
    """Rows whose runner's lease is current (and, for a runner of this host, whose pid is alive)."""
    left: int = 0
    """Rows left by a runner that is gone: killed outright, or lost with its machine. The next
    runner takes them back (at once when it runs on the same host, else when the lease runs out)."""
    gone: tuple[str, ...] = ()
    """The workers that left them, sorted."""


def in_flight(conn: Connection, run_id: int, *, host: str | None = None, alive=pid_alive) -> InFlight:
    """Whether anything works on a run now: its running rows, held or left behind.

    A row stays 'running' after its runner is killed (``kill -9``, the OOM killer, a lost box) until
    another runner claims it, so a count of running rows said "working" for as long as nobody ran
    m2i again. A row counts as left once its lease ran out, or at once when its worker is a runner
    of ``host`` (default: this machine) whose pid is gone. Reads only the run's running rows.
    """
    host = socket.gethostname() if host is None else host
    now = _now(conn)
    held = left = 0
    gone: set[str] = set()
    for stage in STAGE_ORDER:
        t = table_of(stage)
        q = (select(t.c.worker, t.c.lease_until >= now, func.count())
             .where(t.c.run_id == run_id, t.c.status == Status.running.value)
             .group_by(t.c.worker, t.c.lease_until >= now))
        for worker, current, n in conn.execute(q):
            if current and not _gone_here(str(worker), host, alive):
                held += int(n)
            else:
                left += int(n)
                gone.add(str(worker))
    return InFlight(held=held, left=left, gone=tuple(sorted(gone)))


RUNNER_BEAT_S = 15.0
"""How often a runner renews its ``runner`` row (:func:`runner_seen`)."""
RUNNER_GONE_S = 60.0
"""A ``runner`` row not renewed for this long belongs to a runner that is gone."""


@retry_transient
def runner_seen(store: Store, run_id: int, worker: str, *, state: str | None = None) -> None:
    """Write or renew the ``runner`` row of ``worker`` on a run (and set its state when given:
    ``starting`` while it loads its models, ``working`` once it claims, ``waiting`` on a paused run).
    A renewal (no ``state``) only renews a row that is there: a heartbeat still running in its
    thread when the runner ends would otherwise write back the row :func:`runner_left` deleted,
    and the ended runner would be listed as starting for a minute."""
    t = _t(RunnerSeen)
    with store.transaction() as conn:
        now = _now(conn)
        values: dict[str, Any] = {"seen_at": now, **({"state": state} if state else {})}
        renewed = conn.execute(update(t).where(t.c.run_id == run_id, t.c.worker == worker).values(**values)).rowcount
        if not renewed and state is not None:
            conn.execute(insert(t).values(run_id=run_id, worker=worker, state=state, started_at=now, seen_at=now))


@retry_transient
def runner_left(store: Store, run_id: int, worker: str) -> None:
    """Delete the ``runner`` row of ``worker``: it ends."""
    t = _t(RunnerSeen)
    with store.transaction() as conn:
        conn.execute(delete(t).where(t.c.run_id == run_id, t.c.worker == worker))


def runners(conn: Connection, run_id: int, *, host: str | None = None, alive=pid_alive) -> list[dict[str, Any]]:
    """The runners at work on a run now, oldest first: ``{"worker", "state", "started_at", "seen_at"}``
    for each row renewed within :data:`RUNNER_GONE_S` whose runner, if it is one of ``host``
    (default: this machine), still runs."""
    if not conn.dialect.has_table(conn, "runner"):  # a schema older than 0005, read as it is
        return []
    host = socket.gethostname() if host is None else host
    t = _t(RunnerSeen)
    q = (select(t.c.worker, t.c.state, t.c.started_at, t.c.seen_at)
         .where(t.c.run_id == run_id, t.c.seen_at >= _now(conn) - timedelta(seconds=RUNNER_GONE_S))
         .order_by(t.c.started_at, t.c.id))
    return [dict(r) for r in conn.execute(q).mappings() if not _gone_here(str(r["worker"]), host, alive)]


@retry_transient
def renew(store: Store, stage: str, ids: Sequence[int], *, worker: str, lease_s: float = 60.0) -> int:
    """Extend the lease of rows this worker still holds; returns how many it still holds."""
    if not ids:
        return 0
    t = table_of(stage)
    with store.transaction() as conn:
        return conn.execute(
            update(t)
            .where(t.c.id.in_(list(ids)), t.c.worker == worker, t.c.status == Status.running.value)
            .values(lease_until=_now(conn) + timedelta(seconds=lease_s))
        ).rowcount


@retry_transient
def release(store: Store, stage: str, ids: Sequence[int], *, worker: str) -> int:
    """Hand rows back unprocessed (graceful shutdown): pending again, the attempt not counted."""
    if not ids:
        return 0
    t = table_of(stage)
    with store.transaction() as conn:
        return conn.execute(
            update(t)
            .where(t.c.id.in_(list(ids)), t.c.worker == worker, t.c.status == Status.running.value)
            .values(status=Status.pending.value, attempts=t.c.attempts - 1, lease_until=None, worker=None)
        ).rowcount


def complete(store: Store, stage: str, row_id: int, *, worker: str, values: dict[str, Any] | None = None) -> bool:
    """Mark one row done with its results; see :func:`complete_many`."""
    return complete_many(store, stage, [(row_id, values or {})], worker=worker)[0]


@retry_transient
def complete_many(
    store: Store, stage: str, items: Sequence[tuple[int, dict[str, Any]]], *, worker: str
) -> list[bool]:
    """Mark rows done with their result columns and create their downstream rows, in one transaction.

    Returns, per item, whether it was accepted (False: the worker no longer held the row, so its
    result is dropped rather than written twice).
    """
    if not items:
        return []
    t = table_of(stage)
    ids = [row_id for row_id, _ in items]
    extra = [t.c.idx] if stage == "analyze" else []
    with store.transaction() as conn:
        now = _now(conn)
        held = {
            r["id"]: dict(r)
            for r in conn.execute(
                select(t.c.id, t.c.run_id, t.c.max_attempts, *extra).where(
                    t.c.id.in_(ids), t.c.worker == worker, t.c.status == Status.running.value
                )
            ).mappings()
        }
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row_id, values in items:
            if row_id not in held:
                continue
            vals = {k: v for k, v in values.items() if k in t.c and k not in _RESERVED}
            groups.setdefault(tuple(sorted(vals)), []).append({"b_id": row_id, **{f"b_{k}": v for k, v in vals.items()}})
        for keys, params in groups.items():
            params.sort(key=lambda p: p["b_id"])  # one lock order for every writer
            stmt = (
                update(t)
                .where(t.c.id == bindparam("b_id"))
                .values(status=Status.done.value, finished_at=now, lease_until=None, error=None,
                        **{k: bindparam(f"b_{k}") for k in keys})
            )
            conn.execute(stmt, params)
        if held:
            _create_downstream(conn, stage, [held[i] for i in ids if i in held])
            if stage == "generate":  # the run's prompt set grew: its scores no longer hold
                for rid in sorted({r["run_id"] for r in held.values()}):
                    _rescore_stale(conn, rid)
    return [i in held for i in ids]


_RESERVED = {"id", "status", "worker", "run_id", "attempts", "max_attempts", "lease_until", "finished_at"}


def _create_downstream(conn: Connection, stage: str, rows: list[dict[str, Any]]) -> None:
    if stage == "analyze":
        configs: dict[int, dict[str, Any]] = {}
        values = []
        for row in rows:
            rid = row["run_id"]
            if rid not in configs:
                configs[rid] = conn.execute(select(_t(Run).c.config).where(_t(Run).c.id == rid)).scalar_one() or {}
            cfg = configs[rid]
            modes = cfg.get("modes") or DEFAULT_MODES
            run_seed = int(cfg.get("seed", 0))
            slot = 0
            for m in modes:
                for _ in range(int(m["count"])):
                    values.append(dict(
                        run_id=rid, sample_id=row["id"], slot=slot, mode=m["mode"],
                        temperature=float(m["temperature"]), seed=derive_seed(run_seed, row["idx"], slot),
                        max_attempts=row["max_attempts"],
                    ))
                    slot += 1
        if values:
            conn.execute(insert(_t(Prompt)), values)
    elif stage == "generate":
        values = [{"run_id": r["run_id"], "prompt_id": r["id"], "max_attempts": r["max_attempts"]} for r in rows]
        conn.execute(insert(_t(Score)), values)
        conn.execute(insert(_t(Image)), values)


@retry_transient
def fail(
    store: Store, stage: str, row_id: int, *, worker: str, error: str, retryable: bool = True,
    values: dict[str, Any] | None = None,
) -> str | None:
    """Record a failed attempt; the row goes back to pending, or to failed after max_attempts.

    ``values`` are columns the attempt produced anyway and that are kept with the failure (a prompt's
    last answer, its calls, tokens and cost).

    Returns the row's new status, or None if this worker no longer held it.
    """
    t = table_of(stage)
    with store.transaction() as conn:
        now = _now(conn)
        row = conn.execute(
            select(t.c.attempts, t.c.max_attempts, t.c.run_id).where(
                t.c.id == row_id, t.c.worker == worker, t.c.status == Status.running.value
            )
        ).first()
        if row is None:
            return None
        final = (not retryable) or row.attempts >= row.max_attempts
        status = Status.failed.value if final else Status.pending.value
        conn.execute(
            update(t)
            .where(t.c.id == row_id)
            .values(**(values or {}), status=status, error=error[:4000], lease_until=None,
                    finished_at=now if final else None)
        )
        level = "error" if final else "warning"
        what = "failed" if final else f"attempt {row.attempts}/{row.max_attempts} failed, will retry"
        _event(conn, row.run_id, level, stage, row_id, f"{what}: {error[:500]}")
    return status


# --------------------------------------------------------------------------- stale scores

POOL_DEPENDENT = ("originality", "alignment", "overall", "details")
"""Score columns computed against the run's other prompts (originality: distance from them;
alignment: rank among the run's other clips; overall and details hold both). Elaboration and
coherence read only the prompt and its own clip."""


def stale_score_cond(conn: Connection, run_id: int) -> ColumnElement[bool]:
    """SQL condition true for the done scores of a run that were computed before a prompt of the
    run finished: their originality and alignment compared the prompt with a smaller run.

    A score's pool of prompts is read after it was claimed, so a score is current when it was
    claimed (``started_at``) after the run's last prompt finished (the wait rule in
    :func:`_claimable_ids` makes that the normal case). Both times come from the same clock
    (:func:`_now`).
    """
    sc, p = _t(Score), _t(Prompt)
    latest = conn.execute(
        select(func.max(p.c.finished_at)).where(p.c.run_id == run_id, p.c.status == Status.done.value)
    ).scalar()
    if latest is None:
        return false()
    return and_(sc.c.run_id == run_id, sc.c.status == Status.done.value,
                func.coalesce(sc.c.started_at, sc.c.finished_at, latest) < latest)


def stale_scores(store: Store, run_id: int) -> int:
    """How many done scores of a run are stale (:func:`stale_score_cond`); the score stage
    recomputes them the next time it claims work."""
    with store.read() as conn:
        return int(conn.execute(select(func.count()).where(stale_score_cond(conn, run_id))).scalar_one())


def scores_until(store: Store, run_id: int) -> str | None:
    """When the last done score of a run was written (text; None before any): a stored analysis
    records it (``report.data.scores_until``), so a reader can tell whether scores changed since."""
    sc = _t(Score)
    with store.read() as conn:
        t = conn.execute(
            select(func.max(sc.c.finished_at)).where(sc.c.run_id == run_id, sc.c.status == Status.done.value)
        ).scalar()
    return None if t is None else str(t)


def _rescore_stale(conn: Connection, run_id: int) -> int:
    """Put a run's stale scores back to pending, without the values that depended on the old set
    of prompts (:data:`POOL_DEPENDENT`), so nothing shows them and the score stage recomputes
    them with the run's other scores once the run's prompts are all written.

    Called when prompts complete (:func:`complete_many`) and before the score stage claims from a
    run that could be scored now (:func:`claim`: a score batch that was in flight when a prompt
    finished, or a database written by an older m2i). Costs one index probe when the run has no
    done score.
    """
    sc = _t(Score)
    if not conn.execute(select(exists().where(sc.c.run_id == run_id, sc.c.status == Status.done.value))).scalar():
        return 0
    n = conn.execute(
        update(sc).where(stale_score_cond(conn, run_id)).values(
            status=Status.pending.value, attempts=0, lease_until=None, worker=None, finished_at=None,
            **{c: null() for c in POOL_DEPENDENT},  # SQL NULL, also in the JSON column
        )
    ).rowcount
    if n:
        _event(conn, run_id, "info", "score", None,
               f"{n} score(s) to recompute: prompts of the run finished after they were scored "
               "(originality and alignment compare each prompt with the rest of the run)")
    return n


# --------------------------------------------------------------------------- requeue / cancel


def _select_rows(t: Table, *, run_id: int | None, ids: Sequence[int] | None, statuses: Sequence[str] | None):
    cond = []
    if run_id is not None:
        cond.append(t.c.run_id == run_id)
    if ids:
        cond.append(t.c.id.in_(list(ids)))
    if statuses:
        cond.append(t.c.status.in_(list(statuses)))
    return cond


def _no_audio(t: Table):
    """A sample with no audio, which cannot be analysed again: one rejected at ingest (NaN,
    silence, under 1 s, unreadable), which stays failed (requeue leaves it, cancel never sees it),
    or one imported from the earlier system's JSON (done, with the features it gave)."""
    return t.c.audio_sha256.is_(None)


def _rejected(t: Table):
    """A clip rejected at ingest: no audio, failed (an imported legacy sample has none either, but is done)."""
    return _no_audio(t) & (t.c.status == Status.failed.value)


def unusable_samples(store: Store, run_id: int) -> int:
    """How many of a run's clips were rejected at ingest; requeue cannot help them."""
    s = _t(Sample)
    with store.read() as conn:
        return int(conn.execute(select(func.count()).where(s.c.run_id == run_id, _rejected(s))).scalar_one())


def row_statuses(store: Store, stage: str, ids: Sequence[int], *, run_id: int | None = None) -> dict[int, str]:
    """Status of the rows ``ids`` of one stage (of one run); ids that are not there are left out.

    An analyze row whose clip has no audio (a bad clip, it cannot run again) reads ``"failed, no audio"``.
    """
    t = table_of(stage)
    no_audio = _rejected(t) if stage == "analyze" else literal(False)
    with store.read() as conn:
        rows = conn.execute(select(t.c.id, t.c.status, no_audio).where(
            *_select_rows(t, run_id=run_id, ids=ids, statuses=None))).all()
    return {int(i): "failed, no audio" if bad else str(st) for i, st, bad in rows}


@retry_transient
def requeue(
    store: Store,
    *,
    run_id: int | None = None,
    stage: str | None = None,
    ids: Sequence[int] | None = None,
    failed_only: bool = True,
    error: str | None = None,
) -> dict[str, int]:
    """Put failed (or, with ``failed_only=False``, failed and cancelled) rows back to pending.

    ``error``: only rows whose recorded error contains this text, in any case (``m2i requeue
    --error "out of memory"`` takes back the renders a full GPU failed, not the prompts a
    provider refused). Attempts start again from zero; the last error stays visible until the row
    runs again. Safe while runners are live: they pick the rows up on their next claim.
    """
    stages = [stage] if stage else list(STAGE_ORDER)
    statuses = [Status.failed.value] if failed_only else [Status.failed.value, Status.cancelled.value]
    out: dict[str, int] = {}
    with store.transaction() as conn:
        for st in stages:
            t = table_of(st)
            cond = _select_rows(t, run_id=run_id, ids=ids, statuses=statuses)
            if error:
                cond.append(t.c.error.icontains(error, autoescape=True))
            if st == "analyze":
                cond.append(~_no_audio(t))  # a clip with no audio cannot run again
            n = conn.execute(
                update(t).where(*cond).values(
                    status=Status.pending.value, attempts=0, lease_until=None, worker=None, finished_at=None
                )
            ).rowcount
            out[st] = n
            if n:
                _event(conn, run_id, "info", st, None, f"requeued {n} row(s)")
        if run_id is not None and any(out.values()):
            conn.execute(update(_t(Run)).where(_t(Run).c.id == run_id).values(cancelled=False))
    return out


@retry_transient
def cancel(
    store: Store, *, run_id: int | None = None, stage: str | None = None, ids: Sequence[int] | None = None
) -> dict[str, int]:
    """Cancel pending and running rows (a running row's result is then dropped).

    With neither ``stage`` nor ``ids`` the whole run is cancelled and hands out no more work; a
    run with nothing pending or running is left as it is (a finished run is not marked cancelled).
    """
    stages = [stage] if stage else list(STAGE_ORDER)
    out: dict[str, int] = {}
    with store.transaction() as conn:
        for st in stages:
            t = table_of(st)
            cond = _select_rows(t, run_id=run_id, ids=ids, statuses=list(ACTIVE))
            out[st] = conn.execute(
                update(t).where(*cond).values(status=Status.cancelled.value, lease_until=None, finished_at=_now(conn))
            ).rowcount
        if not sum(out.values()):
            return out
        if run_id is not None and not stage and not ids:
            conn.execute(update(_t(Run)).where(_t(Run).c.id == run_id).values(cancelled=True))
        _event(conn, run_id, "warning", stage, None, f"cancelled {sum(out.values())} row(s)")
    return out


# --------------------------------------------------------------------------- status


def status_counts(store: Store, run_id: int | None = None, *, conn: Connection | None = None) -> dict[str, dict[str, int]]:
    """``{stage: {status: count}}`` for every stage (all statuses present, zeros included).

    Reads ``stage_count``, which triggers keep exact, so it costs the same at 100 or 100,000 rows.
    """
    sc = _t(StageCount)
    q = select(sc.c.stage, sc.c.status, func.sum(sc.c.n)).group_by(sc.c.stage, sc.c.status)
    if run_id is not None:
        q = q.where(sc.c.run_id == run_id)

    def _query(c: Connection) -> dict[str, dict[str, int]]:
        out = {stage: {s.value: 0 for s in Status} for stage in STAGE_ORDER}
        for stage, status, n in c.execute(q):
            if stage in out:
                out[stage][status] = int(n or 0)
        return out

    if conn is not None:
        return _query(conn)
    with store.read() as c:
        return _query(c)


def image_backends(store: Store, run_id: int) -> dict[str, int]:
    """``{backend: images}`` of a run's finished images: what rendered them, not what was configured.

    ``--images auto`` records ``auto`` in the run's configuration; each image row records the backend
    that drew it (``sdxl`` or ``preview``). Most images first; empty before any image is done.
    """
    t = _t(Image)
    q = (
        select(func.coalesce(t.c.backend, "?"), func.count())
        .where(t.c.run_id == run_id, t.c.status == Status.done.value)
        .group_by(t.c.backend)
    )
    with store.read() as conn:
        rows = [(str(b), int(n)) for b, n in conn.execute(q)]
    return dict(sorted(rows, key=lambda r: (-r[1], r[0])))


class ImageFinder:
    """Where a recorded image file is on this machine: at its recorded path, or moved with its folder.

    An image is recorded by its absolute path on the machine that drew it. Copied elsewhere (``rsync
    gpu-box:project/ .``: the database with ``m2i-output/`` beside it), that path names nothing
    here. The finder looks for the longest tail of the recorded path (``m2i-output/images/
    sample_000/sample_000_prompt_00.png``, then shorter) under each base folder, in order; once an
    image is found so, the other images of its folder are looked for at the same place first. A
    file found by its tail alone is taken only if its PNG records the row's seed (unique to the
    prompt in a database), so another run's image of the same name is never shown instead.

    Parameters
    ----------
    bases : sequence of path
        Folders the moved files may be under, most likely first (:func:`image_bases`).
    """

    def __init__(self, bases: Sequence[str | os.PathLike[str]]) -> None:
        seen: list[Path] = []
        for b in bases:
            b = Path(b).expanduser().resolve()
            if b not in seen and b.is_dir():
                seen.append(b)
        self.bases = seen
        self.moves: dict[Path, Path] = {}  # recorded folder -> the folder it is in here

    def __call__(self, recorded: str | None, seed: int | None = None) -> Path | None:
        """The file here, or None when it is not under any base; ``seed``: the image row's."""
        if not recorded:
            return None
        path = Path(recorded)
        if path.is_file():
            return path
        for old, new in self.moves.items():
            if path.is_relative_to(old) and (here := new / path.relative_to(old)).is_file():
                return here
        parts = path.parts
        for k in range(len(parts) - (1 if path.is_absolute() else 0), 1, -1):
            tail = Path(*parts[-k:])
            for base in self.bases:
                if (here := base / tail).is_file() and (seed is None or _png_seed(here) == str(seed)):
                    self.moves[Path(*parts[:-k])] = base
                    return here
        return None


def _png_seed(path: Path) -> str | None:
    """The ``seed`` text chunk m2i writes into every image (read without decoding the pixels)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            return im.info.get("seed")
    except (OSError, ValueError):
        return None


def image_bases(store: Store, *also: str | os.PathLike[str] | None) -> list[Path]:
    """Where a run's moved image files may be: ``also`` (an output folder this command was given),
    the database's folder, the current folder, then each folder in those two that holds an
    ``images`` folder: an output folder renamed after the run (``m2i-output`` kept as
    ``results-nov``) is found with the database beside it (:class:`ImageFinder` takes a file found
    so only when its PNG records the row's seed)."""
    own = [store.path.parent] if store.path is not None else []
    own.append(Path.cwd())
    renamed = []
    for folder in own:
        try:
            renamed += sorted(c for c in folder.iterdir() if (c / "images").is_dir())
        except OSError:  # an unreadable folder holds nothing we can show
            continue
    return [*(Path(a) for a in also if a), *own, *renamed]


def image_locations(store: Store, run_id: int, *, missing_only: bool = False,
                    finder: ImageFinder | None = None) -> list[dict[str, Any]]:
    """Where each finished image of a run lives, and whether its file is reachable from here.

    With runners on several machines, each writes images to the folder it was given (a shared
    mount, or a local disk); the row records the host and the path. ``m2i export`` uses this to
    say which files it cannot read from the machine it runs on.

    Returns
    -------
    list of dict
        ``{"id", "prompt_id", "path", "host", "device", "worker", "local", "reachable"}`` per done
        image, in id order; ``local`` is where the file is here (the recorded path, or where it
        was moved with its folder: ``finder``, by default :func:`image_bases`), ``reachable``
        whether there is one. Only unreachable ones when ``missing_only``.
    """
    finder = finder or ImageFinder(image_bases(store))
    t = _t(Image)
    q = (
        select(t.c.id, t.c.prompt_id, t.c.path, t.c.host, t.c.device, t.c.worker, t.c.seed)
        .where(t.c.run_id == run_id, t.c.status == Status.done.value)
        .order_by(t.c.id)
    )
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    for r in rows:
        here = finder(r["path"], r.pop("seed"))
        r["local"], r["reachable"] = (None if here is None else str(here)), here is not None
    return [r for r in rows if not r["reachable"]] if missing_only else rows


def is_active(counts: dict[str, dict[str, int]], stages: Iterable[str] = STAGE_ORDER) -> bool:
    return any(counts[s]["pending"] + counts[s]["running"] for s in stages)


def recent_events(store: Store, run_id: int | None = None, *, after_id: int = 0, limit: int = 200) -> list[dict]:
    e = _t(Event)
    q = select(e).where(e.c.id > after_id).order_by(e.c.id.desc()).limit(limit)
    if run_id is not None:
        q = q.where(e.c.run_id == run_id)
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    return rows[::-1]


def software_lines(store: Store, run_id: int) -> list[dict[str, Any]]:
    """The distinct ``software: ...`` events of a run (:mod:`m2i.provenance`), oldest first, each
    ``{"software", "first", "last", "runners"}``: which versions of m2i and its packages wrote its rows
    (``first`` / ``last``: when a runner with that software first and last began writing)."""
    from m2i.provenance import SOFTWARE_PREFIX

    e = _t(Event)
    q = (select(e.c.message, func.min(e.c.ts), func.max(e.c.ts), func.count())
         .where(e.c.run_id == run_id, e.c.message.startswith(SOFTWARE_PREFIX))
         .group_by(e.c.message).order_by(func.min(e.c.ts)))
    with store.read() as conn:
        return [{"software": m[len(SOFTWARE_PREFIX):], "first": first, "last": last, "runners": int(n)}
                for m, first, last, n in conn.execute(q)]


def log_event(
    store: Store, run_id: int | None, message: str, *, level: str = "info", stage: str | None = None, item: int | None = None
) -> None:
    with store.transaction() as conn:
        _event(conn, run_id, level, stage, item, message)


def _event(conn: Connection, run_id: int | None, level: str, stage: str | None, item: int | None, message: str) -> None:
    conn.execute(insert(_t(Event)).values(ts=utcnow(), run_id=run_id, level=level, stage=stage, item=item, message=message))


def save_report(store: Store, run_id: int, kind: str, data: dict[str, Any]) -> None:
    with store.transaction() as conn:
        conn.execute(insert(_t(Report)).values(run_id=run_id, kind=kind, data=data, created_at=utcnow()))


def latest_report(store: Store, run_id: int, kind: str) -> dict[str, Any] | None:
    r = _t(Report)
    with store.read() as conn:
        row = conn.execute(
            select(r.c.data, r.c.created_at).where(r.c.run_id == run_id, r.c.kind == kind).order_by(r.c.id.desc()).limit(1)
        ).first()
    return None if row is None else {**row[0], "created_at": row[1].isoformat()}


__all__ = [
    "DEFAULT_MODES", "STAGES", "STAGE_ORDER", "add_samples", "cancel", "claim", "complete", "complete_many",
    "check_run_name", "create_run", "derive_seed", "expire_dead_workers", "fail", "in_flight", "InFlight", "RUNNER_BEAT_S", "RUNNER_GONE_S",
    "runner_left", "runner_seen", "runners", "get_run", "image_backends",
    "ImageFinder", "image_bases", "image_locations", "is_active", "latest_report", "list_runs", "load_pcm", "log_event", "no_such_run",
    "POOL_DEPENDENT", "recent_events", "release", "renew", "requeue", "row_statuses", "save_report", "set_paused",
    "scores_until", "stale_score_cond", "stale_scores", "status_counts", "table_of", "unusable_samples", "update_run_config",
]
