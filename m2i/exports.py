"""Files existing users have: exports in the earlier system's layout, and its import.

:func:`export_run` writes a run as the script-based system did, same names and shapes, so
scripts written for it keep working::

    <out>/generated_prompts/visual_prompts_complete.json      {metadata, samples[{..., prompts[...]}]}
    <out>/generated_prompts/prompts_for_image_generation.json  flat list, one entry per prompt
    <out>/generated_prompts/generation_summary.json            counts and per-sample summary
    <out>/creativity_scores/creativity_prompt_scores.json      one entry per scored prompt
    <out>/creativity_scores/creativity_sample_summaries.json   one entry per sample
    <out>/creativity_scores/creativity_dataset_stats.json      dataset statistics, correlations
    <out>/creativity_scores/creativity_comparison_report.json  by_dimension, convergent_metrics, ...
    <out>/images/image_generation_log.json                     one entry per image row
    <out>/images/image_generation_summary.json                 image statistics

Differences a user should know, none of which removes a key the old files had:

- Scores are m2i's (``m2i-score/1``, each in [0, 1]; docs/metrics.md), not the old 1-5 heuristics;
  every score entry carries ``method``.
- ``metadata.m2i_run.software`` lists the m2i versions (and commits) and packages that wrote the
  run's rows (:mod:`m2i.provenance`).
- ``visual_prompt`` is what the image model reads: m2i's ``image_prompt`` when there is one, else
  the prompt text (legacy imports). m2i prompts add ``title``, ``description`` and
  ``negative_prompt``.
- The comparison report has the old ``convergent_vs_divergent`` and ``by_dimension`` sections,
  the ``convergent_metrics`` / ``divergent_metrics`` sections (``originality_avg`` ...) that the
  old README documented but the old file lacked, and ``paired_analysis``: m2i's per-clip paired
  statistics (:func:`m2i.scoring.compare_modes`).

:func:`import_legacy` loads a ``visual_prompts_complete.json`` into a new run (samples with
features, ABC and metadata; prompts done; score and image rows pending), so it can be scored,
rendered and browsed like any run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from m2i.errors import InputError
from m2i.features import FEATURE_NAMES
from m2i.store import ops
from m2i.store.engine import Store
from m2i.store.models import Image, Prompt, Run, Sample, Score, Status, utcnow
from m2i.textfile import write_text_atomic

log = logging.getLogger(__name__)

METRICS = ("originality", "elaboration", "alignment", "coherence", "overall")
EXPORT_FILES = {
    "visual_prompts_complete": "generated_prompts/visual_prompts_complete.json",
    "prompts_for_image_generation": "generated_prompts/prompts_for_image_generation.json",
    "generation_summary": "generated_prompts/generation_summary.json",
    "creativity_prompt_scores": "creativity_scores/creativity_prompt_scores.json",
    "creativity_sample_summaries": "creativity_scores/creativity_sample_summaries.json",
    "creativity_dataset_stats": "creativity_scores/creativity_dataset_stats.json",
    "creativity_comparison_report": "creativity_scores/creativity_comparison_report.json",
    "image_generation_log": "images/image_generation_log.json",
    "image_generation_summary": "images/image_generation_summary.json",
}
"""Key -> path below the output folder of every file :func:`export_run` writes."""


# --------------------------------------------------------------------------- import


def import_legacy(store: Store, path: str | Path, *, name: str | None = None) -> dict[str, Any]:
    """Load a legacy ``visual_prompts_complete.json`` into a new run.

    Samples are stored done (features in the legacy form, ABC, metadata), prompts done (the
    whole ``visual_prompt`` as ``text``), and each prompt gets a pending score row and a pending
    image row, exactly as if m2i had generated it. Importing the same file (same content) again
    returns the existing run instead of a duplicate.

    Parameters
    ----------
    store : Store
        An open, writable run store.
    path : str or Path
        The legacy file, or the folder that holds it.
    name : str or None
        Run name; default ``"legacy:<file name>"``.

    Returns
    -------
    dict
        ``{"run_id", "name", "samples", "prompts", "existing"}``.

    Raises
    ------
    InputError
        If the file is missing or malformed (see :func:`m2i.scoring.legacy.load_legacy`), or ``name``
        is all digits (it would read as a run id).
    """
    from m2i.scoring.legacy import legacy_path, load_legacy

    if name is not None:
        ops.check_run_name(name)
    p = legacy_path(path)
    data = load_legacy(p)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    run_t, s_t, p_t = Run.__table__, Sample.__table__, Prompt.__table__
    n_prompts = sum(len(s["prompts"]) for s in data["samples"])
    with store.transaction() as conn:
        for rid, rname, cfg in conn.execute(select(run_t.c.id, run_t.c.name, run_t.c.config)):
            if isinstance(cfg, dict) and (cfg.get("legacy") or {}).get("sha256") == digest:
                return {"run_id": int(rid), "name": rname, "samples": len(data["samples"]), "prompts": n_prompts,
                        "existing": True}
        modes = sorted({(q["mode"], q["temperature"]) for s in data["samples"] for q in s["prompts"]},
                       key=lambda m: (m[0], m[1] if m[1] is not None else -1))
        config = {
            "source": "legacy",
            "legacy": {"file": p.name, "sha256": digest, "metadata": data["metadata"]},
            "modes": [{"mode": m, "temperature": t,
                       "count": max(sum(1 for q in s["prompts"] if (q["mode"], q["temperature"]) == (m, t))
                                    for s in data["samples"])}
                      for m, t in modes],
        }
        rname = name or f"legacy:{p.name}"
        now = utcnow()
        run_id = conn.execute(insert(run_t).values(name=rname, config=config, created_at=now)
                              .returning(run_t.c.id)).scalar_one()
        for s in data["samples"]:
            sid = conn.execute(insert(s_t).values(
                run_id=run_id, idx=s["idx"], source=s["source"], meta=s["meta"], features=s["features"],
                abc=s["abc"], status=Status.done.value, finished_at=now,
            ).returning(s_t.c.id)).scalar_one()
            for q in s["prompts"]:
                pid = conn.execute(insert(p_t).values(
                    run_id=run_id, sample_id=sid, slot=q["slot"], mode=q["mode"],
                    temperature=q["temperature"] if q["temperature"] is not None else 0.0,
                    seed=_seed(digest, s["idx"], q["slot"]), title=q["title"], text=q["text"],
                    image_prompt=None, provider="legacy", status=Status.done.value, finished_at=now,
                ).returning(p_t.c.id)).scalar_one()
                conn.execute(insert(Score.__table__).values(run_id=run_id, prompt_id=pid))
                conn.execute(insert(Image.__table__).values(run_id=run_id, prompt_id=pid))
    log.info("imported %d samples, %d prompts from %s into run %d", len(data["samples"]), n_prompts, p, run_id)
    return {"run_id": int(run_id), "name": rname, "samples": len(data["samples"]), "prompts": n_prompts,
            "existing": False}


def _seed(*parts: Any) -> int:
    h = hashlib.blake2b("/".join(str(x) for x in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------- export


def _rows(store: Store, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    run_t, s_t, p_t, sc_t, im_t = (Run.__table__, Sample.__table__, Prompt.__table__, Score.__table__,
                                  Image.__table__)
    with store.read() as conn:
        run = conn.execute(select(run_t).where(run_t.c.id == run_id)).mappings().first()
        if run is None:
            raise ops.no_such_run(store, run_id)
        samples = [dict(r) for r in conn.execute(
            select(s_t.c.id, s_t.c.idx, s_t.c.source, s_t.c.meta, s_t.c.features, s_t.c.abc, s_t.c.status,
                   s_t.c.error).where(s_t.c.run_id == run_id).order_by(s_t.c.idx)).mappings()]
        prompts = [dict(r) for r in conn.execute(
            select(p_t.c.id, p_t.c.sample_id, p_t.c.slot, p_t.c.mode, p_t.c.temperature, p_t.c.status,
                   p_t.c.title, p_t.c.text, p_t.c.image_prompt, p_t.c.negative_prompt, p_t.c.provider,
                   p_t.c.model,
                   sc_t.c.status.label("score_status"), *(sc_t.c[m] for m in METRICS),
                   sc_t.c.method.label("score_method"), sc_t.c.details.label("score_details"),
                   im_t.c.status.label("image_status"), im_t.c.path.label("image_path"),
                   im_t.c.width, im_t.c.height, im_t.c.steps, im_t.c.guidance, im_t.c.seed.label("image_seed"),
                   im_t.c.backend, im_t.c.model.label("image_model"), im_t.c.device, im_t.c.seconds,
                   im_t.c.error.label("image_error"), im_t.c.refiner, im_t.c.truncated)
            .join(sc_t, sc_t.c.prompt_id == p_t.c.id, isouter=True)
            .join(im_t, im_t.c.prompt_id == p_t.c.id, isouter=True)
            .where(p_t.c.run_id == run_id).order_by(p_t.c.sample_id, p_t.c.slot)).mappings()]
    return dict(run), samples, prompts


def _image_path(p: dict[str, Any], finder: ops.ImageFinder | None) -> str | None:
    """Where the prompt's image is on this machine when ``finder`` finds it, else where it was drawn."""
    here = finder(p["image_path"], p["image_seed"]) if finder is not None else None
    return p["image_path"] if here is None else str(here)


