"""many runners on one database: stage counts sharded per connection, an index for the claim

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

With many runners on one PostgreSQL database, 0002's row triggers made every claim, completion
and failure update the same few ``stage_count`` rows: each transaction held them until commit
(one hot row per stage and status) and two transactions taking them in opposite orders
(claim: pending then running; failure: running then pending) deadlocked.

``stage_count`` gains a ``shard`` column in its primary key. On PostgreSQL, statement-level
triggers with transition tables add each statement's net change per (run, status) to the row of
the connection's own shard (``pg_backend_pid()``): two live connections never write the same
counter row, so counting neither serialises runners nor deadlocks. A lease renewal, whose net
change is zero, writes nothing. The true count is ``sum(n)`` over shards, which
``ops.status_counts`` already reads. SQLite serialises writers anyway and keeps shard 0.

``ix_<table>_claim`` (run_id, status, priority DESC, id) gives the claim its order from the
index, so taking 50 rows out of 100,000 pending reads about 50 index entries, not a sort of all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STAGE_TABLES = {"analyze": "sample", "generate": "prompt", "score": "score", "render": "image"}
SHARDED_PK = ["run_id", "stage", "status", "shard"]
PLAIN_PK = ["run_id", "stage", "status"]


def _sqlite_triggers(stage: str, table: str, *, sharded: bool) -> list[str]:
    cols, target = ("run_id, stage, status, shard, n", "run_id, stage, status, shard") if sharded else (
        "run_id, stage, status, n", "run_id, stage, status")
    shard = ", 0" if sharded else ""
    bump = (
        f"INSERT INTO stage_count ({cols}) VALUES ({{r}}.run_id, '{stage}', {{r}}.status{shard}, 1) "
        f"ON CONFLICT ({target}) DO UPDATE SET n = n + 1;"
    )
    drop = (
        f"UPDATE stage_count SET n = n - 1 WHERE run_id = OLD.run_id AND stage = '{stage}' "
        f"AND status = OLD.status{' AND shard = 0' if sharded else ''};"
    )
    return [
        f"CREATE TRIGGER trg_{table}_count_ins AFTER INSERT ON {table} BEGIN " + bump.format(r="NEW") + " END",
        f"CREATE TRIGGER trg_{table}_count_upd AFTER UPDATE OF status ON {table} "
        f"WHEN OLD.status IS NOT NEW.status BEGIN " + drop + " " + bump.format(r="NEW") + " END",
        f"CREATE TRIGGER trg_{table}_count_del AFTER DELETE ON {table} BEGIN " + drop + " END",
    ]


def _drop_sqlite_triggers() -> None:
    for table in STAGE_TABLES.values():
        for name in ("ins", "upd", "del"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_count_{name}")


# One function per event, because a function may only read the transition tables its trigger
# declares. Each adds the statement's net change per (run, status) to this connection's shard.
# Rows of a run being deleted (ON DELETE CASCADE from run) are not counted: their counters go
# with the run.
PG_UPSERT = """
  INSERT INTO stage_count (run_id, stage, status, shard, n)
  SELECT d.run_id, TG_ARGV[0], d.status, pg_backend_pid(), sum(d.n)
    FROM ({rows}) AS d
   WHERE EXISTS (SELECT 1 FROM run WHERE run.id = d.run_id)
   GROUP BY d.run_id, d.status
  HAVING sum(d.n) <> 0
  ON CONFLICT (run_id, stage, status, shard) DO UPDATE SET n = stage_count.n + EXCLUDED.n;
