"""Fixtures of the dashboard tests: seeded run stores (built once, copied per test) and app helpers."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from seeding import seed_store  # noqa: E402


def copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy of a SQLite database (its WAL folded in)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    return dst


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tui-templates")


@pytest.fixture(scope="session")
def seeded_template(template_dir) -> Path:
    db = template_dir / "seeded.db"
    seed_store(db, image_dir=template_dir / "images")
    return db


@pytest.fixture(scope="session")
def unscored_template(template_dir) -> Path:
    db = template_dir / "unscored.db"
    seed_store(db, score=False, report=False, render=0, fail_generate=0, name="fresh")
    return db


@pytest.fixture()
def seeded_db(seeded_template, tmp_path) -> Path:
    """A run in mid flight: 6 clips (one failed analysis), 2 failed prompts, scores, a report, 7 images."""
    return copy_db(seeded_template, tmp_path / "m2i.db")


@pytest.fixture()
def unscored_db(unscored_template, tmp_path) -> Path:
    return copy_db(unscored_template, tmp_path / "m2i.db")


@pytest.fixture()
def frozen_app():
    """Build an app that reads only on demand and whose clock never moves (stable screenshots)."""
    from tui.app import make_app

    def build(db: Path | str, **kw):
        kw.setdefault("refresh_s", None)
        kw.setdefault("clock", lambda: 1000.0)
        return make_app(str(db), **kw)

    return build


async def wait_until(pilot, predicate, *, timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` holds (raises after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def refreshed(pilot, *, after: int | None = None, timeout: float = 10.0) -> None:
    """Wait until the app has applied a snapshot newer than ``after`` (default: the current one)."""
    app = pilot.app
    n = app.refreshes if after is None else after
    if after is None:
        app.request_refresh()
    await wait_until(pilot, lambda: app.refreshes > n and not app._polling, timeout=timeout, what="a refresh")
