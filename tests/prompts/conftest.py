"""Fixtures for the prompt tests: real local HTTP servers, clip features, a fast retry policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from prompt_constants import ABC, API_KEY, OPENAI_KEY, SLOTS  # noqa: E402,F401
from wire_servers import AnthropicServer, OllamaServer, OpenAIServer  # noqa: E402

from m2i.prompts.providers import MemoryCapabilityStore, RetryPolicy  # noqa: E402

FULL_FEATURES = {
    "key": "F#", "tonality": "minor", "key_runner_up": "A major",
    "tempo": 96.0, "beats": [0.41, 1.03],
    "time_signature": "3/4",
    "mood": {"valence": 0.31, "arousal": 0.72, "words": ["tense", "driving"]},
    "melody_contour": {"shape": "arch", "range_semitones": 12.0},
    "harmonic_progression": {"roman": ["i", "iv", "V", "i"], "text": "i-iv-V-i"},
    "dynamic_intensity": {"label": "mf", "loudness_db": -18.2, "range_db": 11.5, "trend": "crescendo"},
    "spectrogram": "energy concentrated below 500 Hz, bright transients every beat",
}

# The default five prompts of a clip: (slot, mode, temperature, seed)


@pytest.fixture
def legacy_samples() -> list[dict]:
    """Three real samples of the earlier system (legacy string features, its ABC, its prompts)."""
    return json.loads((HERE / "data" / "legacy_samples.json").read_text())["samples"]


@pytest.fixture
def features() -> dict:
    return dict(FULL_FEATURES)


@pytest.fixture
def fast_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def caps() -> MemoryCapabilityStore:
    return MemoryCapabilityStore()


@pytest.fixture
def anthropic_server(monkeypatch):
    """Anthropic API on 127.0.0.1; claude-opus-4-7 refuses sampling parameters."""
    srv = AnthropicServer(api_key=API_KEY, refuses_sampling=("claude-opus-4-7",),
                          unknown_models=("claude-nonexistent-1",)).start()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    yield srv
    srv.stop()


@pytest.fixture
def ollama_server(monkeypatch):
    srv = OllamaServer(models=("llama3.2",)).start()
    monkeypatch.setenv("OLLAMA_HOST", srv.url)
    yield srv
    srv.stop()


@pytest.fixture
def openai_server(monkeypatch):
    srv = OpenAIServer(models=("qwen2.5-7b-instruct",)).start()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield srv
    srv.stop()
