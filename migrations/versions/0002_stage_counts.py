"""stage counts kept by triggers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

``stage_count`` holds the number of rows per (run, stage, status). Triggers on the four stage
tables keep it exact inside the same transaction as every insert, status change and delete, so
a status query reads a handful of rows however large the run is. Existing rows are counted once
when the revision is applied.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STAGE_TABLES = {"analyze": "sample", "generate": "prompt", "score": "score", "render": "image"}


def _sqlite_triggers(stage: str, table: str) -> list[str]:
    bump = (
        "INSERT INTO stage_count (run_id, stage, status, n) VALUES ({r}.run_id, '{stage}', {r}.status, 1) "
        "ON CONFLICT (run_id, stage, status) DO UPDATE SET n = n + 1;"
    )
    drop = "UPDATE stage_count SET n = n - 1 WHERE run_id = OLD.run_id AND stage = '{stage}' AND status = OLD.status;"
    return [
        f"CREATE TRIGGER trg_{table}_count_ins AFTER INSERT ON {table} BEGIN "
        + bump.format(r="NEW", stage=stage) + " END",
        f"CREATE TRIGGER trg_{table}_count_upd AFTER UPDATE OF status ON {table} "
        f"WHEN OLD.status IS NOT NEW.status BEGIN "
        + drop.format(stage=stage) + " " + bump.format(r="NEW", stage=stage) + " END",
        f"CREATE TRIGGER trg_{table}_count_del AFTER DELETE ON {table} BEGIN " + drop.format(stage=stage) + " END",
    ]


PG_FUNCTION = """
CREATE OR REPLACE FUNCTION m2i_stage_count() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE stage_count SET n = n - 1
     WHERE run_id = OLD.run_id AND stage = TG_ARGV[0] AND status = OLD.status;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO stage_count (run_id, stage, status, n) VALUES (NEW.run_id, TG_ARGV[0], NEW.status, 1)
    ON CONFLICT (run_id, stage, status) DO UPDATE SET n = stage_count.n + 1;
  END IF;
  RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def _pg_triggers(stage: str, table: str) -> list[str]:
    return [
        f"CREATE TRIGGER trg_{table}_count_insdel AFTER INSERT OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION m2i_stage_count('{stage}')",
        f"CREATE TRIGGER trg_{table}_count_upd AFTER UPDATE OF status ON {table} "
        f"FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION m2i_stage_count('{stage}')",
    ]


def upgrade() -> None:
    op.create_table(
        "stage_count",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name=op.f("fk_stage_count_run_id_run"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "stage", "status", name=op.f("pk_stage_count")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
    for stage, table in STAGE_TABLES.items():
        op.execute(
            f"INSERT INTO stage_count (run_id, stage, status, n) "
            f"SELECT run_id, '{stage}', status, count(*) FROM {table} GROUP BY run_id, status"
        )
        for ddl in (_pg_triggers if dialect == "postgresql" else _sqlite_triggers)(stage, table):
            op.execute(ddl)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in STAGE_TABLES.values():
        names = ("insdel", "upd") if dialect == "postgresql" else ("ins", "upd", "del")
        for n in names:
            op.execute(
                f"DROP TRIGGER IF EXISTS trg_{table}_count_{n}" + (f" ON {table}" if dialect == "postgresql" else "")
            )
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS m2i_stage_count()")
    op.drop_table("stage_count")
