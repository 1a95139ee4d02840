"""What the dashboard reads and writes: snapshots of a run store, throughput, and the two actions.

Everything here is plain Python with no Textual import, so it is tested and benchmarked on its
own. :class:`Reader` owns one read-only store (``open_store(readonly=True)``) and turns a
:class:`Want` (what the visible screen needs) into a :class:`Snapshot` inside one read
transaction; the app calls it from a worker thread about once a second. Problems a user can
cause (no database yet, an older schema, a database locked by another process) become
``Snapshot.problem``, one sentence, and the next call tries again. :class:`Actions` opens a
second, writable store only for requeue and pause/resume.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2i.errors import M2IError, StoreError

if TYPE_CHECKING:
    from m2i.store.ops import InFlight

log = logging.getLogger(__name__)

STAGE_ORDER = ("analyze", "generate", "score", "render")
STATUSES = ("pending", "running", "done", "failed", "cancelled")
METRICS = ("originality", "elaboration", "alignment", "coherence", "overall")
READ_BUSY_MS = 250
"""How long one dashboard query waits on a locked database before reporting it (the UI retries)."""
FAILURES_LIMIT = 300
"""Failed rows listed per stage (the counts above the table are always exact)."""
SAMPLES_PAGE = 100
"""Clips per page on the Samples screen."""
MEMO_MAX_AGE_S = 5.0
"""The failures and samples lists are re-read when the stage counts change, or after this long."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RunChoice:
    """One run of the database, as the run picker lists it."""

    id: int
    name: str
    created_at: str
    llm: str
    model: str
    paused: bool
    cancelled: bool
    counts: dict[str, dict[str, int]]
    runners: int = 0
    """How many runners are at work on it now (``ops.runners``)."""


@dataclass(frozen=True)
class RunInfo:
    """The run the dashboard follows, with what it was configured to use."""

    id: int
    name: str
    paused: bool
    cancelled: bool
    llm: str
    model: str
    images: str
    device: str
    created_at: str


@dataclass(frozen=True)
class EventRow:
    id: int
    ts: str
    level: str
    stage: str | None
    item: int | None
    message: str


@dataclass(frozen=True)
class FailureRow:
    """One failed work row: which stage, which clip and prompt, how often it ran, and why it failed."""

    stage: str
    id: int
    sample_id: int | None
    source: str
    label: str  # m2i.features.clip_label
    slot: int | None
    mode: str | None
    attempts: int
    max_attempts: int
    error: str

    @property
    def key(self) -> str:
        return f"{self.stage}:{self.id}"


@dataclass(frozen=True)
class SampleRow:
    id: int
    idx: int
    source: str
    label: str  # m2i.features.clip_label: the track and artists, else the file name and place
    status: str
    key: str
    tempo: str
    mood: str
    prompts_done: int
    prompts_total: int
    overall: float | None


@dataclass(frozen=True)
class PromptView:
    id: int
    slot: int
    mode: str
    temperature: float
    status: str
    title: str
    text: str
    image_prompt: str
    error: str
    scores: dict[str, float | None]
    score_status: str | None
    image_path: str | None
    image_status: str | None


@dataclass(frozen=True)
class SampleDetail:
    id: int
    idx: int
    source: str
    label: str  # m2i.features.clip_label
    status: str
    error: str
    duration_s: float | None
    features: dict[str, str]
    abc: str
    prompts: list[PromptView]
    melody_heard: bool = True  # False: the analysis heard no melody, so its ABC is not shown


@dataclass(frozen=True)
class Want:
    """What the visible screen needs besides the always-read run, counts, new events and report id.

    ``report`` asks for the report's data when its id differs from ``report_id`` (the one the app
    already holds): a report covers every clip (megabytes at 20,000 clips), so only the Compare
    screen asks, and the app asks at most every few seconds.
    """

    events_after: int = 0
    report_id: int | None = None
    report: bool = False
    failures: bool = False
    samples_page: int | None = None
    detail: int | None = None


