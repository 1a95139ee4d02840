"""SQLModel tables of the run store.

The schema changes only through Alembic revisions in ``migrations/``; ``tests/store`` fails when
these models and the migrations disagree. Import this module only through ``m2i.store`` so that
the naming convention below is set before any table is declared.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, MetaData, UniqueConstraint
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Timezone-aware UTC now (stored as UTC on every database)."""
    return datetime.now(UTC)


def local_time(value: Any) -> str:
    """A stored time as this machine's local time, ``YYYY-MM-DD HH:MM:SS`` ("" when there is none).

    Times are stored in UTC (SQLite gives them back without their zone); shown as stored, a
    dashboard in Berlin put its events an hour away from the clock and from the runner's own
    log lines, which are local.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value[:19].replace("T", " ")
    if not isinstance(value, datetime):
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


class Status(str, enum.Enum):
    """Life of a work row."""

    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


STAGES: dict[str, str] = {"analyze": "sample", "generate": "prompt", "score": "score", "render": "image"}
"""Stage name -> the table whose rows it works on."""


class WorkColumns(SQLModel):
    """Columns every stage table carries."""

    status: str = Field(default=Status.pending.value, max_length=16, nullable=False)
    priority: int = Field(default=0, nullable=False)
    attempts: int = Field(default=0, nullable=False)
    max_attempts: int = Field(default=3, nullable=False)
    lease_until: datetime | None = Field(default=None)
    worker: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None)
    started_at: datetime | None = Field(default=None)
    finished_at: datetime | None = Field(default=None)


class Run(SQLModel, table=True):
    __tablename__ = "run"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    paused: bool = Field(default=False, nullable=False)
    cancelled: bool = Field(default=False, nullable=False)


class Clip(SQLModel, table=True):
    """Audio once per content hash: 16 kHz mono float32 little-endian PCM."""

    __tablename__ = "clip"

    sha256: str = Field(primary_key=True, max_length=64)
    sample_rate: int = Field(default=16000, nullable=False)
    n_samples: int = Field(nullable=False)
    pcm: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Sample(WorkColumns, table=True):
    __tablename__ = "sample"
    __table_args__ = (
        UniqueConstraint("run_id", "idx"),
        Index("ix_sample_run_id_status", "run_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, ondelete="CASCADE")
    idx: int = Field(nullable=False)
    source: str = Field(default="", nullable=False)
    audio_sha256: str | None = Field(default=None, foreign_key="clip.sha256", max_length=64, index=True)
    duration_s: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    features: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    abc: str | None = None


class Prompt(WorkColumns, table=True):
    __tablename__ = "prompt"
    __table_args__ = (
        UniqueConstraint("sample_id", "slot"),
        Index("ix_prompt_run_id_status", "run_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, ondelete="CASCADE")
    sample_id: int = Field(foreign_key="sample.id", nullable=False, ondelete="CASCADE")
    slot: int = Field(nullable=False)
    mode: str = Field(max_length=16, nullable=False)  # convergent | divergent
    temperature: float = Field(nullable=False)
    seed: int = Field(nullable=False)
    realised_by: str | None = Field(default=None, max_length=16)  # temperature | instruction
    title: str | None = None
    text: str | None = None  # the longer description the scorer also reads
    image_prompt: str | None = None  # what SDXL reads (<= 75 CLIP tokens)
    negative_prompt: str | None = None
    palette: list[str] | None = Field(default=None, sa_column=Column(JSON))
    image_prompt_tokens: int | None = None
    provider: str | None = Field(default=None, max_length=50)
    model: str | None = Field(default=None, max_length=200)
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    llm_attempts: int | None = None
    raw: str | None = None


class Score(WorkColumns, table=True):
    __tablename__ = "score"
    __table_args__ = (Index("ix_score_run_id_status", "run_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, ondelete="CASCADE")
    prompt_id: int = Field(foreign_key="prompt.id", nullable=False, unique=True, ondelete="CASCADE")
    originality: float | None = None
    elaboration: float | None = None
    alignment: float | None = None
    coherence: float | None = None
    overall: float | None = None
    method: str | None = Field(default=None, max_length=50)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Image(WorkColumns, table=True):
    __tablename__ = "image"
    __table_args__ = (Index("ix_image_run_id_status", "run_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, ondelete="CASCADE")
    prompt_id: int = Field(foreign_key="prompt.id", nullable=False, unique=True, ondelete="CASCADE")
    path: str | None = None
    host: str | None = Field(default=None, max_length=200)
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    refiner: bool | None = None
    backend: str | None = Field(default=None, max_length=50)
    model: str | None = Field(default=None, max_length=300)
    scheduler: str | None = Field(default=None, max_length=100)
    device: str | None = Field(default=None, max_length=50)
    truncated: bool | None = None
    seconds: float | None = None


class Event(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (Index("ix_event_run_id_id", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow, nullable=False)
    run_id: int | None = Field(default=None, foreign_key="run.id", ondelete="CASCADE")
    level: str = Field(default="info", max_length=16, nullable=False)
    stage: str | None = Field(default=None, max_length=32)
    item: int | None = None
    message: str = Field(default="", nullable=False)


class RunnerSeen(SQLModel, table=True):
    """A runner at work on a run, and what it is doing: loading its models (``starting``),
    ``working``, or ``waiting`` on a paused run. It writes its row as it starts, renews ``seen_at``
    every ``ops.RUNNER_BEAT_S`` and deletes the row as it ends; a row not renewed for ``ops.RUNNER_GONE_S`` (a runner killed
    outright, a lost box) is a runner that is gone. The dashboard's header and ``m2i status`` read it."""

    __tablename__ = "runner"
    __table_args__ = (UniqueConstraint("run_id", "worker"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, ondelete="CASCADE")
    worker: str = Field(max_length=200, nullable=False)  # host:pid
    state: str = Field(default="starting", max_length=16, nullable=False)  # starting | working | waiting (paused run)
    started_at: datetime = Field(default_factory=utcnow, nullable=False)
    seen_at: datetime = Field(default_factory=utcnow, nullable=False)


class LLMModel(SQLModel, table=True):
    """What m2i learned about a model: whether it accepts sampling parameters."""

    __tablename__ = "llm_model"
    __table_args__ = (UniqueConstraint("provider", "model"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=50, nullable=False)
    model: str = Field(max_length=200, nullable=False)
    sampling: str = Field(max_length=16, nullable=False)  # temperature | instruction
    learned_at: datetime = Field(default_factory=utcnow, nullable=False)
    note: str | None = None


class LLMBatch(SQLModel, table=True):
    """A provider-side batch (Anthropic Message Batches) whose results are still to collect."""

    __tablename__ = "llm_batch"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, ondelete="CASCADE")
    provider: str = Field(max_length=50, nullable=False)
    batch_id: str = Field(max_length=200, nullable=False, unique=True)
    status: str = Field(default="submitted", max_length=32, nullable=False)  # submitted | ended | collected
    prompt_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    collected_at: datetime | None = None


class Report(SQLModel, table=True):
    """Analyses of a run (convergent vs divergent), newest per (run, kind) wins."""

    __tablename__ = "report"
    __table_args__ = (Index("ix_report_run_id_kind", "run_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, ondelete="CASCADE")
    kind: str = Field(max_length=50, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class StageCount(SQLModel, table=True):
    """Rows per (run, stage, status), kept exact by triggers (migrations 0002 and 0003).

    ``m2i status`` and the dashboard read these few rows instead of counting 100,000s of rows.
    The true count is the sum over ``shard``: SQLite writes shard 0 only; PostgreSQL writes each
    connection's changes into its own shard (its backend pid), so concurrent runners never wait
    for one another on a counter row (no hot row, no deadlock between claim and completion).
    """

    __tablename__ = "stage_count"

    run_id: int = Field(foreign_key="run.id", primary_key=True, ondelete="CASCADE")
    stage: str = Field(primary_key=True, max_length=16)
    status: str = Field(primary_key=True, max_length=16)
    shard: int = Field(default=0, primary_key=True, sa_column_kwargs={"server_default": "0", "autoincrement": False})
    n: int = Field(default=0, nullable=False)


TABLES_BY_STAGE = {"analyze": Sample, "generate": Prompt, "score": Score, "render": Image}

# The claim's order (priority first, then oldest) read straight from an index, so taking n rows
# touches n index entries instead of sorting every pending row of the run (migration 0003).
for _model in TABLES_BY_STAGE.values():
    _c = _model.__table__.c  # type: ignore[attr-defined]
    Index(f"ix_{_model.__tablename__}_claim", _c.run_id, _c.status, _c.priority.desc(), _c.id)
del _model, _c
