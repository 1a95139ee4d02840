"""Store test fixtures: every store test that takes ``db_url`` runs on SQLite and on PostgreSQL.

PostgreSQL: ``$M2I_TEST_PG_URL`` (a server you run; the tests create and drop databases on it),
or else a throwaway cluster started once per session with ``scripts/pg.sh`` from the Debian
``postgresql`` package's binaries, on 127.0.0.1 and a free port, stopped and deleted at the end.
Without either, the PostgreSQL half is skipped with the reason, and the SQLite half still runs.
Each PostgreSQL test gets a fresh database copied from a template that is already at the head
schema (``CREATE DATABASE ... TEMPLATE``, a few tens of milliseconds).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]
PG_SH = ROOT / "scripts" / "pg.sh"
TEMPLATE = "m2i_template"
_counter = itertools.count()


def _pg_binaries_present() -> bool:
    return shutil.which("initdb") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def _admin_engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL server whose template database ``m2i_template`` is at head."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'm2i[pg]'); PostgreSQL store tests skipped")
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from m2i.store import open_store

    url = os.environ.get("M2I_TEST_PG_URL")
    workdir = None
    if not url:
        if not _pg_binaries_present():
            pytest.skip("PostgreSQL is not installed (apt-get install postgresql); PostgreSQL store tests skipped")
        workdir = tempfile.mkdtemp(prefix="m2i-pg-")
        os.chmod(workdir, 0o755)
        r = subprocess.run(["bash", str(PG_SH), "start", workdir], capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            shutil.rmtree(workdir, ignore_errors=True)
            pytest.fail(f"could not start a throwaway PostgreSQL server: {r.stderr.strip()}")
        url = r.stdout.strip().splitlines()[-1]
    admin = _admin_engine(url)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE}"))
    template_url = make_url(url).set(database=TEMPLATE).render_as_string(hide_password=False)
    open_store(template_url).close()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
        admin.dispose()
        if workdir is not None:
            subprocess.run(["bash", str(PG_SH), "stop", workdir], capture_output=True, timeout=120)
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """A fresh PostgreSQL database at the head schema, dropped after the test."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"m2i_t{os.getpid()}_{next(_counter)}"
    admin = _admin_engine(pg_server)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
    try:
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def empty_pg_url(pg_server):
    """A fresh, empty PostgreSQL database (no schema yet), dropped after the test."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"m2i_e{os.getpid()}_{next(_counter)}"
    admin = _admin_engine(pg_server)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A store location on each backend: a SQLite file path, or a fresh PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "m2i.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url):
    from m2i.store import open_store

    s = open_store(db_url)
    yield s
    s.close()
