"""``m2i report``: what a run did and whether convergent and divergent prompts differ.

:func:`build_report` gathers the run's settings, per-stage counts, how each prompt's mode was
realised (the sampling temperature, or an instruction for models that refuse temperature), the
image backends used, and the convergent-vs-divergent analysis. The analysis is the one the score
stage stored (table ``report``) when it is current; otherwise it is computed now from the scores.
It uses only current scores: a score computed before other prompts of the run finished is left
out and counted (``stale_scores``) until the score stage recomputes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from m2i.store import ops
from m2i.store.engine import Store
from m2i.store.models import Image, Prompt, Status, local_time
from m2i.work import work_left


def current_modes(store: Store, run_id: int, *, done: int | None = None, stale: int | None = None,
                  recompute: bool = False) -> dict[str, Any] | None:
    """The run's convergent-vs-divergent analysis of its current scores: the stored one when it
    covers exactly those scores and was computed by this m2i's method, else computed again (and
    stored, when the store is writable); None with no current score. ``done`` / ``stale``: the
    run's done and stale score counts, when the caller has them already."""
    from m2i.scoring.stats import COMPARE_METHOD

    stale = ops.stale_scores(store, run_id) if stale is None else stale
    done = ops.status_counts(store, run_id)["score"]["done"] if done is None else done
    if not done - stale:
        return None
    modes = None if recompute or stale else ops.latest_report(store, run_id, "modes")
    until = ops.scores_until(store, run_id)
    if (modes is None or modes.get("n_prompts", -1) != done - stale or modes.get("scores_until", until) != until
            or modes.get("method") != COMPARE_METHOD):  # stored by an earlier m2i: its statistics differ
        from m2i.stages import write_mode_report

        modes = write_mode_report(store, run_id)
    return modes


def build_report(store: Store, run_id: int, *, recompute: bool = False) -> dict[str, Any]:
    """The whole report of one run as a JSON-able dict."""
    run = ops.get_run(store, run_id)
    if run is None:
        raise ops.no_such_run(store, run_id)
    counts = ops.status_counts(store, run_id)
    p, im = Prompt.__table__, Image.__table__
    with store.read() as conn:
        realised = {
            (mode, how or "unrecorded"): int(n)
            for mode, how, n in conn.execute(
                select(p.c.mode, p.c.realised_by, func.count()).where(p.c.run_id == run_id, p.c.status == Status.done.value)
                .group_by(p.c.mode, p.c.realised_by)
            )
        }
        # tokens and cost count every billed answer, those of prompts that failed (invalid answers) too
        done = p.c.status == Status.done.value
        billed = done | ((p.c.status == Status.failed.value) & p.c.llm_attempts.is_not(None))
        llm = [
            {"provider": prov, "model": model, "prompts": int(n or 0), "failed": int(nf or 0), "tokens_in": int(ti or 0),
             "tokens_out": int(to or 0), "cost_usd": round(float(c or 0), 4), "mean_latency_ms": round(float(lat or 0), 1)}
            for prov, model, n, nf, ti, to, c, lat in conn.execute(
                select(p.c.provider, p.c.model, func.sum(case((done, 1), else_=0)), func.sum(case((done, 0), else_=1)),
                       func.sum(p.c.tokens_in), func.sum(p.c.tokens_out), func.sum(p.c.cost_usd),
                       func.avg(case((done, p.c.latency_ms), else_=None)))
                .where(p.c.run_id == run_id, billed).group_by(p.c.provider, p.c.model)
            )
        ]
        images = [
            {"backend": b, "model": m, "device": d, "images": int(n), "mean_seconds": round(float(s or 0), 3),
             "truncated": int(t or 0)}
            for b, m, d, n, s, t in conn.execute(
                select(im.c.backend, im.c.model, im.c.device, func.count(), func.avg(im.c.seconds),
                       func.sum(func.coalesce(im.c.truncated, False).cast(type_=p.c.slot.type)))
                .where(im.c.run_id == run_id, im.c.status == Status.done.value).group_by(im.c.backend, im.c.model, im.c.device)
            )
        ]
    by_instruction = sum(n for (_, how), n in realised.items() if how == "instruction")
    stale = ops.stale_scores(store, run_id)
    modes = current_modes(store, run_id, done=counts["score"]["done"], stale=stale, recompute=recompute)
    return {
        "run": {"id": run["id"], "name": run["name"], "created_at": str(run["created_at"]), "paused": run["paused"],
                "cancelled": run["cancelled"]},
        "config": run["config"],
        "counts": counts,
        "realised_by": [{"mode": m, "by": how, "prompts": n} for (m, how), n in sorted(realised.items())],
        "modes_by_instruction": by_instruction > 0,
        "llm": llm,
        "images": images,
        "modes": modes,
        "stale_scores": stale,
        "software": [{**x, "first": str(x["first"])[:19], "last": str(x["last"])[:19]}
                     for x in ops.software_lines(store, run_id)],
    }


