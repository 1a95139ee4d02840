"""analysis views: v_prompt_scores and v_mode_summary

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

``v_prompt_scores``: one row per prompt with its clip's features, its scores and its image.
``v_mode_summary``: per run and mode, the count and mean of each score. The SQL is frozen here
as it was written by ``m2i.scoring.views`` (where docs/sql.md explains the columns); a later
change to the views is a new revision.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CREATE = {
    "sqlite": [
        "CREATE VIEW v_prompt_scores AS\nSELECT\n  p.run_id AS run_id,\n  p.id AS prompt_id,\n  p.sample_id AS sample_id,\n  s.idx AS sample_idx,\n  s.source AS source,\n  p.slot AS slot,\n  p.mode AS mode,\n  p.temperature AS temperature,\n  p.status AS prompt_status,\n  p.title AS title,\n  p.image_prompt AS image_prompt,\n  p.text AS text,\n  p.model AS llm_model,\n  json_extract(s.features, '$.key') AS key,\n  json_extract(s.features, '$.tonality') AS tonality,\n  CASE WHEN json_type(s.features, '$.tempo') IN ('integer', 'real') THEN CAST(json_extract(s.features, '$.tempo') AS REAL) END AS tempo,\n  CASE WHEN json_type(s.features, '$.mood') = 'object' THEN json_extract(s.features, '$.mood.words') ELSE json_extract(s.features, '$.mood') END AS mood,\n  s.features AS features,\n  sc.status AS score_status,\n  sc.originality AS originality,\n  sc.elaboration AS elaboration,\n  sc.alignment AS alignment,\n  sc.coherence AS coherence,\n  sc.overall AS overall,\n  sc.method AS score_method,\n  i.status AS image_status,\n  i.path AS image_path\nFROM prompt AS p\nJOIN sample AS s ON s.id = p.sample_id\nLEFT JOIN score AS sc ON sc.prompt_id = p.id\nLEFT JOIN image AS i ON i.prompt_id = p.id",
        "CREATE VIEW v_mode_summary AS\nSELECT\n  p.run_id AS run_id,\n  p.mode AS mode,\n  COUNT(*) AS n_prompts,\n  COUNT(DISTINCT p.sample_id) AS n_samples,\n  SUM(CASE WHEN sc.status = 'done' THEN 1 ELSE 0 END) AS n_scored,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.originality END) AS mean_originality,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.elaboration END) AS mean_elaboration,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.alignment END) AS mean_alignment,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.coherence END) AS mean_coherence,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.overall END) AS mean_overall,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.originality END) AS min_originality,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.originality END) AS max_originality,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.elaboration END) AS min_elaboration,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.elaboration END) AS max_elaboration,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.alignment END) AS min_alignment,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.alignment END) AS max_alignment,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.coherence END) AS min_coherence,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.coherence END) AS max_coherence,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.overall END) AS min_overall,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.overall END) AS max_overall\nFROM prompt AS p\nLEFT JOIN score AS sc ON sc.prompt_id = p.id\nGROUP BY p.run_id, p.mode",
    ],
    "postgresql": [
        "CREATE VIEW v_prompt_scores AS\nSELECT\n  p.run_id AS run_id,\n  p.id AS prompt_id,\n  p.sample_id AS sample_id,\n  s.idx AS sample_idx,\n  s.source AS source,\n  p.slot AS slot,\n  p.mode AS mode,\n  p.temperature AS temperature,\n  p.status AS prompt_status,\n  p.title AS title,\n  p.image_prompt AS image_prompt,\n  p.text AS text,\n  p.model AS llm_model,\n  (s.features::jsonb ->> 'key') AS key,\n  (s.features::jsonb ->> 'tonality') AS tonality,\n  CASE WHEN jsonb_typeof(s.features::jsonb -> 'tempo') = 'number' THEN (s.features::jsonb ->> 'tempo')::double precision END AS tempo,\n  CASE WHEN jsonb_typeof(s.features::jsonb -> 'mood') = 'object' THEN (s.features::jsonb -> 'mood' ->> 'words') ELSE (s.features::jsonb ->> 'mood') END AS mood,\n  s.features AS features,\n  sc.status AS score_status,\n  sc.originality AS originality,\n  sc.elaboration AS elaboration,\n  sc.alignment AS alignment,\n  sc.coherence AS coherence,\n  sc.overall AS overall,\n  sc.method AS score_method,\n  i.status AS image_status,\n  i.path AS image_path\nFROM prompt AS p\nJOIN sample AS s ON s.id = p.sample_id\nLEFT JOIN score AS sc ON sc.prompt_id = p.id\nLEFT JOIN image AS i ON i.prompt_id = p.id",
        "CREATE VIEW v_mode_summary AS\nSELECT\n  p.run_id AS run_id,\n  p.mode AS mode,\n  COUNT(*) AS n_prompts,\n  COUNT(DISTINCT p.sample_id) AS n_samples,\n  SUM(CASE WHEN sc.status = 'done' THEN 1 ELSE 0 END) AS n_scored,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.originality END) AS mean_originality,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.elaboration END) AS mean_elaboration,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.alignment END) AS mean_alignment,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.coherence END) AS mean_coherence,\n  AVG(CASE WHEN sc.status = 'done' THEN sc.overall END) AS mean_overall,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.originality END) AS min_originality,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.originality END) AS max_originality,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.elaboration END) AS min_elaboration,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.elaboration END) AS max_elaboration,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.alignment END) AS min_alignment,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.alignment END) AS max_alignment,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.coherence END) AS min_coherence,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.coherence END) AS max_coherence,\n  MIN(CASE WHEN sc.status = 'done' THEN sc.overall END) AS min_overall,\n  MAX(CASE WHEN sc.status = 'done' THEN sc.overall END) AS max_overall\nFROM prompt AS p\nLEFT JOIN score AS sc ON sc.prompt_id = p.id\nGROUP BY p.run_id, p.mode",
    ],
}

DROP = ["DROP VIEW IF EXISTS v_mode_summary", "DROP VIEW IF EXISTS v_prompt_scores"]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for stmt in CREATE["postgresql" if dialect == "postgresql" else "sqlite"]:
        op.execute(stmt)


def downgrade() -> None:
    for stmt in DROP:
        op.execute(stmt)
