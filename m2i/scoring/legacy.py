"""Read the earlier system's ``visual_prompts_complete.json``.

The script-based system that m2i replaces wrote one JSON file per run::

    {"metadata": {...},
     "samples": [{"sample_idx": 0,
                  "metadata": {"artist_name": [...], "album_name": ..., "track_name": ..., "slice_pos": [45, 55]},
                  "musical_features": {"key": "F", "tonality": "minor", "tempo": 125.0, ...},
                  "abc_notation": "X:1\\n...",
                  "prompts": [{"prompt_id": 0, "mode": "convergent", "temperature": 0.4,
                               "visual_prompt": "..."}, ...]}, ...]}

:func:`load_legacy` validates that shape and returns plain dicts whose keys are the columns of
m2i's ``sample`` and ``prompt`` tables, so ``m2i import-legacy`` and the scoring benchmark read
the file the same way. A legacy prompt has no separate SDXL prompt: its whole ``visual_prompt``
goes to ``text`` and ``image_prompt`` is ``None``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from m2i.errors import InputError
from m2i.textfile import not_utf8, text_of

MODES = ("convergent", "divergent")

_TITLE = re.compile(r"^\W*title\W*:\s*\**\s*(?P<title>.+?)\s*\**\s*$", re.IGNORECASE)


def _title_of(text: str) -> str | None:
    """The ``Title: ...`` line a legacy prompt starts with, if it has one."""
    for line in text.strip().splitlines()[:3]:
        m = _TITLE.match(line.strip())
        if m:
            return m.group("title").strip() or None
    return None


LEGACY_FILE = "visual_prompts_complete.json"


def legacy_writer(config: dict[str, Any] | None) -> str | None:
    """What wrote an imported run's prompts, as the earlier system recorded it (its LLM client's
    name, e.g. ``OllamaClient``: it kept no model name); None for a run m2i wrote itself."""
    if not isinstance(config, dict) or config.get("source") != "legacy":
        return None
    return ((config.get("legacy") or {}).get("metadata") or {}).get("llm_provider") or "the earlier system"


def legacy_path(path: str | Path) -> Path:
    """The legacy prompts file: ``path`` itself, or the ``visual_prompts_complete.json`` in the
    folder ``path`` (the earlier system's output folder, as users keep it).

    Raises
    ------
    InputError
        Neither exists.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / LEGACY_FILE).is_file():
            raise InputError(f"{str(p)!r} is a folder without a {LEGACY_FILE}; pass the path of that file.")
        return p / LEGACY_FILE
    if not p.is_file():
        raise InputError(f"Legacy file {str(p)!r} does not exist; pass the path of a {LEGACY_FILE}.")
    return p


