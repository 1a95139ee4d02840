"""Fixtures of the export tests: the real legacy files and a real SQLite run store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LEGACY_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legacy"
if not LEGACY_DIR.is_dir():
    LEGACY_DIR = Path("/work/shared/data/legacy")


@pytest.fixture(scope="session")
def legacy_dir() -> Path:
    if not (LEGACY_DIR / "visual_prompts_complete.json").is_file():
        pytest.fail(f"the legacy files are missing under {LEGACY_DIR}")
    return LEGACY_DIR


@pytest.fixture
def store(tmp_path):
    from m2i.store import open_store

    s = open_store(tmp_path / "exports.db")
    yield s
    s.close()


@pytest.fixture
def small_legacy(tmp_path, legacy_dir) -> Path:
    """The first six samples of the real legacy file, as a file of the same format."""
    data = json.loads((legacy_dir / "visual_prompts_complete.json").read_text())
    data["samples"] = data["samples"][:6]
    data["metadata"]["total_samples"] = 6
    p = tmp_path / "visual_prompts_complete.json"
    p.write_text(json.dumps(data))
    return p