"""
PG_ROWS = {
    "ins": "SELECT run_id, status, 1 AS n FROM m2i_new",
    "del": "SELECT run_id, status, -1 AS n FROM m2i_old",
    "upd": "SELECT run_id, status, 1 AS n FROM m2i_new UNION ALL SELECT run_id, status, -1 AS n FROM m2i_old",
}
PG_EVENTS = {"ins": ("INSERT", "NEW TABLE AS m2i_new"), "del": ("DELETE", "OLD TABLE AS m2i_old"),
             "upd": ("UPDATE", "OLD TABLE AS m2i_old NEW TABLE AS m2i_new")}


def _pg_functions() -> list[str]:
    return [
        f"CREATE OR REPLACE FUNCTION m2i_stage_count_{kind}() RETURNS trigger AS $$\nBEGIN\n"
        + PG_UPSERT.format(rows=rows)
        + "  RETURN NULL;\nEND\n$$ LANGUAGE plpgsql"
        for kind, rows in PG_ROWS.items()
    ]


def _pg_triggers(stage: str, table: str) -> list[str]:
    return [
        f"CREATE TRIGGER trg_{table}_count_{kind} AFTER {event} ON {table} REFERENCING {ref} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION m2i_stage_count_{kind}('{stage}')"
        for kind, (event, ref) in PG_EVENTS.items()
    ]


# 0002's PostgreSQL row triggers, for the downgrade.
PG_ROW_FUNCTION = """
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


def _pg_row_triggers(stage: str, table: str) -> list[str]:
    return [
        f"CREATE TRIGGER trg_{table}_count_insdel AFTER INSERT OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION m2i_stage_count('{stage}')",
        f"CREATE TRIGGER trg_{table}_count_upd AFTER UPDATE OF status ON {table} "
        f"FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION m2i_stage_count('{stage}')",
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in STAGE_TABLES.values():
            for name in ("insdel", "upd"):
                op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_count_{name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS m2i_stage_count()")
    else:
        _drop_sqlite_triggers()
    with op.batch_alter_table("stage_count", recreate="always" if dialect == "sqlite" else "auto") as batch:
        batch.add_column(sa.Column("shard", sa.Integer(), server_default="0", nullable=False))
        batch.drop_constraint("pk_stage_count", type_="primary")
        batch.create_primary_key("pk_stage_count", SHARDED_PK)
    for table in STAGE_TABLES.values():
        op.create_index(f"ix_{table}_claim", table, ["run_id", "status", sa.text("priority DESC"), "id"])
    if dialect == "postgresql":
        for ddl in _pg_functions():
            op.execute(ddl)
        for stage, table in STAGE_TABLES.items():
            for ddl in _pg_triggers(stage, table):
                op.execute(ddl)
    else:
        for stage, table in STAGE_TABLES.items():
            for ddl in _sqlite_triggers(stage, table, sharded=True):
                op.execute(ddl)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in STAGE_TABLES.values():
            for kind in PG_EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_count_{kind} ON {table}")
        for kind in PG_EVENTS:
            op.execute(f"DROP FUNCTION IF EXISTS m2i_stage_count_{kind}()")
    else:
        _drop_sqlite_triggers()
    for table in STAGE_TABLES.values():
        op.drop_index(f"ix_{table}_claim", table_name=table)
    # Fold every shard into shard 0 before the column goes.
    op.execute("UPDATE stage_count SET n = (SELECT sum(s.n) FROM stage_count s WHERE s.run_id = stage_count.run_id "
               "AND s.stage = stage_count.stage AND s.status = stage_count.status) WHERE shard = 0")
    op.execute("INSERT INTO stage_count (run_id, stage, status, shard, n) SELECT run_id, stage, status, 0, sum(n) "
               "FROM stage_count s WHERE NOT EXISTS (SELECT 1 FROM stage_count z WHERE z.run_id = s.run_id "
               "AND z.stage = s.stage AND z.status = s.status AND z.shard = 0) GROUP BY run_id, stage, status")
    op.execute("DELETE FROM stage_count WHERE shard <> 0")
    with op.batch_alter_table("stage_count", recreate="always" if dialect == "sqlite" else "auto") as batch:
        batch.drop_constraint("pk_stage_count", type_="primary")
        batch.create_primary_key("pk_stage_count", PLAIN_PK)
        batch.drop_column("shard")
    if dialect == "postgresql":
        op.execute(PG_ROW_FUNCTION)
        for stage, table in STAGE_TABLES.items():
            for ddl in _pg_row_triggers(stage, table):
                op.execute(ddl)
    else:
        for stage, table in STAGE_TABLES.items():
            for ddl in _sqlite_triggers(stage, table, sharded=False):
                op.execute(ddl)