@dataclass
class Snapshot:
    """One refresh's worth of data, taken in one read transaction.

    ``want`` is what it was read for: a screen uses only the parts read for its current request
    (a page flipped or a clip opened since then waits for the next snapshot).
    """

    taken_at: float
    want: Want = field(default_factory=Want)
    problem: str | None = None
    run: RunInfo | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    in_flight: InFlight | None = None
    """The running rows held by a runner, and those a runner that is gone left behind (None: no
    row is running)."""
    runners: list[dict[str, Any]] = field(default_factory=list)
    """The runners at work on the run (``ops.runners``): worker, state, started_at, seen_at."""
    actual_backend: str | None = None
    actual_device: str | None = None
    events: list[EventRow] = field(default_factory=list)
    report_id: int | None = None
    report: dict[str, Any] | None = None
    report_changed: bool = False
    failures: list[FailureRow] | None = None
    samples: list[SampleRow] | None = None
    samples_total: int = 0
    samples_page: int = 0
    detail: SampleDetail | None = None
    file_id: tuple[int, int] | None = None
    query_ms: float = 0.0

    @property
    def origin(self) -> tuple[Any, int] | None:
        """Which database file and run this came from; it changes when the dashboard moves on to a
        newer run or the file at the path was replaced (None: no run read)."""
        return (self.file_id, self.run.id) if self.run is not None else None


# --------------------------------------------------------------------------- reading


def _llm_of(cfg: dict[str, Any]) -> tuple[str, str]:
    """A run's provider and model as the dashboard names them (an imported legacy run: its writer)."""
    from m2i.scoring.legacy import legacy_writer

    writer = legacy_writer(cfg)  # m2i import-legacy: the earlier system named only its client
    return str(cfg.get("llm") or ("legacy" if writer else "?")), str(cfg.get("model") or writer or "default")


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def import_store_modules() -> None:
    """Import, on the calling thread, what opening and reading a store imports on first use.

    Under ``m2i tui --run`` the reader's thread and the runner's thread both open a store at start;
    two threads importing SQLAlchemy and Alembic at once can leave one of them with a half-made
    module ("module 'sqlalchemy.util' has no attribute ..."), so the app imports them first.
    """
    import alembic.command  # noqa: F401
    import alembic.runtime.migration  # noqa: F401
    import alembic.script  # noqa: F401
    import sqlalchemy.dialects.sqlite  # noqa: F401

    import m2i.features  # noqa: F401
    import m2i.store.models  # noqa: F401
    import m2i.store.ops  # noqa: F401


class _Locked(Exception):
    """The database answered "locked" within the short busy timeout."""


def _locked(exc: BaseException) -> bool:
    msg = str(getattr(exc, "orig", exc)).lower()
    return "locked" in msg or "busy" in msg


