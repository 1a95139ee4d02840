"""``m2i sql``: one read-only statement against the run store.

The store is opened read-only (SQLite ``mode=ro`` plus ``PRAGMA query_only``; PostgreSQL
``default_transaction_read_only``), so a write is refused by the database itself, not by
guessing from the statement's text.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from m2i.errors import InputError
from m2i.store.engine import Store

WRITE_HINTS = ("readonly", "read-only", "read only", "query_only", "cannot execute", "not authorized")

TABLE_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                 "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"}
"""Pragmas whose argument names a table or index (they read); any other pragma with a value sets something."""


@contextlib.contextmanager
def _refuse_side_effects(conn):
    """SQLite: refuse, before it runs, what a read-only file does not stop.

    ``ATTACH`` creates any file it names, and ``PRAGMA query_only=OFF`` / ``writable_schema=ON``
    change the connection; SQLite's authorizer denies them ("not authorized") at prepare time.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection

    def authorize(action, arg1, arg2, _db, _trigger):
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and str(arg1).lower() not in TABLE_PRAGMAS:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    raw.set_authorizer(authorize)
    try:
        yield
    finally:
        raw.set_authorizer(None)


def run_readonly_query(store: Store, query: str, *, max_rows: int | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Execute ``query`` on a read-only connection; return column names and rows.

    Raises
    ------
    InputError
        The statement writes, or is not valid SQL (the database's own message is kept).
    """
    q = query.strip().rstrip(";").strip()
    if not q:
        raise InputError("Give one SQL statement, e.g. m2i sql \"SELECT count(*) FROM prompt\".")
    if q.startswith("."):
        return _dot_command(store, q)
    if ";" in q:
        # sqlite3 refuses several statements anyway; say it plainly.
        raise InputError("m2i sql runs one statement at a time; remove the extra ';'.")
    try:
        with store.engine.connect() as conn, _refuse_side_effects(conn):
            with conn.begin():
                result = conn.execute(text(q))
                if not result.returns_rows:
                    raise InputError("m2i sql is read-only and this statement returns no rows; it was refused.")
                columns = list(result.keys())
                rows = [tuple(r) for r in (result.fetchmany(max_rows) if max_rows else result.fetchall())]
                conn.rollback()
    except DBAPIError as exc:
        msg = str(exc.orig).strip()
        if any(h in msg.lower() for h in WRITE_HINTS):
            raise InputError(f"m2i sql is read-only; the statement was refused ({msg}).") from exc
        raise InputError(f"SQL error: {msg}.{_name_hint(store, msg, q)}") from exc
    return columns, rows


def _tables(insp: Any) -> list[tuple[str, str]]:
    """(name, "table" or "view") of the store, m2i's migration bookkeeping left out."""
    return sorted([(t, "table") for t in insp.get_table_names() if t != "alembic_version"]
                  + [(v, "view") for v in insp.get_view_names()])


def _dot_command(store: Store, q: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The sqlite3 shell's ``.tables`` and ``.schema [TABLE]``, which users type out of habit (they
    were a syntax error): the tables and views, and their columns, read through SQLAlchemy's
    inspector so that they work on PostgreSQL too."""
    from sqlalchemy import inspect

    command, _, arg = q.partition(" ")
    arg = arg.strip().strip("'\"")
    if command not in (".tables", ".schema"):
        raise InputError(f"{command} is a command of the sqlite3 shell, not SQL; m2i sql knows .tables and "
                         ".schema [TABLE] besides SQL statements.")
    if command == ".tables" and arg:
        raise InputError(f".tables lists every table and view and takes no pattern; .schema {arg} gives the columns of one.")
    insp = inspect(store.engine)
    tables = _tables(insp)
    if command == ".tables":
        return ["name", "type"], tables
    names = [t for t, _ in tables]
    if arg and arg not in names:
        import difflib

        near = difflib.get_close_matches(arg.lower(), names, n=3, cutoff=0.6)
        raise InputError(f"No table or view {arg!r}" + (f"; did you mean {' or '.join(near)}?" if near else
                                                        f"; the tables and views are: {', '.join(names)}."))
    rows = [(t, c["name"], str(c["type"]), "" if c.get("nullable", True) else "NOT NULL")
            for t in (names if not arg else [arg]) for c in insp.get_columns(t)]
    return ["table", "column", "type", "null"], rows


_MISSING = re.compile(r'no such (table|column): (?:\w+\.)?(\w+)|(relation|column) "(?:\w+\.)?(\w+)" does not exist', re.I)


def _name_hint(store: Store, msg: str, query: str) -> str:
    """For an unknown table or column, the nearest real names (``sampels`` -> ``sample``), else
    the tables and views there are, or the columns of the tables the query reads; else "".
    """
    import difflib

    from sqlalchemy import inspect

    m = _MISSING.search(msg)
    if not m:
        return ""
    kind, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    try:
        insp = inspect(store.engine)
        tables = [t for t, _ in _tables(insp)]
        read = [t for t in tables if re.search(rf"\b(?:from|join)\s+{t}\b", query, re.I)] or tables
        columns = {t: [c["name"] for c in insp.get_columns(t)] for t in read} if kind.lower() == "column" else {}
    except DBAPIError:  # the hint is a courtesy: the database's own message stands without it
        return ""
    if kind.lower() == "column":
        near = difflib.get_close_matches(name.lower(), sorted({c for cs in columns.values() for c in cs}), n=3, cutoff=0.6)
        if near:
            return f" Did you mean {' or '.join(near)}?"
        if len(read) < len(tables):
            return "".join(f" {t} has {', '.join(cs)}." for t, cs in columns.items())
        return ""
    near = difflib.get_close_matches(name.lower(), tables, n=3, cutoff=0.6)
    if near:
        return f" Did you mean {' or '.join(near)}?"
    return f" The tables and views are: {', '.join(tables)}."
