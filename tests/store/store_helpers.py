"""Test-only stage functions and seeding helpers for the store and runner tests.

These stages stand in for the real analysis/LLM/scoring/render functions so the spine can be
tested on its own; they are never selectable in the product.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2i.runner import Outcome, RunContext, StageImpl
from m2i.store import ops


@dataclass
class TestClip:
    source: str
    meta: dict
    pcm: np.ndarray | None
    error: str | None = None


def make_clips(n: int, *, seed: int = 0, samples: int = 1600) -> list[TestClip]:
    rng = np.random.default_rng(seed)
    return [TestClip(f"clip{i}.wav", {"i": i}, rng.standard_normal(samples).astype(np.float32) * 0.1) for i in range(n)]


def seed_run(store, n: int, *, config: dict | None = None, name: str = "test") -> int:
    run_id = ops.create_run(store, name=name, config=config or {"seed": 1})
    ops.add_samples(store, run_id, make_clips(n))
    return run_id


class RecordingStage(StageImpl):
    """Appends "stage id" to a log file per processed row; can sleep and fail on chosen rows."""

    def __init__(self, name: str, *, log: Path | None = None, delay: float = 0.0, fail_ids: set[int] | None = None,
                 batch_size: int = 1, concurrency: int = 1, fatal: bool = False) -> None:
        self.name = name
        self.log = log
        self.delay = delay
        self.fail_ids = fail_ids or set()
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.fatal = fatal

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.name == "analyze":
            return {"features": {"key": "C", "tonality": "major", "tempo": 100.0}, "abc": "X:1\nK:C\nC"}
        if self.name == "generate":
            return {"text": f"prompt {row['id']}", "image_prompt": f"image {row['id']}", "provider": "test"}
        if self.name == "score":
            return {"originality": 0.5, "elaboration": 0.5, "alignment": 0.5, "coherence": 0.5, "overall": 0.5}
        return {"path": f"img{row['id']}.png", "backend": "test"}

    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        if self.delay:
            await asyncio.sleep(self.delay)
        out = []
        for row in rows:
            if self.log is not None:
                fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
                os.write(fd, f"{self.name} {row['id']} {os.getpid()} {time.time():.3f}\n".encode())
                os.close(fd)
            key = row.get("idx", row["id"])
            if key in self.fail_ids:
                out.append(Outcome(id=row["id"], error=f"boom on {key}", retryable=not self.fatal))
            else:
                out.append(Outcome(id=row["id"], values=self._values(row)))
        return out


def all_stages(log: Path | None = None, delay: float = 0.0, **kw) -> list[StageImpl]:
    return [RecordingStage(s, log=log, delay=delay, **kw) for s in ops.STAGE_ORDER]


def seed_render_rows(store, n: int) -> int:
    """A run whose analysis and prompts are done and whose ``n`` image rows wait (bulk insert)."""
    from sqlalchemy import insert, select

    from m2i.store.models import Image, Prompt, Run, Sample

    n_samples = max(1, -(-n // 5))
    with store.transaction() as conn:
        run_id = conn.execute(
            insert(Run.__table__).values(name="render-only", config={}, created_at=ops.utcnow())
            .returning(Run.__table__.c.id)
        ).scalar_one()
        conn.execute(insert(Sample.__table__), [
            {"run_id": run_id, "idx": i, "source": f"s{i}", "meta": {}, "status": "done"} for i in range(n_samples)
        ])
        sids = conn.execute(select(Sample.__table__.c.id).where(Sample.__table__.c.run_id == run_id)).scalars().all()
        conn.execute(insert(Prompt.__table__), [
            {"run_id": run_id, "sample_id": sid, "slot": k, "mode": "convergent" if k < 3 else "divergent",
             "temperature": 0.4 if k < 3 else 0.8, "seed": k, "status": "done"}
            for sid in sids for k in range(5)
        ])
        pids = conn.execute(
            select(Prompt.__table__.c.id).where(Prompt.__table__.c.run_id == run_id).order_by(Prompt.__table__.c.id)
        ).scalars().all()
        conn.execute(insert(Image.__table__), [{"run_id": run_id, "prompt_id": pid} for pid in pids[:n]])
    return int(run_id)
