"""Opening a run store: URL resolution, SQLite pragmas, schema checks and upgrades.

A run store is a SQLite file (default ``./m2i.db``) or, for many machines on one run, a
PostgreSQL database. :func:`open_store` is the one way in: it checks that the target really is
an m2i database, upgrades an older schema to head through Alembic (copying a SQLite file aside
first), and refuses a newer schema, a read-only file or a missing folder with one sentence.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from m2i.config import redact_url
from m2i.errors import OlderSchemaError, StoreError

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000


def resolve_url(db: str | os.PathLike[str] | None) -> str:
    """Turn ``--db``/``M2I_DB`` into a SQLAlchemy URL.

    A plain path (``m2i.db``, ``runs/x.db``) becomes ``sqlite:///<absolute path>``; a URL
    (``sqlite:///...``, ``postgresql+psycopg://...``) is kept as it is.
    """
    value = str(db) if db is not None else os.environ.get("M2I_DB", "m2i.db")
    if "://" in value:
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value
    # make_url reads "?" as the start of a query and decodes %XX in the path: escape those as
    # SQLAlchemy itself renders a URL (a folder "run#2" or "50%" is a folder like any other)
    path = str(Path(value).expanduser().resolve())
    return "sqlite:///" + path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for a server database or an in-memory one)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


MOUNTS = Path("/proc/mounts")
"""Where Linux lists its mounted filesystems (read by :func:`network_filesystem`)."""

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "9p", "lustre", "gpfs", "beegfs", "ceph", "glusterfs",
    "panfs", "wekafs", "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs",
    "fuse.cephfs", "fuse.beegfs",
})
"""Filesystems on which SQLite's write-ahead log is unsafe: its index is shared memory, so every
process must be on one machine, and file locks over the network are often not honoured."""


def network_filesystem(path: Path) -> str | None:
    """The type of the network filesystem ``path`` lives on (``"nfs4"``, ``"lustre"``, ...), or None
    for a local disk or where it cannot be told (no ``/proc/mounts``: not Linux)."""
    try:
        lines = MOUNTS.read_text().splitlines()
    except OSError:
        return None
    target = str(Path(path).expanduser().resolve(strict=False))
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # spaces and tabs in a mount point are written as octal escapes (\040, \011)
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type if best_type in NETWORK_FILESYSTEMS else None


def network_filesystem_warning(path: Path) -> str | None:
    """One sentence when a SQLite run store sits on a network filesystem, else None."""
    fs = network_filesystem(path)
    if fs is None:
        return None
    return (f"{path} is on a network filesystem ({fs}), where SQLite's write-ahead log is not safe: keep the "
            "database on a local disk (copy it back when the run ends), or use PostgreSQL (docs/postgres.md) "
            "when several machines work on one run.")


def _migrations_dir() -> Path:
    import migrations

    return Path(migrations.__file__).resolve().parent


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}


def _install_sqlite_pragmas(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised through every test
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (BEGIN IMMEDIATE below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        else:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):  # pragma: no cover - exercised through every test
        opts = conn.get_execution_options()
        if opts.get("m2i_immediate"):
            _begin_immediate(conn, wait=opts.get("m2i_wait_locked", False))
        else:
            conn.exec_driver_sql("BEGIN")


def _locked(exc: BaseException) -> bool:
    """SQLite's SQLITE_BUSY: another connection held the write lock past the busy timeout."""
    return "database is locked" in str(getattr(exc, "orig", exc))


def _begin_immediate(conn: Connection, *, wait: bool) -> None:
    """``BEGIN IMMEDIATE``, waiting out the busy timeout; with ``wait``, as long as the lock is held.

    A lock held longer than the busy timeout is another program's open write transaction (an
    ``sqlite3`` shell inside ``BEGIN``, DB Browser for SQLite with unsaved changes). A runner waits
    for it, saying so every busy timeout, rather than ending the run; a failed ``BEGIN`` opened no
    transaction, so trying again is safe.
    """
    held, path = 0.0, None
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if not (wait and _locked(exc)):
                raise
            held += BUSY_TIMEOUT_MS / 1000
            path = sqlite_path(str(conn.engine.url))
            if _lock_news(path, locked=True):
                log.warning("%s", locked_message(path, held, waiting=True))
            continue
        if held and _lock_news(path, locked=False):
            log.warning("the database is free again after about %.0f s; going on", held)
        return


_LOCK_TOLD: dict[Path | None, list[float]] = {}  # path -> [when "locked" was last told, when "free"]
_LOCK_TOLD_GUARD = threading.Lock()


def _lock_news(path: Path | None, *, locked: bool) -> bool:
    """Whether to tell that the lock is held (or free again) now. Each stage's thread waits on its
    own: "locked" is told once per half busy timeout, "free" once when the first waiter gets in;
    a waiter whose timeout ran out just as the lock was let go (or while a fellow runner thread
    held it for a moment) starts no new story within a busy timeout of "free"."""
    now, timeout_s = time.monotonic(), BUSY_TIMEOUT_MS / 1000
    with _LOCK_TOLD_GUARD:
        told = _LOCK_TOLD.setdefault(path, [float("-inf"), float("-inf")])
        if locked:
            if now - told[1] < timeout_s or now - told[0] < timeout_s / 2:
                return False
            told[0] = now
            return True
        if told[0] <= told[1]:
            return False
        told[1] = now
        return True


def locked_message(path: Path | None, held_s: float, *, waiting: bool) -> str:
    """One sentence for a SQLite write lock another program has held for ``held_s`` seconds."""
    what = (f"the database {path or 'file'} has been locked by another program for {held_s:.0f} s (an open "
            "transaction: an sqlite3 shell inside BEGIN, or DB Browser for SQLite with unsaved changes)")
    if waiting:
        return f"{what}; waiting for it: commit or close that program and the run goes on."
    return f"{what[0].upper()}{what[1:]}; commit or close that program, then run the same command again."


def _json_text(obj: Any) -> str:
    """JSON columns keep non-ASCII text as it is ("Björk", not "Bj\\u00f6rk"), so ``m2i sql`` shows it
    and ``meta LIKE '%Björk%'`` finds it."""
    return json.dumps(obj, ensure_ascii=False)


def readonly_uri(path: Path) -> str:
    """The SQLite URI (``file:...?mode=ro``) that opens ``path`` read-only, also where its folder
    cannot be written. The path is percent-encoded: SQLite ends a URI's path at "#" or "?" and
    decodes %XX, so a folder named "run#2" opened a file "run" (created, when ``mode=ro`` was cut
    off with the rest).

    A WAL database is read through its ``-shm`` index, which SQLite creates beside the file: in a
    folder the user may not write (a colleague's results, a read-only mount, an archive) plain
    ``mode=ro`` failed with "unable to open database file", so even ``m2i status`` could not read a
    finished run. There, a database whose write-ahead log is absent or empty holds every row in the
    file itself and is opened ``immutable`` (no locks, no ``-shm``); one whose log holds writes is
    read through an existing ``-shm``, and without one cannot be read without losing those rows.

    Raises
    ------
    StoreError
        The folder is not writable and the log holds writes that no ``-shm`` indexes.
    """
    uri = "file:" + quote(os.fsencode(path))
    if os.access(path.parent, os.W_OK):
        return uri + "?mode=ro"
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if not wal.exists() or wal.stat().st_size == 0:
        return uri + "?mode=ro&immutable=1"
    if shm.exists():
        return uri + "?mode=ro"
    raise StoreError(
        f"{path}'s latest writes are in {wal.name}, which cannot be read without creating {shm.name}, and the "
        f"folder {path.parent} is not writable; copy {path.name} and {wal.name} together to a writable folder "
        "and open the copy.")


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """Create an engine with m2i's connection settings (WAL, busy_timeout, foreign keys)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        connect_args: dict = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        if readonly and path is not None:
            # Read-only URI: the file is never written, not even its WAL header.
            connect_args["uri"] = True
            # SQLAlchemy decodes %XX once before passing the URI on: escape it once more
            uri, query = readonly_uri(path).split("?")
            url = f"sqlite:///{uri.replace('%', '%25')}?{query}&uri=true"
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=False, json_serializer=_json_text)
        _install_sqlite_pragmas(engine, readonly=readonly)
        return engine
    if backend == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise StoreError(
                "PostgreSQL needs the psycopg driver; install it with `pip install 'm2i[pg]'`."
            ) from exc
        opts = {"options": "-c default_transaction_read_only=on"} if readonly else {}
        return create_engine(url, connect_args=opts, pool_pre_ping=False, pool_size=10, max_overflow=20,
                             json_serializer=_json_text)
    raise StoreError(f"Unsupported database URL {url!r}; use a SQLite path or postgresql+psycopg://.")


def _check_sqlite_file(path: Path, *, must_exist: bool, write: bool) -> None:
    if not path.parent.exists():
        raise StoreError(f"The folder {path.parent} does not exist; create it or choose another --db path.")
    if not path.exists():
        if must_exist:
            raise StoreError(f"No m2i database at {path}; run `m2i run` or `m2i init` to create one.")
        if write and not os.access(path.parent, os.W_OK):
            raise StoreError(f"Cannot create {path}: the folder {path.parent} is not writable.")
        return
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a database file; pass a file path with --db.")
    if not path.is_file():  # opening a pipe waits for a writer for ever; a device is no database either
        raise StoreError(f"{path} is a device or pipe, not a database file; pass a file path with --db.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except PermissionError as exc:
        raise StoreError(f"Cannot read {path}: permission denied.") from exc
    if head and head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not an m2i database (not a SQLite file); choose another --db path.")
    if write and not os.access(path, os.W_OK):
        raise StoreError(
            f"{path} is read-only; make it writable or use read-only commands (`m2i status`, `m2i report`, "
            "`m2i sql`, `m2i tui`)."
        )
    if write and not os.access(path.parent, os.W_OK):
        raise StoreError(
            f"The folder {path.parent} is not writable, and SQLite writes its journal beside {path.name}; copy the "
            "database to a writable folder, or use read-only commands (`m2i status`, `m2i report`, `m2i sql`, "
            "`m2i tui`)."
        )
    if write:
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists() and not os.access(side, os.W_OK):
                raise StoreError(f"{side} is read-only; make it writable to use {path}.")


def _current_revision(conn: Connection) -> tuple[str | None, set[str]]:
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        return None, tables
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return (row[0] if row else None), tables


TRANSIENT_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}
TRANSIENT_TRIES = 8


def is_transient(exc: BaseException) -> bool:
    """Whether a database error means "run the same transaction again" (deadlock, serialization)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in TRANSIENT_SQLSTATES


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a whole store operation again when PostgreSQL aborted its transaction as a deadlock victim.

    Every operation in :mod:`m2i.store.ops` is one transaction that was rolled back in full, so
    running it again is safe. SQLite never raises these (``BEGIN IMMEDIATE`` serialises writers).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(TRANSIENT_TRIES):
            try:
                return fn(*args, **kwargs)
            except DBAPIError as exc:
                if not is_transient(exc) or attempt == TRANSIENT_TRIES - 1:
                    raise
                log.info("%s: %s, trying again", fn.__name__, TRANSIENT_SQLSTATES[exc.orig.sqlstate])
                time.sleep(random.uniform(0.005, 0.02) * (2**attempt))
        raise AssertionError("unreachable")

    return wrapper


def _disk_full(exc: OperationalError) -> bool:
    """SQLite's SQLITE_FULL, or PostgreSQL's disk_full (SQLSTATE 53100)."""
    orig = getattr(exc, "orig", None)
    return "database or disk is full" in str(orig) or getattr(orig, "sqlstate", None) == "53100"


@dataclass
class Store:
    """An open run store: an engine plus the operations in :mod:`m2i.store.ops`."""

    url: str
    engine: Engine
    readonly: bool = False
    #: A write that finds SQLite's lock held past the busy timeout waits on (a runner) instead of
    #: raising :class:`StoreError` (a one-shot command).
    wait_when_locked: bool = False
    dialect: str = field(init=False)

    def __post_init__(self) -> None:
        self.dialect = self.engine.dialect.name

    @property
    def path(self) -> Path | None:
        return sqlite_path(self.url)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite; commit, or roll back on any error."""
        if self.readonly:
            raise StoreError("This store was opened read-only.")
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    conn = conn.execution_options(m2i_immediate=True, m2i_wait_locked=self.wait_when_locked)
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            if _disk_full(exc):
                raise StoreError(
                    f"Cannot write to the database {self.path or redact_url(self.url)}: its disk is full; free space "
                    "there, then run the same command again (what was written before is kept)."
                ) from exc
            if _locked(exc):
                raise StoreError(locked_message(self.path, BUSY_TIMEOUT_MS / 1000, waiting=False)) from exc
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close the store. A writable SQLite store first copies its write-ahead log into the
        database file (a passive checkpoint: it waits for no reader): with a dashboard still
        reading, the last writer's close does not fold the log in, and a ``cp m2i.db`` taken after
        the run ended lacked every row the run wrote (all of them sat in ``m2i.db-wal``)."""
        if self.dialect == "sqlite" and not self.readonly:
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as exc:  # a busy or vanished file: the log stays, SQLite folds it in on next open
                logging.getLogger(__name__).debug("checkpoint at close skipped: %s", exc)
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


READABLE_SINCE = "0004"
"""The oldest schema m2i reads without upgrading it (``open_store(readonly=True, older=True)``):
later revisions only add what readers do without (0005: the ``runner`` table)."""


def open_store(
    db: str | os.PathLike[str] | None = None,
    *,
    readonly: bool = False,
    create: bool = True,
    upgrade: bool = True,
    older: bool = False,
) -> Store:
    """Open (and if needed create or upgrade) a run store.

    Parameters
    ----------
    db : str or path, optional
        A SQLite path or a database URL; default ``$M2I_DB`` or ``./m2i.db``.
    readonly : bool
        Open without the right to write (``m2i status``, ``m2i sql``, the TUI's reader).
    create : bool
        Create a new database when none exists (ignored when ``readonly``).
    upgrade : bool
        Upgrade an older schema to head; when False an older schema raises.
    older : bool
        With ``readonly``: a schema from :data:`READABLE_SINCE` on is read as it is, not refused
        (a finished run where it cannot be upgraded: a read-only folder, an archive).

    Raises
    ------
    OlderSchemaError
        The schema is older than head and ``readonly`` or not ``upgrade`` forbids upgrading it;
        carries ``revision`` and ``head``.
    StoreError
        One sentence: missing folder, not an m2i database, newer schema, read-only file, ...
    """
    url = resolve_url(db)
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_file(path, must_exist=readonly or not create, write=not readonly)
    import m2i.store.models  # noqa: F401  (declares the tables)

    # Look before touching: an existing SQLite file is inspected read-only, so a file that turns
    # out not to be ours is left exactly as it was (not even switched to WAL).
    probe_ro = readonly or (path is not None and path.exists())
    engine = make_engine(url, readonly=probe_ro)
    try:
        with engine.connect() as conn:
            rev, tables = _current_revision(conn)
    except (OperationalError, DBAPIError, sqlite3.DatabaseError) as exc:
        engine.dispose()
        msg = str(getattr(exc, "orig", exc))
        if "file is not a database" in msg or "file is encrypted" in msg:
            raise StoreError(f"{path or redact_url(url)} is not an m2i database; choose another --db path.") from exc
        if "readonly" in msg or "read-only" in msg:
            raise StoreError(f"{path or redact_url(url)} is read-only; make it writable.") from exc
        raise StoreError(f"Cannot open the database {path or redact_url(url)}: {msg}.") from exc

    head = head_revision()
    if rev is None:
        user_tables = {t for t in tables if not t.startswith("sqlite_")}
        if user_tables:
            engine.dispose()
            raise StoreError(
                f"{path or redact_url(url)} is not an m2i database (it has other tables: "
                f"{', '.join(sorted(user_tables)[:5])}); choose another --db path."
            )
        if readonly:
            engine.dispose()
            raise StoreError(f"{path or redact_url(url)} is an empty database; run `m2i init` first.")
        _upgrade(url, backup=None)
    elif rev != head:
        if rev not in known_revisions():
            engine.dispose()
            raise StoreError(
                f"{path or redact_url(url)} was written by a newer m2i (schema {rev}); upgrade m2i to use it."
            )
        if readonly and older and rev >= READABLE_SINCE:
            return Store(url=url, engine=engine, readonly=True)
        if readonly or not upgrade:
            engine.dispose()
            raise OlderSchemaError(
                f"{path or redact_url(url)} has an older schema ({rev}); run any writing m2i command "
                "(e.g. `m2i init`) to upgrade it.",
                location=str(path or url), revision=rev, head=head,
            )
        backup = None
        if path is not None:
            backup = path.with_name(f"{path.name}.bak-{rev}")
            engine.dispose()
            _sqlite_backup(path, backup)
        log.info("upgrading %s from %s to %s (backup: %s)", path or url, rev, head, backup)
        _upgrade(url, backup=backup)
    if probe_ro and not readonly:
        engine.dispose()
        engine = make_engine(url, readonly=False)
    return Store(url=url, engine=engine, readonly=readonly)


def _sqlite_backup(src: Path, dst: Path) -> None:
    with sqlite3.connect(str(src)) as a, sqlite3.connect(str(dst)) as b:
        a.backup(b)


MIGRATION_LOCK = 0x6D3269  # pg_advisory_lock key ("m2i") held while one runner upgrades the schema


def _upgrade(url: str, *, backup: Path | None) -> None:
    from alembic import command

    try:
        if make_url(url).get_backend_name() == "postgresql":
            _upgrade_postgresql(url)
        else:
            command.upgrade(alembic_config(url), "head")
    except Exception as exc:  # translate: the user's database must never be left half-upgraded
        where = f"; your data is safe in {backup}" if backup else ""
        raise StoreError(f"Upgrading the database schema failed ({exc}){where}.") from exc


def _upgrade_postgresql(url: str) -> None:
    """Upgrade under an advisory lock, in one transaction (PostgreSQL DDL is transactional).

    Several boxes starting ``m2i run`` at once on an empty database all find no schema; the
    first to take the lock creates it, the others find it at head once they get the lock.
    """
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
            try:
                with conn.begin():
                    rev, _ = _current_revision(conn)
                    if rev != head_revision():
                        cfg = alembic_config(url)
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()
