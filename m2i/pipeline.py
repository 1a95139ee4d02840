"""One run of the pipeline, as ``m2i run`` and the Python API start it.

:func:`run_pipeline` opens (or creates) the store, creates or continues a run, ingests the
dataset, builds the stage adapters named by the settings and drives them with the
:class:`~m2i.runner.Runner` until no work is left or a stop is requested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from m2i.config import RUN_KEYS, Settings, redact_url, url_has_password
from m2i.errors import ConfigError, InputError
from m2i.store import ops
from m2i.store.engine import Store, open_store

log = logging.getLogger(__name__)


def plan_run(
    settings: Settings, run: dict[str, Any] | None, *, explicit: set[str] | None = None
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]:
    """What :func:`prepare_run` would record for ``run`` (the run to continue, ``None`` for a new
    one), without recording anything.

    Returns ``(run, config, changed)``: the run to continue (``None`` for a new one), the
    configuration it will run with, and the recorded values this invocation replaces (options
    given explicitly, ``explicit``). A new ``--llm`` without ``--model`` brings the new provider's
    model (m2i.toml's or ``M2I_MODEL``, else its default), not the previous provider's. The model
    recorded is the one that runs (:meth:`~m2i.prompts.providers.LLMProvider.recorded_model`).
    """
    from m2i.prompts.providers import provider_class

    explicit = explicit or set()
    fresh = settings.run_config()
    if run is None:
        fresh["model"] = provider_class(fresh["llm"]).recorded_model(fresh["model"])
        return None, fresh, {}
    cfg = dict(run["config"] or {})
    # out_dir belongs to the machine (each box of a cluster writes where it is told), not the run
    keys = (explicit & RUN_KEYS) - {"out_dir"}
    if "llm" in keys and fresh["llm"] != cfg.get("llm"):
        keys.add("model")  # the previous provider's model means nothing to the new one
    if keys & {"llm", "model"}:
        llm = fresh["llm"] if "llm" in keys else cfg.get("llm") or "local"
        fresh["model"] = provider_class(llm).recorded_model(fresh["model"])
    changed = {k: v for k, v in fresh.items() if k in keys and cfg.get(k) != v}  # in a stable order
    return run, {**cfg, **changed}, changed


def record_run(
    store: Store, settings: Settings, run: dict[str, Any] | None, config: dict[str, Any], changed: dict[str, Any],
) -> dict[str, Any]:
    """Record a :func:`plan_run`: create the new run, or write the continued run's changes (with an event)."""
    if run is None:
        name = settings.run_name or time.strftime("run-%Y%m%d-%H%M%S")
        config = dict(config)
        run_id = ops.create_run(store, name=name, config=config)
        own = own_out_dir(store, run_id, config["out_dir"])
        if own != config["out_dir"]:
            config["out_dir"] = own
            ops.update_run_config(store, run_id, config)
        return ops.get_run(store, run_id)  # type: ignore[return-value]
    if changed:
        ops.update_run_config(store, int(run["id"]), config)
        ops.log_event(store, int(run["id"]), "settings changed: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
        run = ops.get_run(store, int(run["id"]))
    return run  # type: ignore[return-value]


def prepare_run(
    store: Store, settings: Settings, *, new_run: bool = False, explicit: set[str] | None = None
) -> dict[str, Any]:
    """Create a run, or continue the newest (or named) one.

    A continued run keeps its recorded configuration; options given explicitly on this
    invocation (``explicit``) replace the recorded values, and the change is logged as an event.
    ``m2i run`` plans first (:func:`plan_run`) and records (:func:`record_run`) only once the
    LLM provider's check has passed.
    """
    run = None if new_run else ops.get_run(store, settings.run_name)
    return record_run(store, settings, *plan_run(settings, run, explicit=explicit))


def own_out_dir(store: Store, run_id: int, out_dir: str) -> str:
    """``out_dir``, or ``<out_dir>/run-<id>`` when another run of this store writes its images,
    report and gallery there (so that no run overwrites another's files); the move is logged."""
    def same(a: str | None) -> bool:
        return bool(a) and Path(str(a)).expanduser().resolve() == Path(out_dir).expanduser().resolve()

    if not any(same((r["config"] or {}).get("out_dir")) for r in ops.list_runs(store) if int(r["id"]) != run_id):
        return out_dir
    own = f"{out_dir}/run-{run_id}"
    ops.log_event(store, run_id, f"another run of this database writes to {out_dir}; "
                                 f"this run's images, report and gallery go to {own}")
    return own


def with_live_secrets(run: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The run with the secrets its record leaves out put back from this invocation, for its stages.

    A password in the server URL (``http://user:KEY@host``) is recorded as ``***`` (like API keys,
    which are never recorded); the URL given now (``--base-url``, ``M2I_BASE_URL``, m2i.toml)
    supplies it. Nothing here is written back.
    """
    recorded = (run.get("config") or {}).get("base_url")
    if not url_has_password(recorded):  # nothing was left out of the record
        return run
    live = settings.base_url
    if not live or redact_url(live) != recorded:
        raise ConfigError(
            f"This run's server URL ({recorded}) has a password, which m2i does not store; give the URL "
            "again with --base-url (or M2I_BASE_URL)."
        )
    return {**run, "config": {**run["config"], "base_url": live}}


def ingest(store: Store, run_id: int, dataset: str | list[str] | Iterable[Any], *, clip_s: float = 10.0,
           hop_s: float = 10.0, limit: int | None = None, npy_sr: int | None = None) -> dict[str, int]:
    """Add a dataset's clips to a run (``m2i ingest``, ``m2i run --dataset``, the Python API).

    ``dataset`` is a path (or ``"demo"``), a list of them, or the clips of one already opened
    with :func:`m2i.audio.datasets.open_dataset`.
    """
    from m2i.audio.datasets import open_dataset

    paths = isinstance(dataset, (str, PathLike)) or (
        isinstance(dataset, list) and all(isinstance(x, (str, PathLike)) for x in dataset))
    # each path checked before any clip is added, as `m2i ingest a.wav missing.wav` does
    clips = open_dataset(dataset, clip_s=clip_s, hop_s=hop_s, npy_sr=npy_sr) if paths else dataset
    return ops.add_samples(store, run_id, clips, limit=limit)


def run_pipeline(
    settings: Settings,
    *,
    db: str | None = None,
    new_run: bool = False,
    explicit: set[str] | None = None,
    progress: Callable[[dict[str, dict[str, int]]], None] | None = None,
    handle_signals: bool = True,
    on_runner: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) a run to completion; returns counts and summary lines.

    ``on_runner`` receives the :class:`~m2i.runner.Runner` before it starts, so a caller in
    another thread (the dashboard) can stop it with ``runner.stop_threadsafe()``. Pass
    ``handle_signals=False`` when not on the main thread.
    """
    from m2i.images.backends import check_backend_name
    from m2i.prompts.providers import provider_class
    from m2i.runner import Runner, run_blocking
    from m2i.stages import build_stages, checked_provider
    from m2i.store.engine import network_filesystem_warning

    for s in settings.stages:
        if s not in ops.STAGE_ORDER:
            raise InputError(f"Unknown stage {s!r} in --stages; choose from {', '.join(ops.STAGE_ORDER)}.")
    # a misspelt --llm or --images (or an all-digit name for a new run) stops here, before a run is created
    # or a clip is ingested
    provider_class(settings.llm)
    check_backend_name(settings.images)
    if explicit and "out_dir" in explicit and (out := Path(settings.out_dir).expanduser()).exists() and not out.is_dir():
        # found at the first image otherwise, after every clip was analysed and every prompt paid for
        raise InputError(f"--out {settings.out_dir} is a file, not a folder; name a folder for the images, report "
                         "and gallery.")
    if new_run and settings.run_name:
        ops.check_run_name(settings.run_name)
    clips = None
    if explicit and "dataset" in explicit:
        from m2i.audio.datasets import open_dataset

        # a missing path, an empty folder or a refused .npy stops here, before a database or a run is created
        clips = open_dataset(settings.dataset, clip_s=settings.clip_s, hop_s=settings.hop_s, npy_sr=settings.npy_sr)
    store = open_store(db or settings.db, create=True)
    settings = settings.beside(db or settings.db)
    try:
        existing = ops.get_run(store, settings.run_name)  # the named run, or the newest without a name
        if new_run and settings.run_name and existing is not None:
            # two runs of one name: `--run NAME` would then quietly mean the newer one
            raise InputError(f"A run named {settings.run_name!r} already exists (run {existing['id']}); drop --new "
                             "to continue it, or choose another name.")
        if settings.run_name and not new_run and existing is None and ops.list_runs(store):
            # a misspelt --run would otherwise start a new run and redo (and pay for) every clip
            raise ops.no_such_run(store, settings.run_name, "add --new to start a new run with that name")
        planned, config, changed = plan_run(settings, None if new_run else existing, explicit=explicit)
        created = planned is None
        provider = None
        if "generate" in settings.stages:
            # a dead server, a rejected key, an unknown model or a bad .gguf stops here, before the run,
            # its changed settings or its clips are recorded
            provider = checked_provider(store, with_live_secrets({"config": config}, settings)["config"],
                                        outage_s=settings.llm_outage_s)
        run = record_run(store, settings, planned, config, changed)
        run_id = int(run["id"])
        shared = store.path is not None and network_filesystem_warning(store.path)
        if shared:
            log.warning("%s", shared)
            ops.log_event(store, run_id, shared, level="warning")
        cfg = run["config"]
        # --out belongs to this machine when it continues a run; a run just created uses the folder it recorded
        out_dir = settings.out_dir if explicit and "out_dir" in explicit and not created else cfg.get("out_dir") or settings.out_dir
        if out_dir != cfg.get("out_dir"):
            out_dir = own_out_dir(store, run_id, out_dir)  # another run's folder: a sub-folder of it
        if "analyze" in settings.stages or (explicit and "dataset" in explicit):
            counts0 = ops.status_counts(store, run_id)
            if (explicit and "dataset" in explicit) or sum(counts0["analyze"].values()) == 0:
                source = clips if clips is not None else cfg.get("dataset") or settings.dataset
                added = ingest(store, run_id, source, clip_s=settings.clip_s, hop_s=settings.hop_s,
                               limit=cfg.get("samples"), npy_sr=cfg.get("npy_sr"))
                log.info("ingest: %(added)d added, %(failed)d bad, %(skipped)d already present", added)
        impls, notes = build_stages(
            store, with_live_secrets(run, settings), settings.stages, out_dir=out_dir,
            devices=settings.devices, outage_s=settings.llm_outage_s, analyze_workers=settings.analyze_workers,
            generate_concurrency=settings.generate_concurrency, provider=provider,
        )
        for note in notes:
            log.info("%s", note)
            ops.log_event(store, run_id, note)
        runner = Runner(store, run_id, impls, lease_s=settings.lease_s, on_progress=progress)
        if on_runner is not None:
            on_runner(runner)
        try:
            counts = run_blocking(runner, handle_signals=handle_signals)
        finally:
            if progress is not None and hasattr(progress, "stop"):
                progress.stop()
        files = {} if runner.stopping else write_results(store, run_id, counts, out_dir=out_dir)
        return {
            "run_id": run_id,
            "counts": counts,
            "interrupted": runner.stopping,
            "notes": notes,
            "files": files,
            "summary": summary_lines(store, run_id, counts, files, out_dir=out_dir),
        }
    finally:
        store.close()


def write_results(store: Store, run_id: int, counts: dict[str, dict[str, int]], *, out_dir: str) -> dict[str, str]:
    """After a finished run: the report (text and JSON) and the gallery, in the output folder."""
    import json

    from m2i.gallery import write_gallery
    from m2i.report import build_report, format_text
    from m2i.textfile import write_text_atomic

    out = Path(out_dir).expanduser().resolve()
    files: dict[str, str] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        if counts["generate"]["done"]:
            rep = build_report(store, run_id)
            write_text_atomic(out / "report.txt", format_text(rep) + "\n")
            write_text_atomic(out / "report.json", json.dumps(rep, indent=1, default=str))
            files["report"] = str(out / "report.txt")
            files["gallery"] = str(write_gallery(store, run_id, out / "gallery.html"))
    except OSError as exc:
        log.warning("could not write the report and gallery to %s: %s", out, exc.strerror)
    return files


def summary_lines(
    store: Store, run_id: int, counts: dict[str, dict[str, int]], files: dict[str, str] | None = None,
    *, out_dir: str | None = None,
) -> list[str]:
    """The lines ``m2i run`` prints at the end; ``out_dir`` is the folder this invocation wrote to."""
    run = ops.get_run(store, run_id) or {}
    lines = [f"run {run_id} {run.get('name', '')}: " + "  ".join(
        f"{s} {c['done']}/{sum(c.values())}" + (f" ({c['failed']} failed)" if c["failed"] else "")
        for s, c in counts.items()
    )]
    lines.append(f"database: {store.path or redact_url(store.url)}")
    out_dir = out_dir or (run.get("config") or {}).get("out_dir")
    if out_dir and counts["render"]["done"]:
        lines.append(f"images: {Path(out_dir).expanduser().resolve() / 'images'}")  # absolute, like the report
    for key, path in (files or {}).items():
        lines.append(f"{key}: {path}" + ("  (m2i report prints it again)" if key == "report" else ""))
    unusable = ops.unusable_samples(store, run_id)  # requeue cannot help them
    failed = sum(c["failed"] for c in counts.values()) - unusable
    if unusable:
        lines.append(f"{unusable} clip(s) of the dataset are unusable and were skipped: "
                     "`m2i sql \"SELECT source, error FROM sample WHERE audio_sha256 IS NULL AND status = 'failed'\"` says why")
    if failed:
        lines.append(f"{failed} row(s) failed: see `m2i status`, then `m2i requeue --failed`")
    return lines