class Reader:
    """Reads snapshots of one run from a read-only store, reopening it until it can.

    Parameters
    ----------
    db : str or None
        SQLite path or database URL (None: ``$M2I_DB`` or ``./m2i.db``).
    run : str or None
        Run id or name; None follows the newest run.
    busy_ms : int
        How long a query waits on a locked database before the snapshot reports it.
    """

    def __init__(self, db: str | None, *, run: str | None = None, busy_ms: int = READ_BUSY_MS) -> None:
        self.db = db
        self.run = run
        self.busy_ms = busy_ms
        self._store = None
        self._file_id: tuple[int, int, bool] | None = None
        self._memo: dict[str, tuple[Any, float, Any]] = {}
        self._lock = threading.Lock()  # the refresh thread and the run picker's read share the store
        self._images = None  # an ImageFinder: where the images are when the database was copied here with them

    @property
    def where(self) -> str:
        from m2i.store.engine import resolve_url

        path = self._path()
        return str(path) if path is not None else resolve_url(self.db)

    def _path(self) -> Path | None:
        """The SQLite file read, or None for a server database."""
        from m2i.store.engine import resolve_url, sqlite_path

        return sqlite_path(resolve_url(self.db))

    def _current_file_id(self) -> tuple[int, int, bool] | None:
        """(device, inode, read as immutable) of the SQLite file now at the path; None when missing or
        not SQLite. A file read as immutable (its folder is not writable and it had no write-ahead
        log) is opened again when a runner of the folder's owner starts writing to it."""
        from m2i.store.engine import readonly_uri

        path = self._path()
        try:
            st = path.stat() if path is not None else None
            immutable = path is not None and "immutable=1" in readonly_uri(path)
        except (OSError, M2IError):
            return None
        return None if st is None else (st.st_dev, st.st_ino, immutable)

    def _probe(self) -> None:
        """Fail fast on a locked SQLite file (``open_store`` itself would wait up to 30 s)."""
        import sqlite3

        path = self._path()
        if path is None or not path.is_file():
            return  # a server database, or a missing file (open_store explains it)
        from m2i.store.engine import readonly_uri

        try:
            uri = readonly_uri(path)
        except M2IError:
            return  # open_store explains it
        con = sqlite3.connect(uri, uri=True, timeout=self.busy_ms / 1000)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:  # OperationalError (locked), or "file is not a database"
            if _locked(exc):
                raise _Locked() from exc
            # anything else: open_store explains it (not an m2i database, unreadable) in one sentence
        finally:
            con.close()

    def _open(self):
        if self._store is not None and self._current_file_id() != self._file_id:
            self.close()  # the file was deleted or replaced: read the one now at the path
        if self._store is None:
            from sqlalchemy import event

            from m2i.store import open_store

            self._probe()
            store = open_store(self.db, readonly=True, older=True)  # a finished run of an older m2i, as it is
            if store.dialect == "sqlite":
                busy = int(self.busy_ms)

                @event.listens_for(store.engine, "connect")
                def _short_busy(dbapi_conn, _record):  # runs after the store's own pragmas
                    dbapi_conn.execute(f"PRAGMA busy_timeout={busy}")

                store.engine.dispose()  # the probe connection had the long timeout
            self._store = store
            self._file_id = self._current_file_id()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._images = None
        self._memo.clear()

    def snapshot(self, want: Want | None = None) -> Snapshot:
        """Read what ``want`` asks for; never raises for a problem the user can fix.

        Returns
        -------
        Snapshot
            With ``problem`` set (one sentence) when the database is missing, locked, of an
            older schema or has no run yet.
        """
        from sqlalchemy.exc import DBAPIError, OperationalError

        want = want or Want()
        t0 = time.perf_counter()
        snap = Snapshot(taken_at=time.time(), want=want)
        try:
            with self._lock:
                store = self._open()
                with store.read() as conn:
                    self._fill(conn, snap, want)
                snap.file_id = self._file_id[:2] if self._file_id else None  # the file, however it is read
        except _Locked:
            snap.problem = f"The database {self.where} is locked by another process; retrying every second."
        except StoreError as exc:
            self.close()
            snap.problem = f"{exc} Retrying every second."
        except (OperationalError, DBAPIError) as exc:
            if _locked(exc):
                snap.problem = f"The database {self.where} is locked by another process; retrying every second."
            else:
                self.close()
                snap.problem = f"Cannot read {self.where} ({getattr(exc, 'orig', exc)}); retrying every second."
        except M2IError as exc:
            snap.problem = str(exc)
        snap.query_ms = (time.perf_counter() - t0) * 1000.0
        return snap

    def runs(self) -> list[RunChoice]:
        """Every run of the database, oldest first, with its stage counts (the run picker).

        Raises
        ------
        M2IError
            The database cannot be read (one sentence).
        """
        from m2i.store import ops
        from m2i.store.models import local_time

        with self._lock:
            store = self._open()
            runs = ops.list_runs(store)
            out = []
            with store.read() as conn:
                for r in runs:
                    llm, model = _llm_of(_json(r["config"]) or {})
                    out.append(RunChoice(
                        id=int(r["id"]), name=str(r["name"]), created_at=local_time(r["created_at"]), llm=llm, model=model,
                        paused=bool(r["paused"]), cancelled=bool(r["cancelled"]),
                        counts=ops.status_counts(None, int(r["id"]), conn=conn),  # type: ignore[arg-type]
                        runners=len(ops.runners(conn, int(r["id"]))),
                    ))
            return out

    # ----------------------------------------------------------------- queries

    def _fill(self, conn, snap: Snapshot, want: Want) -> None:
        from sqlalchemy import select

        from m2i.store import ops
        from m2i.store.models import Event, Image, Report, Run, local_time

        r = Run.__table__
        q = select(r)
        if self.run is None:  # asked every time: a newer run started meanwhile is followed
            q = q.order_by(r.c.id.desc()).limit(1)
        elif self.run.isdigit():
            q = q.where(r.c.id == int(self.run))
        else:
            q = q.where(r.c.name == self.run).order_by(r.c.id.desc()).limit(1)
        row = conn.execute(q).mappings().first()
        if row is None:
            what = f"run {self.run!r}" if self.run else "any run"
            snap.problem = f"{self.where} has no {what} yet; start one with `m2i run` (waiting for it)."
            return
        run_id = int(row["id"])
        cfg = _json(row["config"]) or {}
        llm, model = _llm_of(cfg)
        snap.run = RunInfo(
            id=run_id, name=row["name"], paused=bool(row["paused"]), cancelled=bool(row["cancelled"]),
            llm=llm, model=model,
            images=str(cfg.get("images") or "?"), device=str(cfg.get("device") or "?"),
            created_at=local_time(row["created_at"]),
        )
        snap.counts = ops.status_counts(None, run_id, conn=conn)  # type: ignore[arg-type]
        if any(c["running"] for c in snap.counts.values()):
            snap.in_flight = ops.in_flight(conn, run_id)
        snap.runners = ops.runners(conn, run_id)

        im = Image.__table__
        last = conn.execute(
            select(im.c.backend, im.c.device)
            .where(im.c.run_id == run_id, im.c.status == "done")
            .order_by(im.c.id.desc()).limit(1)
        ).first()
        if last is not None:
            snap.actual_backend, snap.actual_device = last[0], last[1]

        e = Event.__table__
        eq = select(e).where(e.c.run_id == run_id, e.c.id > want.events_after).order_by(e.c.id.desc()).limit(200)
        snap.events = [
            EventRow(id=int(x["id"]), ts=local_time(x["ts"]), level=x["level"], stage=x["stage"], item=x["item"],
                     message=x["message"])
            for x in reversed(conn.execute(eq).mappings().all())
        ]

        rep = Report.__table__
        rid = conn.execute(
            select(rep.c.id).where(rep.c.run_id == run_id, rep.c.kind == "modes").order_by(rep.c.id.desc()).limit(1)
        ).scalar()
        snap.report_id = rid
        if want.report and rid is not None and rid != want.report_id:
            snap.report = self._report(conn, rid)
            snap.report_changed = True

        if want.failures:
            key = (run_id, tuple(snap.counts[s]["failed"] for s in STAGE_ORDER))
            snap.failures = self._memoized("failures", key, lambda: self._failures(conn, run_id))
        if want.samples_page is not None:
            key = (run_id, want.samples_page,
                   tuple(tuple(snap.counts[s].values()) for s in ("analyze", "generate", "score")))
            page, total, rows = self._memoized(
                "samples", key, lambda: self._samples(conn, snap, run_id, want.samples_page))
            snap.samples_page, snap.samples_total, snap.samples = page, total, rows
        if want.detail is not None:
            snap.detail = self._detail(conn, run_id, want.detail)

    def _memoized(self, name: str, key: Any, compute: Callable[[], Any]) -> Any:
        """Reuse the last result while ``key`` (built from the exact stage counts) is unchanged.

        A table's rows can change without its counts changing (one row requeued and another
        failed within a second), so a result is also recomputed after :data:`MEMO_MAX_AGE_S`.
        """
        hit = self._memo.get(name)
        now = time.monotonic()
        if hit is not None and hit[0] == key and now - hit[1] < MEMO_MAX_AGE_S:
            return hit[2]
        value = compute()
        self._memo[name] = (key, now, value)
        return value

    def _report(self, conn, report_id: int) -> dict[str, Any] | None:
        """The parts of a ``compare_modes`` report the Compare screen shows.

        ``metrics``, ``diversity``, ``run`` (the means per mode) and the counts as written, plus
        ``clip_diffs``: per metric, ``[(sample_id, divergent mean - convergent mean)]`` of the clips
        with both modes. On
        SQLite the report is taken apart by SQLite's JSON functions, which run without Python's
        GIL, so a multi-megabyte report (20,000 clips) never freezes the screen while it loads.
        """
        from sqlalchemy import text

        if conn.dialect.name != "sqlite":
            from sqlalchemy import select

            from m2i.store.models import Report

            rep = Report.__table__
            data = _json(conn.execute(select(rep.c.data).where(rep.c.id == report_id)).scalar())
            return condense_report(data) if isinstance(data, dict) else None
        head = conn.execute(text(
            "SELECT json_extract(data, '$.metrics'), json_extract(data, '$.diversity'), "
            "json_extract(data, '$.n_pairs'), json_extract(data, '$.n_prompts'), json_extract(data, '$.n_clips'), "
            "json_extract(data, '$.alpha'), json_extract(data, '$.direction'), json_extract(data, '$.run') "
            "FROM report WHERE id = :id"
        ), {"id": report_id}).first()
        if head is None:
            return None
        cols = ", ".join(
            f"json_extract(c.value, '$.means.{m}.convergent'), json_extract(c.value, '$.means.{m}.divergent')"
            for m in METRICS
        )
        rows = conn.execute(text(
            f"SELECT json_extract(c.value, '$.sample_id'), {cols}, json_extract(c.value, '$.diversity.convergent'), "
            "json_extract(c.value, '$.diversity.divergent') FROM report r, json_each(r.data, '$.clips') c "
            "WHERE r.id = :id"
        ), {"id": report_id}).all()
        diffs: dict[str, list[tuple[Any, float]]] = {m: [] for m in (*METRICS, "diversity")}
        for row in rows:
            for j, m in enumerate((*METRICS, "diversity")):
                c, d = row[1 + 2 * j], row[2 + 2 * j]
                if c is not None and d is not None:
                    diffs[m].append((row[0], float(d) - float(c)))
        return {
            "metrics": _json(head[0]) or {}, "diversity": _json(head[1]) or {}, "n_pairs": head[2],
            "n_prompts": head[3], "n_clips": head[4], "alpha": head[5], "direction": head[6],
            "run": _json(head[7]) or {}, "clip_diffs": diffs,
        }

    def _failures(self, conn, run_id: int) -> list[FailureRow]:
        from sqlalchemy import null, select

        from m2i.features import clip_label
        from m2i.store.models import Image, Prompt, Sample, Score

        s, p = Sample.__table__, Prompt.__table__
        out: list[FailureRow] = []
        queries = {
            "analyze": select(s.c.id, s.c.id.label("sample_id"), s.c.source, null().label("slot"), null().label("mode"),
                              s.c.attempts, s.c.max_attempts, s.c.error, s.c.meta)
            .where(s.c.run_id == run_id, s.c.status == "failed"),
            "generate": select(p.c.id, s.c.id, s.c.source, p.c.slot, p.c.mode, p.c.attempts, p.c.max_attempts,
                               p.c.error, s.c.meta)
            .join_from(p, s, p.c.sample_id == s.c.id)
            .where(p.c.run_id == run_id, p.c.status == "failed"),
        }
        for stage, model in (("score", Score), ("render", Image)):
            t = model.__table__
            queries[stage] = (
                select(t.c.id, s.c.id, s.c.source, p.c.slot, p.c.mode, t.c.attempts, t.c.max_attempts, t.c.error, s.c.meta)
                .join_from(t, p, t.c.prompt_id == p.c.id)
                .join(s, p.c.sample_id == s.c.id)
                .where(t.c.run_id == run_id, t.c.status == "failed")
            )
        for stage in STAGE_ORDER:
            q = queries[stage].order_by(queries[stage].selected_columns[0]).limit(FAILURES_LIMIT)
            for row in conn.execute(q):
                out.append(FailureRow(
                    stage=stage, id=int(row[0]), sample_id=row[1], source=row[2] or "",
                    label=clip_label(row[2], _json(row[8])), slot=row[3], mode=row[4],
                    attempts=int(row[5] or 0), max_attempts=int(row[6] or 0), error=(row[7] or "").strip(),
                ))
        return out

    def _samples(self, conn, snap: Snapshot, run_id: int, page: int) -> tuple[int, int, list[SampleRow]]:
        from sqlalchemy import case, func, select

        from m2i.features import clip_label, key_label, summarize
        from m2i.store.models import Prompt, Sample, Score

        s, p, sc = Sample.__table__, Prompt.__table__, Score.__table__
        total = sum(snap.counts.get("analyze", {}).values())
        pages = max(0, (total - 1) // SAMPLES_PAGE)
        page = max(0, min(page, pages))
        rows = conn.execute(
            select(s.c.id, s.c.idx, s.c.source, s.c.status, s.c.features, s.c.meta)
            .where(s.c.run_id == run_id).order_by(s.c.idx).limit(SAMPLES_PAGE).offset(page * SAMPLES_PAGE)
        ).all()
        ids = [int(r[0]) for r in rows]
        agg: dict[int, tuple[int, int, float | None]] = {}
        if ids:
            q = (
                select(p.c.sample_id, func.count(), func.sum(case((p.c.status == "done", 1), else_=0)),
                       func.avg(sc.c.overall))
                .select_from(p.outerjoin(sc, sc.c.prompt_id == p.c.id))
                .where(p.c.sample_id.in_(ids)).group_by(p.c.sample_id)
            )
            agg = {int(a): (int(n), int(d or 0), o) for a, n, d, o in conn.execute(q)}
        out = []
        for sid, idx, source, status, feats, meta in rows:
            f = _json(feats) if feats is not None else None
            summ = summarize(f if isinstance(f, dict) else None)
            n, d, o = agg.get(int(sid), (0, 0, None))
            out.append(SampleRow(
                id=int(sid), idx=int(idx), source=source or "", label=clip_label(source, _json(meta)), status=status,
                key=key_label(f if isinstance(f, dict) else None),
                tempo=summ["tempo"], mood=summ["mood"], prompts_done=d, prompts_total=n,
                overall=None if o is None else float(o),
            ))
        return page, total, out

    def _image_here(self, recorded: str | None, seed: int | None) -> str | None:
        """The image file on this machine (moved with its folder: :class:`~m2i.store.ops.ImageFinder`),
        else the recorded path (the screen says it is missing)."""
        from m2i.store import ops

        if self._images is None:
            self._images = ops.ImageFinder(ops.image_bases(self._store))
        here = self._images(recorded, seed)
        return recorded if here is None else str(here)

    def _detail(self, conn, run_id: int, sample_id: int) -> SampleDetail | None:
        from sqlalchemy import select

        from m2i.features import clip_label, stated_abc, summarize, unsure
        from m2i.store.models import Image, Prompt, Sample, Score

        s, p, sc, im = Sample.__table__, Prompt.__table__, Score.__table__, Image.__table__
        row = conn.execute(select(s).where(s.c.id == sample_id, s.c.run_id == run_id)).mappings().first()
        if row is None:
            return None
        f = _json(row["features"]) if row["features"] is not None else None
        q = (
            select(p.c.id, p.c.slot, p.c.mode, p.c.temperature, p.c.status, p.c.title, p.c.text, p.c.image_prompt,
                   p.c.error, sc.c.originality, sc.c.elaboration, sc.c.alignment, sc.c.coherence, sc.c.overall,
                   sc.c.status.label("score_status"), im.c.path, im.c.seed, im.c.status.label("image_status"))
            .select_from(p.outerjoin(sc, sc.c.prompt_id == p.c.id).outerjoin(im, im.c.prompt_id == p.c.id))
            .where(p.c.sample_id == sample_id).order_by(p.c.slot)
        )
        prompts = [
            PromptView(
                id=int(x["id"]), slot=int(x["slot"]), mode=x["mode"], temperature=float(x["temperature"]),
                status=x["status"], title=x["title"] or "", text=x["text"] or "", image_prompt=x["image_prompt"] or "",
                error=x["error"] or "", scores={m: x[m] for m in METRICS}, score_status=x["score_status"],
                image_path=self._image_here(x["path"], x["seed"]), image_status=x["image_status"],
            )
            for x in conn.execute(q).mappings()
        ]
        f = f if isinstance(f, dict) else None
        return SampleDetail(
            id=int(row["id"]), idx=int(row["idx"]), source=row["source"] or "",
            label=clip_label(row["source"], _json(row["meta"])), status=row["status"],
            error=row["error"] or "", duration_s=row["duration_s"], features=summarize(f),
            abc=stated_abc(f, row["abc"]), prompts=prompts, melody_heard=not unsure(f, "melody_contour"),
        )


def condense_report(report: dict[str, Any]) -> dict[str, Any]:
    """Keep what the Compare screen shows of a ``compare_modes`` report (see :meth:`Reader._report`)."""
    diffs: dict[str, list[tuple[Any, float]]] = {m: [] for m in (*METRICS, "diversity")}
    for clip in report.get("clips") or []:
        for m in diffs:
            vals = (clip.get("diversity") or {}) if m == "diversity" else ((clip.get("means") or {}).get(m) or {})
            c, d = vals.get("convergent"), vals.get("divergent")
            if c is not None and d is not None:
                diffs[m].append((clip.get("sample_id"), float(d) - float(c)))
    keep = ("metrics", "diversity", "n_pairs", "n_prompts", "n_clips", "alpha", "direction", "run")
    return {**{k: report.get(k) for k in keep}, "clip_diffs": diffs}


# --------------------------------------------------------------------------- throughput


class RateTracker:
    """Done-per-minute and ETA per stage from successive counts (constant time per refresh).

    Parameters
    ----------
    window_s : float
        How far back the rate looks.
    clock : callable
        Seconds, monotonic (tests pass a frozen clock).
    """

    def __init__(self, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._hist: deque[tuple[float, dict[str, int]]] = deque()

    def update(self, counts: dict[str, dict[str, int]]) -> dict[str, tuple[float | None, float | None]]:
        """Record ``counts`` and return ``{stage: (rows per minute, eta seconds)}`` (None: unknown)."""
        now = self.clock()
        finished = {s: c.get("done", 0) + c.get("failed", 0) for s, c in counts.items()}
        self._hist.append((now, finished))
        while len(self._hist) > 2 and now - self._hist[1][0] >= self.window_s:
            self._hist.popleft()
        t0, first = self._hist[0]
        out: dict[str, tuple[float | None, float | None]] = {}
        for stage, c in counts.items():
            dt = now - t0
            if dt <= 0.5:
                out[stage] = (None, None)
                continue
            delta = finished[stage] - first.get(stage, 0)
            per_min = max(0.0, delta) * 60.0 / dt
            left = c.get("pending", 0) + c.get("running", 0)
            eta = left * 60.0 / per_min if per_min > 0 else None
            out[stage] = (per_min, 0.0 if left == 0 else eta)
        return out

    def reset(self) -> None:
        self._hist.clear()


def format_eta(seconds: float | None) -> str:
    """``"3m20s"``-style duration; ``"-"`` when unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


# --------------------------------------------------------------------------- writing


class Actions:
    """The dashboard's two writes, each on its own short-lived writable store.

    Called from worker threads only; a locked database makes them wait (the store's busy timeout)
    and a problem raises :class:`~m2i.errors.StoreError` with one sentence.
    """

    def __init__(self, db: str | None) -> None:
        self.db = db

    def _store(self):
        from m2i.store import open_store

        return open_store(self.db, create=False, upgrade=False)

    def requeue(self, run_id: int, *, rows: dict[str, Sequence[int]] | None = None, stage: str | None = None,
                error: str | None = None) -> int:
        """Put failed rows back to pending: the given ``{stage: ids}``, or every failed row of ``stage``
        (whose error contains ``error``, when given).

        Returns
        -------
        int
            How many rows went back to pending.
        """
        from m2i.store import ops

        with self._store() as store:
            if rows is not None:
                return sum(
                    sum(ops.requeue(store, run_id=run_id, stage=st, ids=list(ids)).values())
                    for st, ids in rows.items() if ids
                )
            return sum(ops.requeue(store, run_id=run_id, stage=stage, error=error).values())

    def set_paused(self, run_id: int, paused: bool) -> bool:
        """Pause (or resume) the run; returns whether it changed. Work in flight finishes."""
        from m2i.store import ops

        with self._store() as store:
            return ops.set_paused(store, run_id, paused)


@dataclass
class View:
    """What the app hands to the visible screen: the latest snapshot plus what it accumulated.

    ``events`` keeps the newest run events across refreshes, ``rates`` the per-stage throughput
    and ETA, ``report`` the newest convergent-vs-divergent report (read only when it changed),
    ``notes`` the ``(seq, level, text)`` log lines of a runner in this process (``m2i tui --run``),
    ``origin`` the :attr:`Snapshot.origin` of the run all of these belong to.
    """

    snap: Snapshot
    rates: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    report: dict[str, Any] | None = None
    report_id: int | None = None
    notes: list[tuple[int, str, str]] = field(default_factory=list)
    origin: tuple[Any, int] | None = None
