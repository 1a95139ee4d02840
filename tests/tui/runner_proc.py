"""A headless runner on a test database, as `m2i run` would be in another tmux pane.

Usage: python runner_proc.py DB RUN_ID DELAY FAIL_IMAGE_ID MARKER

Test-only stages (no models): every stage sleeps DELAY seconds per batch and writes plausible
results; the render of image FAIL_IMAGE_ID fails for good the first time (then MARKER exists and
a requeued attempt succeeds).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from m2i.runner import Outcome, RunContext, Runner, StageImpl, run_blocking
from m2i.store import open_store
from m2i.store.ops import STAGE_ORDER


class SleepyStage(StageImpl):
    def __init__(self, name: str, *, delay: float, fail_id: int | None = None, marker: Path | None = None) -> None:
        self.name = name
        self.delay = delay
        self.fail_id = fail_id
        self.marker = marker
        self.batch_size = 1
        self.concurrency = 1

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.name == "analyze":
            return {"features": {"key": "A", "tonality": "minor", "tempo": 90.0}, "abc": "X:1\nK:Am\nA"}
        if self.name == "generate":
            return {"title": f"Prompt {row['id']}", "text": f"a quiet harbor {row['id']}", "image_prompt": "harbor"}
        if self.name == "score":
            return {"originality": 0.5, "elaboration": 0.5, "alignment": 0.5, "coherence": 0.5, "overall": 0.5}
        return {"path": f"img{row['id']}.png", "backend": "preview", "device": "cpu"}

    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        await asyncio.sleep(self.delay)
        out = []
        for row in rows:
            if self.name == "render" and row["id"] == self.fail_id and not self.marker.exists():
                self.marker.write_text("failed once")
                out.append(Outcome(id=row["id"], error="BackendError: out of memory on the first try", retryable=False))
            else:
                out.append(Outcome(id=row["id"], values=self._values(row)))
        return out


if __name__ == "__main__":
    db, run_id, delay, fail_id, marker = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    store = open_store(db)
    impls = [SleepyStage(s, delay=delay if s == "render" else 0.01, fail_id=fail_id, marker=marker) for s in STAGE_ORDER]
    counts = run_blocking(Runner(store, run_id, impls, lease_s=30.0, poll_s=0.05, grace_s=5.0), handle_signals=True)
    print("done", {s: c["done"] for s, c in counts.items()}, flush=True)
