"""SQL text of the analysis views ``v_prompt_scores`` and ``v_mode_summary``.

The lead's Alembic revision creates them with :func:`create_statements` and removes them with
:func:`drop_statements`; the SQL is kept here, next to the metrics it exposes, so the two change
together. Both SQLite (3.38+, built-in JSON functions) and PostgreSQL are supported; only the
JSON field access differs. docs/sql.md has worked queries.

- ``v_prompt_scores``: one row per prompt, with its sample (index, source, key, tonality, tempo,
  mood, the whole features object), its scores (NULL until scored) and its image (NULL until
  rendered).
- ``v_mode_summary``: one row per (run, mode): prompt count, how many are scored, and the mean,
  minimum and maximum of each metric over the scored prompts. The paired per-clip statistics
  (confidence intervals, Wilcoxon, Holm) are in the ``report`` table (kind ``modes``), because
  they need more than SQL aggregates.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgresql"]
VIEW_NAMES = ("v_prompt_scores", "v_mode_summary")

_METRIC_COLUMNS = ("originality", "elaboration", "alignment", "coherence", "overall")


def _feature_exprs(dialect: str) -> dict[str, str]:
    if dialect == "sqlite":
        return {
            "key": "json_extract(s.features, '$.key')",
            "tonality": "json_extract(s.features, '$.tonality')",
            "tempo": "CASE WHEN json_type(s.features, '$.tempo') IN ('integer', 'real') "
            "THEN CAST(json_extract(s.features, '$.tempo') AS REAL) END",
            # legacy rows hold a string, m2i's own rows an object with "words"
            "mood": "CASE WHEN json_type(s.features, '$.mood') = 'object' "
            "THEN json_extract(s.features, '$.mood.words') ELSE json_extract(s.features, '$.mood') END",
        }
    if dialect == "postgresql":
        return {
            "key": "(s.features::jsonb ->> 'key')",
            "tonality": "(s.features::jsonb ->> 'tonality')",
            "tempo": "CASE WHEN jsonb_typeof(s.features::jsonb -> 'tempo') = 'number' "
            "THEN (s.features::jsonb ->> 'tempo')::double precision END",
            "mood": "CASE WHEN jsonb_typeof(s.features::jsonb -> 'mood') = 'object' "
            "THEN (s.features::jsonb -> 'mood' ->> 'words') ELSE (s.features::jsonb ->> 'mood') END",
        }
    raise ValueError(f"unsupported dialect {dialect!r}; use 'sqlite' or 'postgresql'")


def prompt_scores_sql(dialect: Dialect = "sqlite") -> str:
    """``SELECT`` body of ``v_prompt_scores`` for ``dialect``."""
    f = _feature_exprs(dialect)
    return f"""SELECT
  p.run_id AS run_id,
  p.id AS prompt_id,
  p.sample_id AS sample_id,
  s.idx AS sample_idx,
  s.source AS source,
  p.slot AS slot,
  p.mode AS mode,
  p.temperature AS temperature,
  p.status AS prompt_status,
  p.title AS title,
  p.image_prompt AS image_prompt,
  p.text AS text,
  p.model AS llm_model,
  {f["key"]} AS key,
  {f["tonality"]} AS tonality,
  {f["tempo"]} AS tempo,
  {f["mood"]} AS mood,
  s.features AS features,
  sc.status AS score_status,
  sc.originality AS originality,
  sc.elaboration AS elaboration,
  sc.alignment AS alignment,
  sc.coherence AS coherence,
  sc.overall AS overall,
  sc.method AS score_method,
  i.status AS image_status,
  i.path AS image_path
FROM prompt AS p
JOIN sample AS s ON s.id = p.sample_id
LEFT JOIN score AS sc ON sc.prompt_id = p.id
LEFT JOIN image AS i ON i.prompt_id = p.id"""


def mode_summary_sql(dialect: Dialect = "sqlite") -> str:
    """``SELECT`` body of ``v_mode_summary`` for ``dialect`` (the same text for both)."""
    _feature_exprs(dialect)  # validates the dialect
    done = "sc.status = 'done'"
    cols = []
    for m in _METRIC_COLUMNS:
        cols.append(f"  AVG(CASE WHEN {done} THEN sc.{m} END) AS mean_{m}")
    for m in _METRIC_COLUMNS:
        cols.append(f"  MIN(CASE WHEN {done} THEN sc.{m} END) AS min_{m}")
        cols.append(f"  MAX(CASE WHEN {done} THEN sc.{m} END) AS max_{m}")
    body = ",\n".join(cols)
    return f"""SELECT
  p.run_id AS run_id,
  p.mode AS mode,
  COUNT(*) AS n_prompts,
  COUNT(DISTINCT p.sample_id) AS n_samples,
  SUM(CASE WHEN {done} THEN 1 ELSE 0 END) AS n_scored,
{body}
FROM prompt AS p
LEFT JOIN score AS sc ON sc.prompt_id = p.id
GROUP BY p.run_id, p.mode"""


def create_statements(dialect: Dialect = "sqlite") -> list[str]:
    """``CREATE VIEW`` statements, in dependency order, for ``dialect``."""
    return [
        f"CREATE VIEW v_prompt_scores AS\n{prompt_scores_sql(dialect)}",
        f"CREATE VIEW v_mode_summary AS\n{mode_summary_sql(dialect)}",
    ]


def drop_statements(dialect: Dialect = "sqlite") -> list[str]:
    """``DROP VIEW`` statements (reverse order) for ``dialect``."""
    _feature_exprs(dialect)
    return [f"DROP VIEW IF EXISTS {name}" for name in reversed(VIEW_NAMES)]


V_PROMPT_SCORES_SQLITE = create_statements("sqlite")[0]
V_MODE_SUMMARY_SQLITE = create_statements("sqlite")[1]
V_PROMPT_SCORES_POSTGRESQL = create_statements("postgresql")[0]
V_MODE_SUMMARY_POSTGRESQL = create_statements("postgresql")[1]