def _visual_prompt(p: dict[str, Any]) -> str:
    return p["image_prompt"] or p["text"] or ""


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _std(xs: list[float]) -> float | None:
    if not xs:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def _tempo(features: dict[str, Any] | None) -> float | None:
    t = (features or {}).get("tempo")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def build_exports(store: Store, run_id: int, finder: ops.ImageFinder | None = None) -> dict[str, Any]:
    """The content of every export file of a run, keyed as :data:`EXPORT_FILES` (nothing written);
    image paths as recorded, or where ``finder`` finds the files here (:func:`export_run`)."""
    from m2i.scoring import compare_modes

    run, samples, prompts = _rows(store, run_id)
    cfg = run.get("config") or {}
    created = run["created_at"].isoformat() if hasattr(run["created_at"], "isoformat") else str(run["created_at"])
    done_prompts = [p for p in prompts if p["status"] == Status.done.value]
    by_sample: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in done_prompts:
        by_sample[p["sample_id"]].append(p)
    sample_by_id = {s["id"]: s for s in samples}
    done_samples = [s for s in samples if s["status"] == Status.done.value]
    legacy_meta = (cfg.get("legacy") or {}).get("metadata") or {}
    llm = cfg.get("llm") or cfg.get("provider") or legacy_meta.get("llm_provider")
    per_sample = max((len(v) for v in by_sample.values()), default=0)

    def prompt_entry(p: dict[str, Any]) -> dict[str, Any]:
        e = {"prompt_id": p["slot"], "mode": p["mode"], "temperature": p["temperature"],
             "visual_prompt": _visual_prompt(p)}
        if p["image_prompt"]:
            e.update(title=p["title"], description=p["text"], negative_prompt=p["negative_prompt"])
        return e

    complete = {
        "metadata": {
            "dataset_path": cfg.get("dataset") or legacy_meta.get("dataset_path"),
            "generation_timestamp": legacy_meta.get("generation_timestamp") or created,
            "total_samples": len(done_samples),
            "prompts_per_sample": per_sample,
            "mel_spectrogram": bool(cfg.get("include_spectrogram", legacy_meta.get("mel_spectrogram", False))),
            "llm_provider": llm,
            "sample_rate": legacy_meta.get("sample_rate", 16000),
            "m2i_run": {"id": run["id"], "name": run["name"], "created_at": created,
                        # which m2i (version, commit) and packages wrote the rows (m2i.provenance)
                        "software": [x["software"] for x in ops.software_lines(store, run_id)]},
        },
        "samples": [
            {"sample_idx": s["idx"], "metadata": s["meta"] or {}, "musical_features": s["features"] or {},
             "abc_notation": s["abc"] or "", "prompts": [prompt_entry(p) for p in by_sample.get(s["id"], [])]}
            for s in done_samples
        ],
    }
    flat = [
        {"sample_idx": sample_by_id[p["sample_id"]]["idx"], "prompt_id": p["slot"], "mode": p["mode"],
         "temperature": p["temperature"], "visual_prompt": _visual_prompt(p),
         "features": sample_by_id[p["sample_id"]]["features"] or {},
         "abc_notation": sample_by_id[p["sample_id"]]["abc"] or ""}
        for p in done_prompts
    ]
    mode_count: dict[str, int] = defaultdict(int)
    for p in done_prompts:
        mode_count[p["mode"]] += 1
    gen_summary = {
        "total_samples": len(done_samples),
        "total_prompts": len(done_prompts),
        "convergent_prompts": mode_count["convergent"],
        "divergent_prompts": mode_count["divergent"],
        "generation_timestamp": complete["metadata"]["generation_timestamp"],
        "samples_with_errors": sum(1 for s in samples if s["status"] == Status.failed.value)
        + sum(1 for s in done_samples if any(p["status"] == Status.failed.value for p in prompts
                                             if p["sample_id"] == s["id"])),
        "sample_summary": [
            {"sample_idx": s["idx"], "features": s["features"] or {}, "prompt_count": len(by_sample.get(s["id"], [])),
             "modes": sorted({p["mode"] for p in by_sample.get(s["id"], [])}, reverse=True)}
            for s in done_samples
        ],
    }

    # ---- creativity
    scored = [p for p in done_prompts if p["score_status"] == Status.done.value]
    prompt_scores = [
        {"sample_idx": sample_by_id[p["sample_id"]]["idx"], "prompt_id": p["slot"], "mode": p["mode"],
         "temperature": p["temperature"], **{m: p[m] for m in METRICS}, "prompt_text": _visual_prompt(p)
         if not p["image_prompt"] else f"{p['image_prompt']}\n{p['text'] or ''}".strip(),
         "method": p["score_method"]}
        for p in scored
    ]
    summaries = []
    scored_by_sample: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for p in scored:
        scored_by_sample[p["sample_id"]].append(p)
    for s in done_samples:
        ps = scored_by_sample.get(s["id"], [])
        if not ps:
            continue
        e: dict[str, Any] = {"sample_idx": s["idx"]}
        for m in METRICS:
            e[f"avg_{m}"] = _mean([p[m] for p in ps if p[m] is not None])
        for mode in ("convergent", "divergent"):
            mp = [p for p in ps if p["mode"] == mode]
            e[f"{mode}_count"] = len(mp)
            for m in METRICS:
                e[f"{mode}_{m}"] = _mean([p[m] for p in mp if p[m] is not None])
        e["musical_features"] = s["features"] or {}
        summaries.append(e)

    rows = [{"sample_id": p["sample_id"], "mode": p["mode"], "details": p["score_details"],
             **{m: p[m] for m in METRICS}} for p in scored]
    paired = compare_modes(rows) if rows else None
    if paired is not None:
        diversity = {c["sample_id"]: c["diversity"] for c in paired["clips"]}
        for e, s in zip(summaries, [s for s in done_samples if scored_by_sample.get(s["id"])]):
            e["diversity"] = diversity.get(s["id"])

    stats: dict[str, Any] = {"total_samples": len(summaries), "total_prompts": len(scored)}
    for m in METRICS:
        vals = [p[m] for p in scored if p[m] is not None]
        stats[f"mean_{m}"] = _mean(vals)
        stats[f"std_{m}"] = _std(vals)
    overall = [p["overall"] for p in scored if p["overall"] is not None]
    stats["min_overall"] = min(overall) if overall else None
    stats["max_overall"] = max(overall) if overall else None
    for mode in ("convergent", "divergent"):
        vals = [p["overall"] for p in scored if p["mode"] == mode and p["overall"] is not None]
        stats[f"{mode}_count"] = sum(1 for p in scored if p["mode"] == mode)
        stats[f"{mode}_mean"] = _mean(vals)
        stats[f"{mode}_std"] = _std(vals)
    correlations: dict[str, dict[str, float | None]] = {}
    tempo_pairs = [(_tempo(sample_by_id[p["sample_id"]]["features"]), p) for p in scored]
    tempo_pairs = [(t, p) for t, p in tempo_pairs if t is not None]
    correlations["tempo"] = {m: _pearson([t for t, p in tempo_pairs if p[m] is not None],
                                         [p[m] for t, p in tempo_pairs if p[m] is not None]) for m in METRICS}
    major = [(1.0 if str((sample_by_id[p["sample_id"]]["features"] or {}).get("tonality", "")).lower()
              .startswith("maj") else 0.0, p) for p in scored
             if str((sample_by_id[p["sample_id"]]["features"] or {}).get("tonality", "")).lower()[:3] in ("maj", "min")]
    correlations["tonality_major"] = {m: _pearson([x for x, p in major if p[m] is not None],
                                                  [p[m] for x, p in major if p[m] is not None]) for m in METRICS}
    stats["correlations"] = correlations
    stats["scale"] = "0-1 (m2i-score/1, docs/metrics.md)"
    stats["feature_names"] = list(FEATURE_NAMES)

    comp: dict[str, Any] = {
        "convergent_vs_divergent": {
            "convergent_mean": stats["convergent_mean"], "convergent_std": stats["convergent_std"],
            "divergent_mean": stats["divergent_mean"], "divergent_std": stats["divergent_std"],
            "difference": (stats["divergent_mean"] - stats["convergent_mean"])
            if stats["divergent_mean"] is not None and stats["convergent_mean"] is not None else None,
            "convergent_count": stats["convergent_count"], "divergent_count": stats["divergent_count"],
        },
        "by_dimension": {},
    }
    for m in METRICS[:-1]:
        c = _mean([p[m] for p in scored if p["mode"] == "convergent" and p[m] is not None])
        d = _mean([p[m] for p in scored if p["mode"] == "divergent" and p[m] is not None])
        comp["by_dimension"][m] = {"convergent": c, "divergent": d,
                                   "difference": d - c if c is not None and d is not None else None}
    for mode in ("convergent", "divergent"):
        mp = [p for p in scored if p["mode"] == mode]
        comp[f"{mode}_metrics"] = {"count": len(mp), **{
            f"{m}_avg": _mean([p[m] for p in mp if p[m] is not None]) for m in METRICS}}
    comp["paired_analysis"] = None if paired is None else {
        k: paired[k] for k in ("method", "direction", "n_pairs", "metrics", "diversity")}

    # ---- images
    image_rows = [p for p in prompts if p["image_status"] is not None]
    log_entries = [
        {"sample_idx": sample_by_id[p["sample_id"]]["idx"], "prompt_id": p["slot"], "mode": p["mode"],
         "status": p["image_status"], "image_path": _image_path(p, finder), "width": p["width"], "height": p["height"],
         "num_inference_steps": p["steps"], "guidance_scale": p["guidance"], "seed": p["image_seed"],
         "use_refiner": p["refiner"], "backend": p["backend"], "model": p["image_model"], "device": p["device"],
         "generation_time": p["seconds"], "prompt_truncated": p["truncated"], "error": p["image_error"],
         "prompt": _visual_prompt(p)}
        for p in image_rows
    ]
    done_imgs = [p for p in image_rows if p["image_status"] == Status.done.value]
    dims = sorted({f"{p['width']}x{p['height']}" for p in done_imgs if p["width"] and p["height"]})
    devices = sorted({p["device"] for p in done_imgs if p["device"]})
    img_summary = {
        "total_prompts": len(image_rows),
        "total_images_generated": len(done_imgs),
        "failed": sum(1 for p in image_rows if p["image_status"] == Status.failed.value),
        "pending": sum(1 for p in image_rows if p["image_status"] in (Status.pending.value, Status.running.value)),
        "success_rate": 100.0 * len(done_imgs) / len(image_rows) if image_rows else 0.0,
        "image_dimensions": dims[0] if len(dims) == 1 else dims,
        "device": devices[0] if len(devices) == 1 else devices,
        "backends": sorted({p["backend"] for p in done_imgs if p["backend"]}),
        "models": sorted({p["image_model"] for p in done_imgs if p["image_model"]}),
        "mean_generation_time": _mean([p["seconds"] for p in done_imgs if p["seconds"] is not None]),
    }
    return {
        "visual_prompts_complete": complete,
        "prompts_for_image_generation": flat,
        "generation_summary": gen_summary,
        "creativity_prompt_scores": prompt_scores,
        "creativity_sample_summaries": summaries,
        "creativity_dataset_stats": stats,
        "creativity_comparison_report": comp,
        "image_generation_log": log_entries,
        "image_generation_summary": img_summary,
    }


