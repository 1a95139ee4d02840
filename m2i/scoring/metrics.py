"""The four creativity metrics and their weighted sum (method ``m2i-score/1``).

Conventions
-----------
- Every metric is a float in [0, 1]; higher is more original / elaborate / aligned / coherent.
- A prompt is read as ``image_prompt`` followed by ``text`` (legacy prompts have only ``text``).
- Texts are split into segments (:func:`m2i.scoring.text.segments`); each segment is embedded once
  with all-MiniLM-L6-v2 (:mod:`m2i.scoring.embed`) and a prompt's embedding is the token-weighted
  mean of its segment embeddings, re-normalised. Cosine similarity of unit vectors is their dot
  product.
- A metric that cannot be measured (no other prompt to compare with, no features) is ``None`` and
  ``overall`` renormalises the weights over the metrics that exist. An empty prompt scores 0.
- Fixed calibration ranges map raw quantities to [0, 1]; they are constants here and in
  docs/metrics.md, chosen once on the legacy corpus and m2i's own prompts, never fitted per run.

Formulas are in docs/metrics.md; :data:`METHOD` changes whenever any of them does.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from m2i.errors import ConfigError, InputError
from m2i.scoring import lexicon as lx
from m2i.scoring.music import expectations, verbalize
from m2i.scoring.text import find_terms, join_nonempty, ngram_repeat_fraction, segments, words

METHOD = "m2i-score/1"
METRICS = ("originality", "elaboration", "alignment", "coherence")

DEFAULT_SETTINGS: dict[str, Any] = {
    "weights": {"originality": 0.3, "elaboration": 0.2, "alignment": 0.3, "coherence": 0.2},
    "precision": "auto",
    "max_tokens": 128,
    "max_segments": 48,
    "max_prompt_tokens": 256,
    "threads": None,
}
"""Settings :func:`score_prompts` accepts (``settings`` overrides any of them)."""

# calibration ranges: raw value at which the component is 0 and at which it is 1
RUN_DISTANCE = (0.10, 0.60)  # 1 - mean cosine to the other clips' prompts
CLIP_DISTANCE = (0.00, 0.40)  # 1 - max cosine to a sibling prompt of the same clip
ADJACENT_SIM = (0.10, 0.60)  # mean cosine of adjacent segments
ORIGINALITY_PARTS = (0.5, 0.5)  # run, clip
DETAIL_SCALE = 15.0  # distinct details at which amount = 1 - 1/e
DENSITY_FULL = 0.25  # distinct details per word giving full density credit
ELABORATION_PARTS = (0.5, 0.25, 0.25)  # amount, coverage, density
ALIGNMENT_PARTS = (0.6, 0.4)  # contrast, terms
MODE_MENTION_WEIGHT = 3
REPEAT_N = 4
REPEAT_SLOPE = 2.0
MOOD_PENALTY = 0.5

_MODE_MENTION = re.compile(
    r"\b(?:[a-g](?:#|b|\u266f|\u266d|-sharp|-flat| sharp| flat)?\s+(major|minor)|(major|minor)\s+(?:key|mode|tonality|scale|chords?|progression))\b"
)


def _ramp(x: float, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def prompt_text(prompt: dict[str, Any]) -> str:
    """The text a prompt is scored on: ``image_prompt`` then ``text``."""
    return join_nonempty([prompt.get("image_prompt"), prompt.get("text")])


def resolve_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``settings`` over :data:`DEFAULT_SETTINGS` and validate them.

    Raises
    ------
    ConfigError
        For an unknown key, a weight that is negative or not a number, or all-zero weights.
    """
    out = {**DEFAULT_SETTINGS, "weights": dict(DEFAULT_SETTINGS["weights"])}
    for k, v in (settings or {}).items():
        if k not in DEFAULT_SETTINGS:
            raise ConfigError(f"Unknown scoring setting {k!r}; use one of {', '.join(DEFAULT_SETTINGS)}.")
        if k == "weights":
            if not isinstance(v, dict):
                raise ConfigError("Scoring weights must be a table of metric = number.")
            for m, w in v.items():
                if m not in METRICS:
                    raise ConfigError(f"Scoring weight for unknown metric {m!r}; use {', '.join(METRICS)}.")
                if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
                    raise ConfigError(f"Scoring weight {m} = {w!r} is invalid; use a number >= 0.")
                out["weights"][m] = float(w)
        else:
            out[k] = v
    t = out["threads"]
    if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 1):
        raise ConfigError(f"Scoring setting threads = {t!r} is invalid; use an integer >= 1 or leave it unset.")
    if sum(out["weights"].values()) <= 0:
        raise ConfigError("All scoring weights are 0; give at least one metric a positive weight.")
    for k in ("max_segments", "max_prompt_tokens", "max_tokens"):
        if not isinstance(out[k], int) or isinstance(out[k], bool) or out[k] < 1:
            raise ConfigError(f"Scoring setting {k} = {out[k]!r} is invalid; use an integer >= 1.")
    return out


