"""Fixtures of the dashboard tests: seeded run stores (built once, copied per test) and app helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pilot_helpers import copy_db, refreshed, wait_until  # noqa: E402,F401  (used by fixtures)
from seeding import seed_store  # noqa: E402


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