def export_run(store: Store, run_id: int, out_dir: str | Path, finder: ops.ImageFinder | None = None) -> dict[str, Path]:
    """Write the earlier system's files for one run under ``out_dir``.

    Parameters
    ----------
    store : Store
        An open run store (read-only is enough).
    run_id : int
        The run to export.
    out_dir : str or Path
        Output folder; the ``generated_prompts/``, ``creativity_scores/`` and ``images/``
        sub-folders are created. Existing files of the same names are replaced atomically.
    finder : ImageFinder, optional
        Writes each image's path where the file is on this machine (moved with its folder:
        :class:`~m2i.store.ops.ImageFinder`) rather than where it was drawn; the recorded path
        stays for a file it does not find.

    Returns
    -------
    dict
        Key of :data:`EXPORT_FILES` -> path written.

    Raises
    ------
    InputError
        If the run does not exist or ``out_dir`` cannot be written.

    Examples
    --------
    >>> paths = export_run(store, 1, "exports")  # doctest: +SKIP
    >>> paths["creativity_comparison_report"].name  # doctest: +SKIP
    'creativity_comparison_report.json'
    """
    out = Path(out_dir)
    content = build_exports(store, run_id, finder)
    written: dict[str, Path] = {}
    try:
        for key, rel in EXPORT_FILES.items():
            target = out / rel
            _write(target, content[key])
            written[key] = target
    except OSError as exc:
        raise InputError(f"Cannot write exports to {str(out)!r} ({exc.strerror}); choose a writable --out folder.") from exc
    return written