# --- text-only metrics ---------------------------------------------------------------------


def elaboration_parts(text: str, *, tokens: list[str] | None = None) -> dict[str, Any]:
    """Elaboration of one text and its components.

    ``amount = 1 - exp(-D / 15)`` with ``D`` the distinct concrete detail terms;
    ``coverage = C / 6`` with ``C`` the detail categories present; ``density = min(1, D / W / 0.25)``
    with ``W`` the words; ``elaboration = 0.5 amount + 0.25 coverage + 0.25 density``.

    Examples
    --------
    >>> round(elaboration_parts("")["elaboration"], 3)
    0.0
    """
    toks = words(text) if tokens is None else tokens
    if not toks:
        return {"elaboration": 0.0, "details": 0, "categories": 0, "words": 0, "density": 0.0}
    terms = set(find_terms(toks, lx.DETAIL_TERMS))
    cats = [name for name, vocab in lx.CATEGORIES.items() if terms & vocab]
    d = len(terms)
    amount = 1.0 - math.exp(-d / DETAIL_SCALE)
    coverage = len(cats) / len(lx.CATEGORIES)
    density = d / len(toks)
    a, c, e = ELABORATION_PARTS
    value = a * amount + c * coverage + e * min(1.0, density / DENSITY_FULL)
    return {"elaboration": value, "details": d, "categories": len(cats), "words": len(toks), "density": density}


def polarity_counts(text: str, *, tokens: list[str] | None = None) -> dict[str, int]:
    """How many explicit musical terms of each polarity ``text`` uses.

    Keys: the :data:`m2i.scoring.lexicon.POLARITY` lexicons (``arousal_high``, ``arousal_low``,
    ``valence_pos``, ``valence_neg``, ``loud``, ``soft``) and ``major`` / ``minor`` (explicit
    mentions of the mode: ``"F minor"``, ``"major key"``). A word in two lexicons counts in both.

    Examples
    --------
    >>> polarity_counts("A calm, serene lake in A minor")["arousal_low"], polarity_counts("in A minor")["minor"]
    (2, 1)
    """
    toks = words(text) if tokens is None else tokens
    terms = find_terms(toks, lx.POLARITY_TERMS)
    out = {name: sum(1 for t in terms if t in vocab) for name, vocab in lx.POLARITY.items()}
    mentions = [(m.group(1) or m.group(2)) for m in _MODE_MENTION.finditer(text.lower())]
    out["major"], out["minor"] = mentions.count("major"), mentions.count("minor")
    return out


