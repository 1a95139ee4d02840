"""runners at work: who works on a run now, and whether it is still loading its models

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

``runner`` holds one row per runner at work on a run (``host:pid``), with its state
(``starting`` while it loads its models, then ``working``) and when it was last seen. Before it,
the only sign of a runner was the rows it held: one loading SDXL (or compiling it) for minutes
held none, and the dashboard said "nothing running". The rows are transient: a runner deletes
its own as it ends, and one not seen for a minute is gone.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runner",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("seen_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_runner_run_id_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runner")),
        sa.UniqueConstraint("run_id", "worker", name=op.f("uq_runner_run_id_worker")),
    )


def downgrade() -> None:
    op.drop_table("runner")
