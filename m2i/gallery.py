"""``m2i gallery``: a static HTML contact sheet of a run that opens from the filesystem.

One row per clip: its features, its ABC transcription (as text), then its prompts with their
scores and images, convergent on the left and divergent on the right. Images are linked by
relative path, so the page and the images folder can be copied together; everything else
(styles included) is inside the one file, so no server and no network are needed.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select

from m2i.features import FEATURE_NAMES, clip_label, stated_abc, summarize
from m2i.report import current_modes
from m2i.store import ops
from m2i.store.engine import Store
from m2i.store.models import Image, Prompt, Sample, Score
from m2i.textfile import write_text_atomic

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{padding:16px 24px;background:#1c1c1c;border-bottom:1px solid #333}
h1{margin:0 0 4px;font-size:20px} .sub{color:#aaa}
.clip{display:grid;grid-template-columns:260px 1fr 1fr;gap:16px;padding:16px 24px;border-bottom:1px solid #2a2a2a}
.feat dt{color:#999;font-size:12px} .feat dd{margin:0 0 6px}
pre.abc{background:#1b1b1b;padding:6px;font-size:11px;white-space:pre-wrap;max-height:160px;overflow:auto}
.mode h3{margin:0 0 8px;font-size:13px;text-transform:uppercase;letter-spacing:.08em;color:#8ab}
.mode.divergent h3{color:#d9a}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{width:220px;background:#1a1a1a;border:1px solid #2c2c2c;border-radius:6px;overflow:hidden}
.card img{width:220px;height:220px;object-fit:cover;display:block;background:#222}
.card .noimg{width:220px;height:220px;display:flex;align-items:center;justify-content:center;color:#666}
.card .t{padding:6px 8px} .card .title{font-weight:600} .card .ip{font-size:12px;color:#ccc}
.scores{font:11px monospace;color:#9c9;padding:0 8px 8px}
.badge{font-size:10px;color:#fc6;border:1px solid #fc6;border-radius:3px;padding:0 3px}
table.stats{border-collapse:collapse;margin-top:8px;font:12px monospace}
table.stats td,table.stats th{padding:2px 8px;border-bottom:1px solid #333;text-align:right}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _rows(store: Store, run_id: int) -> tuple[list[dict], dict[int, list[dict]]]:
    s, p, sc, im = Sample.__table__, Prompt.__table__, Score.__table__, Image.__table__
    with store.read() as conn:
        samples = [dict(r) for r in conn.execute(
            select(s.c.id, s.c.idx, s.c.source, s.c.meta, s.c.features, s.c.abc, s.c.status, s.c.error)
            .where(s.c.run_id == run_id).order_by(s.c.idx)
        ).mappings()]
        prompts: dict[int, list[dict]] = {}
        for r in conn.execute(
            select(p.c.sample_id, p.c.slot, p.c.mode, p.c.temperature, p.c.realised_by, p.c.title, p.c.image_prompt,
                   p.c.text, p.c.status, p.c.error, sc.c.originality, sc.c.elaboration, sc.c.alignment,
                   sc.c.coherence, sc.c.overall, im.c.path, im.c.seed, im.c.backend, im.c.truncated)
            .outerjoin(sc, sc.c.prompt_id == p.c.id).outerjoin(im, im.c.prompt_id == p.c.id)
            .where(p.c.run_id == run_id).order_by(p.c.sample_id, p.c.slot)
        ).mappings():
            prompts.setdefault(r["sample_id"], []).append(dict(r))
    return samples, prompts


def _card(p: dict[str, Any], out: Path, finder: ops.ImageFinder) -> str:
    img = '<div class="noimg">no image yet</div>'
    path = finder(p.get("path"), p.get("seed"))
    if p.get("path") and path is None:
        img = '<div class="noimg">image not on this machine</div>'
    elif path is not None:
        rel = os.path.relpath(path.absolute(), out.parent)
        badge = ' <span class="badge">preview</span>' if p.get("backend") == "preview" else ""
        img = f'<img loading="lazy" src="{_e(Path(rel).as_posix())}" alt="{_e(p.get("title"))}">' + (
            f'<div class="t">{badge}</div>' if badge else "")
    scores = ""
    if p.get("overall") is not None:
        scores = " ".join(
            f"{k[:4]} {p[k]:.2f}" for k in ("originality", "elaboration", "alignment", "coherence", "overall")
            if p.get(k) is not None
        )
    how = f"T={p['temperature']:g}" + (" by instruction" if p.get("realised_by") == "instruction" else "")
    body = _e(p.get("image_prompt") or p.get("text") or p.get("error") or "")
    return (f'<div class="card">{img}<div class="t"><div class="title">{_e(p.get("title") or "untitled")}</div>'
            f'<div class="ip">{body}</div><div class="sub">{_e(how)} · {_e(p.get("status"))}</div></div>'
            f'<div class="scores">{_e(scores)}</div></div>')


def write_gallery(store: Store, run_id: int, out: str | os.PathLike[str],
                  finder: ops.ImageFinder | None = None) -> Path:
    """Write the contact sheet to ``out`` (an .html path) and return it.

    Images are linked where they are on this machine (``finder``; by default at their recorded
    path, or moved with their folder under ``out``'s folder, the database's or the current one:
    :class:`~m2i.store.ops.ImageFinder`); one that is nowhere here says so on its card.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    finder = finder or ops.ImageFinder(ops.image_bases(store, out.parent))
    run = ops.get_run(store, run_id) or {}
    cfg = run.get("config") or {}
    samples, prompts = _rows(store, run_id)
    modes = current_modes(store, run_id)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>m2i gallery — {_e(run.get('name'))}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_e(run.get('name'))}</h1><div class='sub'>{len(samples)} clips · LLM {_e(cfg.get('llm'))} "
        f"{_e(cfg.get('model') or '')} · images {_e(cfg.get('images'))}</div>",
    ]
    if modes and modes.get("metrics"):
        parts.append("<table class='stats'><tr><th>metric</th><th>convergent</th><th>divergent</th><th>diff</th>"
                     "<th>95% CI</th><th>p (Holm)</th></tr>")
        for name, st in modes["metrics"].items():
            ci = st.get("ci95")
            fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            ci_s = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "-"  # none under 5 clips (stats.MIN_CI_PAIRS)
            parts.append(f"<tr><td>{_e(name)}</td><td>{fmt(st.get('mean_convergent'))}</td><td>{fmt(st.get('mean_divergent'))}"
                         f"</td><td>{fmt(st.get('mean_diff'))}</td><td>{ci_s}</td>"
                         f"<td>{fmt(st.get('p_holm'))}</td></tr>")
        parts.append("</table>")
    parts.append("</header>")
    for s in samples:
        f = summarize(s.get("features"))
        feats = "".join(f"<dt>{_e(n.replace('_', ' '))}</dt><dd>{_e(f[n]) or '—'}</dd>" for n in FEATURE_NAMES)
        label = clip_label(s.get("source"), s.get("meta"))
        head = f"<h2 style='font-size:15px;margin:0 0 6px'>#{s['idx']} {_e(label)}</h2>"
        if s.get("status") == "failed":
            head += f"<div class='badge'>failed: {_e(s.get('error'))}</div>"
        left = f"<div>{head}<dl class='feat'>{feats}</dl><pre class='abc'>{_e(stated_abc(s.get('features'), s.get('abc')))}</pre></div>"
        cols = []
        for mode in ("convergent", "divergent"):
            cards = "".join(_card(p, out, finder) for p in prompts.get(s["id"], []) if p["mode"] == mode)
            cols.append(f"<div class='mode {mode}'><h3>{mode}</h3><div class='cards'>{cards}</div></div>")
        parts.append(f"<section class='clip'>{left}{''.join(cols)}</section>")
    parts.append("</body></html>")
    return write_text_atomic(out, "".join(parts))