def term_agreement(counts: dict[str, int], exp: dict[str, int | None]) -> dict[str, Any]:
    """Agreement of explicit terms with the clip's expected energy, mood, mode and dynamics.

    Per facet with an expectation: ``(agree + 1) / (agree + contradict + 2)``, 0.5 with no
    evidence. Energy counts arousal terms, mood and mode count valence terms, mode adds explicit
    mode mentions with weight 3, dynamics counts loud/soft terms. ``terms`` is the mean over the
    facets that have an expectation, ``None`` when none has.

    Examples
    --------
    >>> term_agreement(polarity_counts("a dark, gloomy alley in D minor"), {"valence": -1, "mode": -1})["facets"]
    {'mood': 0.75, 'mode': 0.8889}
    """

    def facet(e: int | None, plus: float, minus: float) -> float | None:
        if not e:
            return None
        agree, contra = (plus, minus) if e > 0 else (minus, plus)
        return (agree + 1.0) / (agree + contra + 2.0)

    c = counts
    facets_raw = {
        "energy": facet(exp.get("energy"), c["arousal_high"], c["arousal_low"]),
        "mood": facet(exp.get("valence"), c["valence_pos"], c["valence_neg"]),
        "mode": facet(
            exp.get("mode"),
            c["valence_pos"] + MODE_MENTION_WEIGHT * c["major"],
            c["valence_neg"] + MODE_MENTION_WEIGHT * c["minor"],
        ),
        "dynamics": facet(exp.get("dynamics"), c["loud"], c["soft"]),
    }
    facets = {k: v for k, v in facets_raw.items() if v is not None}
    terms = sum(facets.values()) / len(facets) if facets else None
    return {"terms": terms, "facets": {k: round(v, 4) for k, v in facets.items()}}


def mood_contradiction(counts: dict[str, int], exp: dict[str, int | None]) -> dict[str, Any]:
    """Share of mood terms that contradict the clip's expected arousal and valence.

    ``contradiction = c / (a + c)`` summed over the arousal and valence lexicons; 0 with no mood
    terms or no expectation.

    Examples
    --------
    >>> mood_contradiction(polarity_counts("joyful, cheerful and calm"), {"valence": -1, "arousal": None})["contradiction"]
    1.0
    """
    agree = contra = 0
    for key, plus, minus in (("arousal", "arousal_high", "arousal_low"), ("valence", "valence_pos", "valence_neg")):
        e = exp.get(key)
        if not e:
            continue
        a, c = (counts[plus], counts[minus]) if e > 0 else (counts[minus], counts[plus])
        agree += a
        contra += c
    share = contra / (agree + contra) if agree + contra else 0.0
    return {"contradiction": share, "agree": agree, "contradict": contra}


# --- the stage function ----------------------------------------------------------------------


def _check_prompt(p: Any, where: str) -> None:
    if not isinstance(p, dict):
        raise InputError(f"{where} is not a prompt dict; pass dicts with id, sample_id, mode and text.")
    for k in ("id", "sample_id"):
        if k not in p:
            raise InputError(f"{where} has no {k!r}; every prompt needs id and sample_id.")


