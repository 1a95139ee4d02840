"""Shared test settings: offline model hubs, a writable numba cache, no colour in CLI output."""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "m2i-numba-cache"))
os.environ.setdefault("NO_COLOR", "1")
os.environ.setdefault("TERM", "dumb")
os.environ["TZ"] = "UTC"  # times are shown in local time: screenshots and printed times must not depend on the machine
time.tzset()
for var in ("M2I_DB", "M2I_LLM", "M2I_CONFIG", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
    os.environ.pop(var, None)
