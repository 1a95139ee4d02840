"""``m2i migrate-db``: copy every run of one store into another (SQLite <-> PostgreSQL).

The copy is exact: every row of every table keeps its id and every column its value (a JSON
``null`` stays JSON ``null``, an absent value stays SQL ``NULL``; audio bytes, timestamps and
floats come back equal). The destination's stage counts are rebuilt by its own triggers while
the rows go in, then checked against the source's; the destination's id sequences are moved past
the copied ids so new rows never collide. Everything is written in one transaction: if anything
fails, the destination is left as it was.

The source is read in one snapshot (a SQLite read transaction, a PostgreSQL ``REPEATABLE READ``
transaction), so runners may still be working on it, but rows they finish after the copy
started are not in the copy: stop them first for a hand-over.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import JSON, Text, bindparam, cast, func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from m2i.config import redact_url
from m2i.errors import StoreError
from m2i.store.engine import Store, open_store

log = logging.getLogger(__name__)

# Parents before children (foreign keys). stage_count is not copied: triggers rebuild it.
COPY_ORDER = ("run", "clip", "llm_model", "sample", "prompt", "score", "image", "event", "llm_batch", "report")
BATCH_ROWS = 1000
BATCH_BYTES = 64 * 1024 * 1024


def _tables() -> dict[str, Any]:
    from sqlmodel import SQLModel

    import m2i.store.models  # noqa: F401  (declares the tables)

    return dict(SQLModel.metadata.tables)


def _json_columns(table) -> list[str]:
    return [c.name for c in table.columns if isinstance(c.type, JSON)]


def _read_statement(table):
    """Select every column; JSON columns as their text so that JSON null and SQL NULL stay apart."""
    cols = [cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c for c in table.columns]
    return select(*cols).order_by(*table.primary_key.columns)


def _write_statement(table):
    """An INSERT whose JSON parameters write SQL NULL for None and JSON null for ``JSON.NULL``."""
    json_cols = set(_json_columns(table))
    values = {
        c.name: bindparam(f"p_{c.name}", type_=JSON(none_as_null=True)) if c.name in json_cols
        else bindparam(f"p_{c.name}", type_=c.type)
        for c in table.columns
    }
    return insert(table).values(values)


def _row_params(row: dict[str, Any], json_cols: list[str]) -> dict[str, Any]:
    out = {f"p_{k}": v for k, v in row.items()}
    for name in json_cols:
        raw = row[name]
        if raw is not None:
            value = json.loads(raw)
            out[f"p_{name}"] = JSON.NULL if value is None else value
    return out


def _count(conn: Connection, table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _source_snapshot(store: Store):
    conn = store.engine.connect()
    if store.dialect == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ", stream_results=True)
    return conn


def _reset_sequences(conn: Connection, tables: dict[str, Any]) -> None:
    for name in COPY_ORDER:
        table = tables[name]
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].name != "id":
            continue
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), coalesce(max(id), 1), max(id) IS NOT NULL) "
            f"FROM {name}"
        ))


def migrate_db(src_url: str, dst_url: str, *, batch_rows: int = BATCH_ROWS) -> dict[str, Any]:
    """Copy a whole run store from ``src_url`` into the empty store at ``dst_url``.

    Parameters
    ----------
    src_url : str
        The store to read: a SQLite path or URL, or ``postgresql+psycopg://...``. Read only; it must
        be at the current schema (any writing m2i command upgrades it).
    dst_url : str
        The store to write: created (SQLite) or given its schema (an empty PostgreSQL database) when
        needed. It must hold no runs yet.
    batch_rows : int > 0
        Rows per insert batch (fewer for the audio table when its blobs are large).

    Returns
    -------
    dict
        ``{"source": url, "destination": url, "tables": {table: rows copied}, "runs": n,
        "seconds": s}``.

    Raises
    ------
    StoreError
        Same store on both sides, a destination that already holds runs, a source that cannot be
        read, or counts that differ after the copy (then nothing was written).

    Examples
    --------
    >>> migrate_db("sqlite:///m2i.db", "postgresql+psycopg://m2i@db-host/m2i")  # doctest: +SKIP
    {'tables': {'run': 1, 'clip': 200, 'sample': 200, 'prompt': 1000, ...}, 'runs': 1, ...}
    """
    from m2i.store import ops
    from m2i.store.engine import resolve_url

    if batch_rows < 1:
        raise StoreError(f"batch_rows must be at least 1, not {batch_rows}.")
    if resolve_url(src_url) == resolve_url(dst_url):
        raise StoreError("The source and the destination are the same database; give two different --from/--to.")
    t0 = time.perf_counter()
    src = open_store(src_url, readonly=True)
    try:
        dst = open_store(dst_url)
    except BaseException:
        src.close()
        raise
    tables = _tables()
    copied: dict[str, int] = {}
    try:
        with dst.read() as conn:
            held = {n: _count(conn, tables[n]) for n in ("run", "clip", "sample", "event")}
        if any(held.values()):
            raise StoreError(
                f"{redact_url(dst.url)} already holds data ({', '.join(f'{n} {k} rows' for k, n in held.items() if n)}); "
                "migrate into an empty database."
            )
        with _source_snapshot(src) as sconn, sconn.begin():
            run_ids = [r for (r,) in sconn.execute(select(tables["run"].c.id).order_by(tables["run"].c.id))]
            src_counts = {rid: ops.status_counts(src, rid, conn=sconn) for rid in run_ids}
            try:
                with dst.transaction() as dconn:
                    for name in COPY_ORDER:
                        copied[name] = _copy_table(sconn, dconn, tables[name], batch_rows=batch_rows)
                    if dst.dialect == "postgresql":
                        _reset_sequences(dconn, tables)
                    for name in COPY_ORDER:
                        n = _count(dconn, tables[name])
                        if n != copied[name]:
                            raise StoreError(f"After the copy {name} holds {n} rows instead of {copied[name]}; nothing was written.")
                    for rid in run_ids:
                        got = ops.status_counts(dst, rid, conn=dconn)
                        if got != src_counts[rid]:
                            raise StoreError(
                                f"Run {rid}'s stage counts differ after the copy ({got} instead of "
                                f"{src_counts[rid]}); nothing was written."
                            )
            except DBAPIError as exc:
                raise StoreError(
                    f"Copying into {redact_url(dst.url)} failed ({str(exc.orig).strip()}); nothing was written."
                ) from exc
    finally:
        src.close()
        dst.close()
    seconds = time.perf_counter() - t0
    log.info("copied %d runs from %s to %s in %.1f s", len(run_ids), src.url, dst.url, seconds)
    return {"source": src.url, "destination": dst.url, "tables": copied, "runs": len(run_ids), "seconds": seconds}


def _copy_table(sconn: Connection, dconn: Connection, table, *, batch_rows: int) -> int:
    json_cols = _json_columns(table)
    stmt = _write_statement(table)
    n = 0
    batch: list[dict[str, Any]] = []
    size = 0
    for row in sconn.execute(_read_statement(table)).mappings():
        params = _row_params(dict(row), json_cols)
        batch.append(params)
        size += sum(len(v) for v in params.values() if isinstance(v, (bytes, str)))
        if len(batch) >= batch_rows or size >= BATCH_BYTES:
            dconn.execute(stmt, batch)
            n += len(batch)
            batch, size = [], 0
    if batch:
        dconn.execute(stmt, batch)
        n += len(batch)
    return n


__all__ = ["COPY_ORDER", "migrate_db"]