def score_prompts(
    targets: list[dict[str, Any]],
    *,
    context: list[dict[str, Any]],
    samples: dict[int, dict[str, Any]],
    settings: dict[str, Any] | None = None,
    embedder: Any | None = None,
) -> list[dict[str, Any]]:
    """Score prompts for originality, elaboration, alignment and coherence.

    Parameters
    ----------
    targets : list of dict
        Prompts to score: ``id, sample_id, slot, mode, title, text, image_prompt``.
    context : list of dict
        Every done prompt of the run (targets may or may not be included; they are added).
        Originality and alignment are relative to this pool.
    samples : dict
        ``sample_id -> features`` (full or legacy form) for the samples of the pool.
    settings : dict or None
        Overrides of :data:`DEFAULT_SETTINGS` (``weights``, ``precision``, ``max_tokens``,
        ``max_segments``, ``max_prompt_tokens``, ``threads``).
    embedder : Embedder or None
        An :class:`m2i.scoring.embed.Embedder`; ``None`` uses the cached process-wide one.

    Returns
    -------
    list of dict
        Per target, in order: ``originality, elaboration, alignment, coherence, overall`` (float
        in [0, 1] or ``None`` when not measurable), ``method`` and ``details`` (JSON-able).

    Raises
    ------
    InputError
        If a prompt lacks ``id`` or ``sample_id``.
    ConfigError
        For invalid settings or a missing model.

    Examples
    --------
    >>> rows = score_prompts([p], context=run_prompts, samples={1: features})  # doctest: +SKIP
    >>> rows[0]["method"]  # doctest: +SKIP
    'm2i-score/1'
    """
    cfg = resolve_settings(settings)
    if not isinstance(targets, list) or not isinstance(context, list):
        raise InputError("score_prompts takes lists of prompt dicts for targets and context.")
    if not targets:
        return []
    for i, p in enumerate(targets):
        _check_prompt(p, f"targets[{i}]")
    for i, p in enumerate(context):
        _check_prompt(p, f"context[{i}]")

    pool: dict[Any, dict[str, Any]] = {p["id"]: p for p in context}
    for p in targets:
        pool[p["id"]] = p
    ids = list(pool)
    index = {pid: k for k, pid in enumerate(ids)}
    texts = [prompt_text(pool[pid]) for pid in ids]
    segs_all = [segments(t)[: cfg["max_segments"]] for t in texts]
    sample_ids = [pool[pid]["sample_id"] for pid in ids]
    modes = [pool[pid].get("mode") for pid in ids]

    sample_keys = sorted({s for s in sample_ids}, key=lambda s: (str(type(s)), s))
    feat_text = {s: verbalize(samples.get(s)) for s in sample_keys}

    if embedder is None:
        from m2i.scoring.embed import get_embedder

        embedder = get_embedder(precision=cfg["precision"], max_tokens=int(cfg["max_tokens"]), threads=cfg["threads"])

    # keep a prompt's leading segments up to the token budget (the first segment always)
    segs: list[list[str]] = []
    for ss in segs_all:
        budget = int(cfg["max_prompt_tokens"])
        kept: list[str] = []
        for s, nt in zip(ss, embedder.count_tokens(ss)):
            if kept and nt > budget:
                break
            kept.append(s)
            budget -= nt
        segs.append(kept)
    flat = [s for ss in segs for s in ss]
    fkeys = [s for s in sample_keys if feat_text[s]]
    vecs, ntok = embedder.encode(flat + [feat_text[s] for s in fkeys], return_tokens=True)
    seg_vecs, seg_tok = vecs[: len(flat)], ntok[: len(flat)]
    fvec = {s: vecs[len(flat) + k] for k, s in enumerate(fkeys)}

    n = len(ids)
    doc = np.zeros((n, vecs.shape[1]), dtype=np.float32)
    seg_of: list[np.ndarray] = []
    pos = 0
    for k, ss in enumerate(segs):
        v = seg_vecs[pos : pos + len(ss)]
        w = seg_tok[pos : pos + len(ss)].astype(np.float32)
        pos += len(ss)
        seg_of.append(v)
        if len(ss):
            d = (v * w[:, None]).sum(0)
            norm = float(np.linalg.norm(d))
            if norm > 0:
                doc[k] = d / norm
    has = np.array([len(ss) > 0 for ss in segs])
    sim = doc @ doc.T

    sid_arr = np.array([str(s) for s in sample_ids])
    same_clip = sid_arr[:, None] == sid_arr[None, :]
    valid = has[:, None] & has[None, :]
    np.fill_diagonal(valid, False)

    # alignment: similarity of every prompt to every clip's feature text
    fk_index = {s: j for j, s in enumerate(fkeys)}
    fmat = np.stack([fvec[s] for s in fkeys]) if fkeys else np.zeros((0, doc.shape[1]), dtype=np.float32)
    fsim = doc @ fmat.T if fkeys else np.zeros((n, 0), dtype=np.float32)

    weights = cfg["weights"]
    results: list[dict[str, Any]] = []
    for p in targets:
        k = index[p["id"]]
        text = texts[k]
        sid = sample_ids[k]
        exp = expectations(samples.get(sid))
        if not has[k]:
            details = {"empty": True}
            row = dict.fromkeys(METRICS, 0.0)
            row.update(overall=0.0, method=METHOD, details=details)
            results.append(row)
            continue

        # originality
        others = valid[k] & ~same_clip[k]
        sibs = valid[k] & same_clip[k]
        same_mode = sibs & (np.array(modes) == modes[k])
        sim_run = float(sim[k, others].mean()) if others.any() else None
        sim_clip_max = float(sim[k, sibs].max()) if sibs.any() else None
        sim_clip_mean = float(sim[k, sibs].mean()) if sibs.any() else None
        sim_mode_mean = float(sim[k, same_mode].mean()) if same_mode.any() else None
        o_run = _ramp(1.0 - sim_run, RUN_DISTANCE) if sim_run is not None else None
        o_clip = _ramp(1.0 - sim_clip_max, CLIP_DISTANCE) if sim_clip_max is not None else None
        parts = [(w, v) for w, v in zip(ORIGINALITY_PARTS, (o_run, o_clip)) if v is not None]
        originality = sum(w * v for w, v in parts) / sum(w for w, _ in parts) if parts else None

        # elaboration
        toks = words(text)
        el = elaboration_parts(text, tokens=toks)

        # alignment
        contrast = pct = None
        if sid in fk_index and len(fkeys) > 1:
            own = float(fsim[k, fk_index[sid]])
            rest = np.delete(fsim[k], fk_index[sid])
            contrast = own - float(rest.mean())
            pct = float(((rest < own - 1e-6).sum() + 0.5 * (np.abs(rest - own) <= 1e-6).sum()) / len(rest))
        pc = polarity_counts(text, tokens=toks)
        ta = term_agreement(pc, exp)
        a_parts = [(w, v) for w, v in zip(ALIGNMENT_PARTS, (pct, ta["terms"])) if v is not None]
        alignment = sum(w * v for w, v in a_parts) / sum(w for w, _ in a_parts) if a_parts else None

        # coherence
        sv = seg_of[k]
        adj = float(np.einsum("ij,ij->i", sv[:-1], sv[1:]).mean()) if len(sv) > 1 else None
        a_score = _ramp(adj, ADJACENT_SIM) if adj is not None else 1.0
        rep = ngram_repeat_fraction(toks, n=REPEAT_N)
        mc = mood_contradiction(pc, exp)
        coherence = a_score * (1.0 - min(1.0, REPEAT_SLOPE * rep)) * (1.0 - MOOD_PENALTY * mc["contradiction"])

        values = {
            "originality": originality,
            "elaboration": el["elaboration"],
            "alignment": alignment,
            "coherence": coherence,
        }
        wsum = sum(weights[m] for m, v in values.items() if v is not None)
        overall = sum(weights[m] * v for m, v in values.items() if v is not None) / wsum if wsum > 0 else None
        details = {
            "orig_run": _r(o_run),
            "orig_clip": _r(o_clip),
            "sim_run_mean": _r(sim_run),
            "sim_clip_max": _r(sim_clip_max),
            "sim_clip_mean": _r(sim_clip_mean),
            "sim_mode_mean": _r(sim_mode_mean),
            "details": el["details"],
            "categories": el["categories"],
            "words": el["words"],
            "density": _r(el["density"]),
            "align_contrast": _r(contrast),
            "align_rank": _r(pct),
            "align_terms": _r(ta["terms"]),
            "facets": ta["facets"],
            "segments": len(sv),
            "adjacent_sim": _r(adj),
            "repeat_4gram": _r(rep),
            "mood_agree": mc["agree"],
            "mood_contradict": mc["contradict"],
        }
        row = {m: _r(v, 6) for m, v in values.items()}
        row.update(overall=_r(overall, 6), method=METHOD, details=details)
        results.append(row)
    return results