def load_legacy(path: str | Path) -> dict[str, Any]:
    """Parse a legacy ``visual_prompts_complete.json`` into samples and prompts.

    Parameters
    ----------
    path : str or Path
        The file the earlier system wrote, or the folder that holds it (:func:`legacy_path`).

    Returns
    -------
    dict
        ``{"metadata": dict, "samples": list[dict]}``. Each sample has ``idx`` (the legacy
        ``sample_idx``), ``source`` (``"<file name>#<idx>"``), ``meta``, ``features`` (legacy
        form, see :mod:`m2i.features`), ``abc`` and ``prompts``; each prompt has ``slot`` (the
        legacy ``prompt_id``), ``mode``, ``temperature``, ``title`` (from a leading ``Title:``
        line, else ``None``), ``text`` (the whole ``visual_prompt``) and ``image_prompt``
        (``None``).

    Raises
    ------
    InputError
        If the file is missing, is not JSON, or does not have the shape above; the message
        names the first offending entry.

    Examples
    --------
    >>> data = load_legacy("../shared/data/legacy/visual_prompts_complete.json")  # doctest: +SKIP
    >>> len(data["samples"]), data["samples"][0]["prompts"][0]["mode"]  # doctest: +SKIP
    (100, 'convergent')
    """
    p = legacy_path(path)
    try:
        raw = json.loads(text_of(p))
    except UnicodeDecodeError as exc:
        raise InputError(not_utf8(p, exc)) from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"Legacy file {str(p)!r} is not valid JSON ({exc}); pass an unmodified visual_prompts_complete.json."
        ) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("samples"), list):
        raise InputError(
            f"Legacy file {str(p)!r} has no 'samples' list; it is not a visual_prompts_complete.json."
        )

    samples: list[dict[str, Any]] = []
    seen_idx: set[int] = set()
    for n, s in enumerate(raw["samples"]):
        where = f"{p.name}: samples[{n}]"
        if not isinstance(s, dict):
            raise InputError(f"{where} is not an object; the file is not a visual_prompts_complete.json.")
        idx = s.get("sample_idx", n)
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise InputError(f"{where} has sample_idx {idx!r}; it must be an integer.")
        if idx in seen_idx:
            raise InputError(f"{where} repeats sample_idx {idx}; each sample must appear once.")
        seen_idx.add(idx)
        features = s.get("musical_features")
        if features is not None and not isinstance(features, dict):
            raise InputError(f"{where} has musical_features of type {type(features).__name__}; it must be an object.")
        prompts_raw = s.get("prompts", [])
        if not isinstance(prompts_raw, list):
            raise InputError(f"{where} has 'prompts' that is not a list.")
        prompts: list[dict[str, Any]] = []
        seen_slot: set[int] = set()
        for k, q in enumerate(prompts_raw):
            pw = f"{where}.prompts[{k}]"
            if not isinstance(q, dict):
                raise InputError(f"{pw} is not an object.")
            mode = q.get("mode")
            if mode not in MODES:
                raise InputError(f"{pw} has mode {mode!r}; it must be 'convergent' or 'divergent'.")
            text = q.get("visual_prompt")
            if not isinstance(text, str):
                raise InputError(f"{pw} has no 'visual_prompt' text.")
            slot = q.get("prompt_id", k)
            if not isinstance(slot, int) or isinstance(slot, bool) or slot in seen_slot:
                raise InputError(f"{pw} has prompt_id {slot!r}; it must be an integer unique within its sample.")
            seen_slot.add(slot)
            temp = q.get("temperature")
            prompts.append(
                {
                    "slot": slot,
                    "mode": mode,
                    "temperature": float(temp) if isinstance(temp, (int, float)) else None,
                    "title": _title_of(text),
                    "text": text,
                    "image_prompt": None,
                }
            )
        meta = s.get("metadata") if isinstance(s.get("metadata"), dict) else {}
        samples.append(
            {
                "idx": idx,
                "source": f"{p.name}#{idx}",
                "meta": meta,
                "features": dict(features) if features else None,
                "abc": s.get("abc_notation") if isinstance(s.get("abc_notation"), str) else None,
                "prompts": prompts,
            }
        )
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    return {"metadata": metadata, "samples": samples}


def scoring_inputs(data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Turn :func:`load_legacy` output into the arguments of :func:`m2i.scoring.score_prompts`.

    Prompt ``id`` is assigned ``sample_idx * 1000 + slot`` and ``sample_id`` is the legacy
    ``sample_idx`` (there is no database here).

    Parameters
    ----------
    data : dict
        What :func:`load_legacy` returned.

    Returns
    -------
    prompts : list of dict
        One prompt dict per legacy prompt (``id, sample_id, slot, mode, title, text, image_prompt``).
    samples : dict
        ``sample_id -> features``.
    """
    prompts: list[dict[str, Any]] = []
    samples: dict[int, dict[str, Any]] = {}
    for s in data["samples"]:
        samples[s["idx"]] = s["features"] or {}
        for q in s["prompts"]:
            prompts.append(
                {
                    "id": s["idx"] * 1000 + q["slot"],
                    "sample_id": s["idx"],
                    "slot": q["slot"],
                    "mode": q["mode"],
                    "title": q["title"],
                    "text": q["text"],
                    "image_prompt": q["image_prompt"],
                }
            )
    return prompts, samples