def format_text(report: dict[str, Any]) -> str:
    """The report as plain text for a terminal."""
    from m2i.scoring import format_report
    from m2i.scoring.legacy import legacy_writer

    r, cfg = report["run"], report["config"] or {}
    lines = [f"run {r['id']} {r['name']}  (created {local_time(r['created_at'])})" + ("  [paused]" if r["paused"] else "")
             + ("  [cancelled]" if r.get("cancelled") else "")]
    lines.append("  ".join(
        f"{s}: {c['done']}/{sum(c.values())}" + (f" ({c['failed']} failed)" if c["failed"] else "")
        for s, c in report["counts"].items()
    ))
    for row in report["llm"]:
        if row["provider"] == "legacy":  # imported: the earlier system recorded no model, tokens or timing
            lines.append(f"llm: legacy  {row['prompts']} prompts imported, written by {legacy_writer(cfg)}; model, tokens, cost "
                         "and latency were not recorded")
            continue
        lines.append(
            f"llm: {row['provider']} {row['model']}  {row['prompts']} prompts"
            + (f" ({row['failed']} failed; tokens and cost include their answers)" if row.get("failed") else "")
            + f", {row['tokens_in']}+{row['tokens_out']} tokens, "
            f"${row['cost_usd']:.4f}, mean latency {row['mean_latency_ms']:.0f} ms"
        )
    if not report["llm"]:
        lines.append(f"llm: {cfg.get('llm')} {cfg.get('model') or ''} (no prompts yet)")
    modes = ", ".join(f"{x['mode']} by {x['by']}: {x['prompts']}" for x in report["realised_by"])
    if modes:
        lines.append(f"modes realised: {modes}")
    if report["modes_by_instruction"]:
        lines.append(
            "NOTE: this model refuses sampling parameters, so convergent and divergent were realised by "
            "instructions, not temperature; compare with runs that used temperature with care."
        )
    for row in report["images"]:
        label = "PREVIEW renderer (not SDXL)" if row["backend"] == "preview" else f"{row['backend']} {row['model'] or ''}"
        lines.append(
            f"images: {label} on {row['device'] or '?'}: {row['images']} images, {row['mean_seconds']:.2f} s each"
            + (f", {row['truncated']} prompts truncated" if row["truncated"] else "")
        )
    lines += _software(report.get("software") or [])
    lines.append("")
    if report["modes"]:
        lines.append(format_report(report["modes"]))
    else:
        lines.append("convergent vs divergent: no scores yet")
    lines += _not_final(report)
    return "\n".join(lines)


def _software(software: list[dict[str, Any]]) -> list[str]:
    """What worked on the run: one line, or a warning with every version when an upgrade came mid-run."""
    if not software:
        return []
    if len(software) == 1:
        return [f"software: {software[0]['software']}"]
    lines = [f"NOTE: {len(software)} different software versions wrote this run's rows; features, prompts, scores "
             "or images written by different versions may not be comparable (runners that began writing):"]

    def when(x: dict[str, Any]) -> str:
        first, last = local_time(x["first"])[:16], local_time(x["last"])[:16]
        return first if first == last else f"{first} to {last}"

    return lines + [f"  {when(x)}: {x['software']}" for x in software]


def _not_final(report: dict[str, Any]) -> list[str]:
    """Lines saying which scores the comparison above leaves out, and why (none when it covers the run)."""
    left = work_left(report["counts"])
    waiting = left.get("score", 0)
    writing = left.get("analyze", 0) + left.get("generate", 0)
    stale = report.get("stale_scores") or 0
    out = []
    if stale:
        out.append(f"{stale} score(s) left out: they were computed before other prompts of the run finished; "
                   "`m2i run` recomputes them.")
    if waiting:
        out.append(f"{waiting} score(s) wait for the score stage, which scores the whole run once its clips are "
                   "analysed and its prompts written (`m2i run` continues it).")
    if writing and (report["modes"] or stale):
        out.append("clips or prompts of this run are still in progress: when more prompts finish, its scores are "
                   "computed again with them.")
    return out
