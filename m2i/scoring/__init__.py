"""Creativity scores of visual prompts and the convergent-vs-divergent analysis.

Public API
----------
- :func:`score_prompts` — the ``score`` stage: four metrics in [0, 1] plus a weighted ``overall``.
- :func:`compare_modes` — paired per-clip convergent-vs-divergent statistics for the ``report``.
- :func:`m2i.scoring.legacy.load_legacy` — read the earlier system's visual_prompts_complete.json.

Heavy libraries (torch, tokenizers, scipy) load inside the functions that use them; the
embedding model is loaded once per process (:func:`m2i.scoring.embed.get_embedder`).
Formulas: docs/metrics.md.
"""

from __future__ import annotations

from m2i.scoring.metrics import DEFAULT_SETTINGS, METHOD, METRICS, score_prompts
from m2i.scoring.stats import COMPARE_METHOD, compare_modes, format_report

__all__ = [
    "COMPARE_METHOD",
    "DEFAULT_SETTINGS",
    "METHOD",
    "METRICS",
    "compare_modes",
    "format_report",
    "score_prompts",
]
