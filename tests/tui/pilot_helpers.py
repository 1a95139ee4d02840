"""Waiting helpers for Pilot tests (a uniquely named module: every test folder has a conftest)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


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


def copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy of a SQLite database (its WAL folded in)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    return dst
