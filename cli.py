"""The m2i command line. ``m2i ...`` and ``python cli.py ...`` are the same program.

Every command takes ``--db PATH`` (or ``M2I_DB``; default ``./m2i.db``). Errors a user can cause
print one sentence and exit 1; they never show a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from m2i.errors import InputError, M2IError

app = typer.Typer(
    name="m2i",
    help="Music to image: features, LLM visual prompts, creativity scores and images, in a resumable run store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from m2i.provenance import SOFTWARE_PREFIX, software_line

        # what a run records as its software event: the versions that can change a result
        typer.echo(software_line().removeprefix(SOFTWARE_PREFIX))
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_print_version, is_eager=True,
        help="Print m2i's version (and commit, in a checkout) and those of the packages that can change a result.")] = False,
) -> None:
    """m2i's own options (the app's help text is set on ``app``)."""


DbOpt = Annotated[str | None, typer.Option("--db", help="Database path or URL (default $M2I_DB or ./m2i.db).")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run id or name (default: the newest run).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SrOpt = Annotated[int | None, typer.Option("--sr", help="Sample rate of .npy audio in Hz (default 16000; audio files carry theirs).")]
StageOpt = Annotated[str | None, typer.Option("--stage", help="analyze, generate, score or render.")]

log = logging.getLogger("m2i")


# --------------------------------------------------------------------------- helpers


def _setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("m2i").setLevel(level)
    for noisy in ("httpx", "httpcore", "anthropic", "openai", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _db(db: str | None) -> str | None:
    return db if db is not None else os.environ.get("M2I_DB")


def _open(db: str | None, *, readonly: bool = False, create: bool = False):
    """Open the store, closed again when the command exits (SQLite then folds its write-ahead log
    back into the file and removes ``-wal`` and ``-shm``); any command upgrades an older schema to
    head by itself (when it may write)."""
    import atexit

    store = _open_store(db, readonly=readonly, create=create)
    atexit.register(store.close)
    return store


def _open_store(db: str | None, *, readonly: bool, create: bool):
    from m2i.errors import OlderSchemaError, StoreError
    from m2i.store import open_store

    try:
        return open_store(_db(db), readonly=readonly, create=create)
    except OlderSchemaError as exc:
        if not readonly:
            raise
        older = exc
    try:
        open_store(_db(db), create=False).close()  # upgrades (after copying the file aside), or says why not
    except StoreError as exc:
        path = Path(older.location)
        if not path.exists() or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            raise  # the upgrade failed for another reason, which its own sentence names
        try:  # a finished run in a read-only place: read as it is, when this m2i can
            store = open_store(_db(db), readonly=True, older=True)
        except OlderSchemaError:
            raise StoreError(
                f"{older.location} has an older schema ({older.revision}) that must be upgraded to {older.head} "
                "before m2i can read it, but the file or its folder is read-only: make them writable, or copy "
                "the file somewhere writable and pass the copy with --db."
            ) from exc
        typer.echo(f"note: {path} has an older schema ({older.revision}), read as it is: it cannot be upgraded "
                   "where it is (not writable).", err=True)
        return store
    return open_store(_db(db), readonly=True)


def _run_of(store, run: str | None) -> dict[str, Any]:
    from m2i.store import ops

    r = ops.get_run(store, run)
    if r is None:
        if run is None:
            raise InputError("This database has no run yet; start one with `m2i run`.")
        raise ops.no_such_run(store, run)
    return r


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, default=str))


def _console():
    from rich.console import Console

    return Console()


# --------------------------------------------------------------------------- init / ingest


@app.command()
def init(db: DbOpt = None) -> None:
    """Create an empty run store (or upgrade an older one to the current schema)."""
    from m2i.config import redact_url

    store = _open(db, create=True)
    typer.echo(f"m2i database ready at {store.path or redact_url(store.url)}")


def _settings(flags: dict[str, Any], config: str | None = None, **spelt: str):
    """Settings from the flags given (setting name -> value); an error names the flag as typed.

    ``spelt`` overrides :func:`m2i.config.cli_flag` where a command spells a flag its own way
    (``m2i tui --run-id`` sets ``run_name``).
    """
    from m2i.config import cli_flag, load_settings

    return load_settings(flags, config_path=config, flag_names={k: spelt.get(k) or cli_flag(k) for k in flags})


def _one_or_many(paths: list[str]) -> str | list[str]:
    """The ``dataset`` setting for the paths given: the path itself when there is one."""
    return paths[0] if len(paths) == 1 else list(paths)


@app.command()
def ingest(
    datasets: Annotated[list[str], typer.Argument(
        metavar="DATASET", help="A .npy file, a folder of audio files, an audio file, or 'demo'; several are read in turn.",
        show_default=False)],
    db: DbOpt = None,
    run: RunOpt = None,
    samples: Annotated[int | None, typer.Option("--samples", help="Keep at most N clips in the run.")] = None,
    hop: Annotated[float | None, typer.Option("--hop", help="Hop between 10 s windows of long files (s).")] = None,
    sr: SrOpt = None,
    config: Annotated[str | None, typer.Option("--config", help="m2i.toml to read.")] = None,
) -> None:
    """Add clips to a run (identified by content hash: ingesting twice adds nothing)."""
    _setup_logging()  # how far a long ingest is, and the clips read with a warning
    dataset = _one_or_many(datasets)
    settings = _settings({"run_name": run, "samples": samples, "hop_s": hop, "npy_sr": sr, "dataset": dataset}, config)
    from m2i.audio.datasets import open_dataset
    from m2i.pipeline import ingest as ingest_clips
    from m2i.pipeline import prepare_run

    # a missing path, an empty folder or a refused .npy stops here, before a database or a run is created
    clips = open_dataset(dataset, clip_s=settings.clip_s, hop_s=settings.hop_s, npy_sr=settings.npy_sr)
    store = _open(db, create=True)
    r = prepare_run(store, settings)
    counts = ingest_clips(store, int(r["id"]), clips, limit=settings.samples)
    typer.echo(
        f"run {r['name']}: {counts['added']} clip(s) added, {counts['failed']} bad clip(s) recorded as failed, "
        f"{counts['skipped']} already present"
    )


@app.command()
def analyze(
    files: Annotated[list[str], typer.Argument(
        help="Audio files (wav, flac, ogg, opus, mp3, aiff), folders of them, .npy, or - for audio piped in.")],
    json_out: JsonOpt = False,
    spectrogram: Annotated[bool, typer.Option("--spectrogram", help="Add a mel-spectrogram summary.")] = False,
    spectrogram_png: Annotated[str | None, typer.Option(
        "--spectrogram-png", help="Also draw each file's mel spectrogram into this folder (<file name>.png).")] = None,
    sr: SrOpt = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Processes to spread 8 or more files or clips of a .npy over (default: analyze_workers "
        "of m2i.toml or M2I_ANALYZE_WORKERS, else one per core, up to 8; 1: this process).")] = None,
    windows: Annotated[bool, typer.Option(
        "--windows", help="Every 10 s window of each file, a line each with its start_s (as m2i ingest cuts "
        "it), instead of the first window that holds sound.")] = False,
    hop: Annotated[float | None, typer.Option("--hop", help="With --windows: seconds between window starts "
                                                            "(default 10; 5 overlaps them).")] = None,
) -> None:
    """Print the eight features and the ABC transcription of audio files (one JSON object per line with --json).

    A file longer than 10 s is analysed on its first 10 s window that holds sound (``start_s`` in
    the output); ``--windows`` analyses every window, as ``m2i ingest`` / ``m2i run`` do. A .npy of clips (the annotation
    file, or [N, T]) is analysed clip by clip, each line with ``clip``: its row.

    A bad file is reported (with --json as its line, ``{"file", "error"}``) and the others go on;
    the exit status is 1 if any file failed (with ``--windows``: if no window of a file could be
    analysed; a window of silence between two pieces is reported but fails nothing).

    ``-`` reads audio piped in, recognised by its bytes (``ffmpeg -i song.m4a -f wav - | m2i analyze -``);
    so is a pipe given as a path (``m2i analyze <(sox ...)``).
    """
    from m2i.audio.cli_support import analyze_results, human_summary, window_heading, window_row

    analysed: dict[Any, bool] = {}  # file (a .npy's row) -> whether anything of it was analysed
    warned: set[tuple[Any, str]] = set()
    # an impossible rate or worker count is one sentence naming its flag, before any file; the
    # machine's analyze_workers (m2i.toml, M2I_ANALYZE_WORKERS) is the default pool, as for a run
    if hop is not None and not windows:
        raise InputError("--hop sets the step between the windows of --windows; add --windows.")
    settings = _settings({"npy_sr": sr, "analyze_workers": workers, "hop_s": hop}, None, analyze_workers="--workers")
    for result in analyze_results(files, settings={"spectrogram": spectrogram}, png_dir=spectrogram_png,
                                  npy_sr=settings.npy_sr, workers=settings.analyze_workers, windows=windows,
                                  clip_s=settings.clip_s, hop_s=settings.hop_s):
        unit = (result["file"], result.get("clip")) if windows else len(analysed)  # else each record counts
        if json_out:
            _echo_json(result)
        elif windows and "clip" not in result and "start_s" in result:  # a table: a row per window
            if unit not in analysed:
                typer.echo(window_heading(result["file"], settings.clip_s, settings.hop_s))
            if (said := result.get("warning")) and (unit, said) not in warned:  # once a file, not once a row
                warned.add((unit, said))
                typer.echo(f"warning: {result['file']}: {said}", err=True)
            typer.echo(window_row(result) if "error" not in result else human_summary(result, windows=True),
                       err="error" in result)
        else:
            typer.echo(human_summary(result, windows=windows), err="error" in result)
        analysed[unit] = analysed.get(unit, False) or "error" not in result
    if not all(analysed.values()):
        raise typer.Exit(code=1)


# --------------------------------------------------------------------------- run


@app.command()
def run(
    more: Annotated[list[str] | None, typer.Argument(
        metavar="DATASET", help="More audio to add, as --dataset (`m2i run clips/*.wav` adds each file).",
        show_default=False)] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Audio to add first: .npy, folder, file or 'demo'.")] = None,
    db: DbOpt = None,
    run_name: Annotated[str | None, typer.Option("--run", help="Run name or id to continue (default: the newest); with --new, the new run's name (not all digits).")] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new run even if one exists.")] = False,
    samples: Annotated[int | None, typer.Option("--samples", help="Only the first N clips (a quick test).")] = None,
    hop: Annotated[float | None, typer.Option("--hop", help="Hop between 10 s windows of long files (s).")] = None,
    sr: SrOpt = None,
    llm: Annotated[str | None, typer.Option("--llm", help="local, anthropic, ollama or openai.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="The LLM's model id.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Server URL for ollama/openai providers.")] = None,
    batch: Annotated[bool | None, typer.Option("--batch/--no-batch", help="Anthropic Message Batches (half price).")] = None,
    images: Annotated[str | None, typer.Option("--images", help="auto, sdxl or preview.")] = None,
    image_model: Annotated[str | None, typer.Option("--image-model", help="SDXL model id or local path.")] = None,
    width: Annotated[int | None, typer.Option("--width")] = None,
    height: Annotated[int | None, typer.Option("--height")] = None,
    steps: Annotated[int | None, typer.Option("--steps")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance")] = None,
    refiner: Annotated[str | None, typer.Option("--refiner", help="SDXL refiner model id or path.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cuda, cuda:1, mps or cpu.")] = None,
    devices: Annotated[str | None, typer.Option("--devices", help="One render worker per GPU: cuda:0,cuda:1 or all.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per SDXL call.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Render at most N images in this run.")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="SDXL scheduler: euler (default), euler_a, dpmpp_2m, ddim, ... or model.")] = None,
    compile_unet: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the SDXL UNet.")] = None,
    stages: Annotated[str | None, typer.Option("--stages", help="Comma-separated stages to run (default all).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Run seed (prompt and image seeds derive from it).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Output folder for images and exports (default: <database name>-output beside it).")] = None,
    config: Annotated[str | None, typer.Option("--config", help="m2i.toml to read.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the pipeline until no work is left; run it again to continue where it stopped.

    With no arguments: the bundled demo clips, the embedded local LLM and the best image
    backend available here, into ./m2i.db.
    """
    _setup_logging(verbose)
    paths = [p for p in (dataset, *(more or [])) if p is not None]  # `--dataset *.wav`: the shell gave several
    flags = {
        "dataset": _one_or_many(paths) if paths else None, "run_name": run_name, "samples": samples, "hop_s": hop, "npy_sr": sr, "llm": llm, "model": model,
        "base_url": base_url, "batch": batch, "images": images, "image_model": image_model, "width": width,
        "height": height, "steps": steps, "guidance": guidance, "refiner": refiner, "device": device,
        "batch_size": batch_size, "limit": limit, "seed": seed, "out_dir": out, "devices": devices,
        "stages": [s.strip() for s in stages.split(",") if s.strip()] if stages else None,
    }
    settings = _settings(flags, config)
    extra = {k: v for k, v in (("scheduler", scheduler), ("compile", compile_unet)) if v is not None}
    if extra:
        settings.image_options = {**settings.image_options, **extra}
        flags["image_options"] = settings.image_options
    from m2i.pipeline import run_pipeline

    result = run_pipeline(
        settings, db=_db(db), new_run=new, explicit={k for k, v in flags.items() if v is not None},
        progress=_make_progress(),
    )
    for line in result.get("summary", []):
        typer.echo(line)
    if result.get("interrupted"):
        typer.echo("stopped; run `m2i run` again to continue")


def _make_progress():
    """A progress callback: rich bars on a terminal, plain log lines otherwise."""
    from m2i.store.ops import STAGE_ORDER

    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeRemainingColumn(), transient=False,
        )
        tasks: dict[str, int] = {}

        def update(counts: dict[str, dict[str, int]]) -> None:
            if not progress.live.is_started:
                progress.start()
            for stage in STAGE_ORDER:
                c = counts[stage]
                total = sum(c.values())
                finished = c["done"] + c["failed"] + c["cancelled"]
                detail = f"running {c['running']}  failed {c['failed']}"
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total or None, detail=detail)
                progress.update(tasks[stage], total=total or None, completed=finished, detail=detail)

        update.stop = progress.stop  # type: ignore[attr-defined]
        return update

    last = {"t": 0.0, "line": ""}

    def plain(counts: dict[str, dict[str, int]]) -> None:
        line = "  ".join(
            f"{s} {counts[s]['done']}/{sum(counts[s].values())}"
            + (f" ({counts[s]['failed']} failed)" if counts[s]["failed"] else "")
            for s in STAGE_ORDER
        )
        now = time.monotonic()
        if line != last["line"] and now - last["t"] >= 5.0:
            log.info("progress: %s", line)
            last.update(t=now, line=line)

    plain.stop = lambda: None  # type: ignore[attr-defined]
    return plain


# --------------------------------------------------------------------------- status / control


@app.command()
def status(db: DbOpt = None, run: RunOpt = None, json_out: JsonOpt = False) -> None:
    """Counts of pending / running / done / failed / cancelled rows per stage, and the image backend used."""
    from m2i.store import ops

    store = _open(db, readonly=True)
    runs = ops.list_runs(store)
    if not runs:
        if json_out:
            _echo_json({"runs": []})
        else:
            typer.echo("no runs yet; start one with `m2i run`")
        return
    r = _run_of(store, run)
    counts = ops.status_counts(store, int(r["id"]))
    used = ops.image_backends(store, int(r["id"]))
    with store.read() as conn:
        flight = ops.in_flight(conn, int(r["id"]))
        runners = ops.runners(conn, int(r["id"]))
    if json_out:
        _echo_json({"run": {k: r[k] for k in ("id", "name", "paused", "cancelled", "created_at")},
                    "config": r["config"], "stages": counts, "images_used": used,
                    "running": {"held": flight.held, "left": flight.left, "left_by": list(flight.gone)},
                    "runners": runners})
        return
    from rich.table import Table

    cfg = r["config"] or {}
    t = Table(title=f"run {r['id']} {r['name']}" + ("  [paused]" if r["paused"] else "") + ("  [cancelled]" if r["cancelled"] else ""))
    t.add_column("stage")
    for s in ("pending", "running", "done", "failed", "cancelled"):
        t.add_column(s, justify="right")
    for stage, c in counts.items():
        t.add_row(stage, *(str(c[s]) for s in ("pending", "running", "done", "failed", "cancelled")))
    con = _console()
    con.print(t)
    images = cfg.get("images")
    if used and list(used) != [images]:  # what rendered the images, then what was asked for (auto, say)
        images = f"{', '.join(used)} ({images})"
    from m2i.scoring.legacy import legacy_writer

    writer = legacy_writer(cfg)  # an imported run names the earlier system's client
    llm = f"legacy ({writer})" if writer else f"{cfg.get('llm')} {cfg.get('model') or ''}"
    con.print(f"llm: {llm}   images: {images or 'none yet'}   runs in db: {len(runs)}")
    from m2i.store.models import local_time

    for x in runners:
        doing = {"starting": "loading its models", "waiting": "waiting for `m2i resume`"}.get(x["state"], "working")
        con.print(f"runner {x['worker']}: {doing} since {local_time(x['started_at'])}", markup=False, highlight=False)
    if flight.left:  # 'running' rows whose runner was killed: nothing works on them until m2i runs again
        con.print(f"{flight.left} running row(s) were left by a runner that is no longer running "
                  f"({', '.join(flight.gone)}); `m2i run` takes them back.", markup=False, highlight=False)


def _ids(ids: list[int] | None) -> list[int] | None:
    return list(ids) if ids else None


def _say_untouched(stage: str, ids: list[int], before: dict[int, str], ok: set[str], *, command: str, verb: str,
                   acted: int, hint: str = "") -> None:
    """Name the ``--id`` rows a requeue/cancel left alone and why; none acted on is an error (exit 1)."""
    left = [f"{i} ({before[i]})" if i in before else f"{i} (no such {stage} row in this run)"
            for i in dict.fromkeys(ids) if before.get(i) not in ok]
    if not left:
        return
    msg = f"{stage} row(s) {', '.join(left)} not {verb}: {command} takes only {' or '.join(sorted(ok))} rows{hint}"
    if not acted:
        raise InputError(msg[0].upper() + msg[1:] + ".")
    typer.echo(msg + ".", err=True)


@app.command()
def requeue(
    db: DbOpt = None,
    run: RunOpt = None,
    stage: StageOpt = None,
    failed: Annotated[bool, typer.Option("--failed/--all", help="Only failed rows (default), or cancelled too.")] = True,
    id: Annotated[list[int] | None, typer.Option("--id", help="Row id (repeatable); needs --stage.")] = None,
    error: Annotated[str | None, typer.Option(
        "--error", help="Only rows whose error contains this text (any case), e.g. \"out of memory\".")] = None,
) -> None:
    """Put failed rows back to pending (safe while a runner is working)."""
    from m2i.store import ops

    if id and not stage:
        raise InputError("--id needs --stage (ids are per table), e.g. `m2i requeue --stage generate --id 12`.")
    store = _open(db)
    r = _run_of(store, run)
    before = ops.row_statuses(store, stage, id, run_id=int(r["id"])) if id else {}
    out = ops.requeue(store, run_id=int(r["id"]), stage=stage, ids=_ids(id), failed_only=failed, error=error)
    if error and not sum(out.values()):
        raise InputError(f"No {'failed' if failed else 'failed or cancelled'} row of run {r['name']}"
                         f"{f' at the {stage} stage' if stage else ''} has an error containing {error!r}; nothing "
                         "was requeued (`m2i tui`, f, lists the errors).")
    typer.echo("requeued " + ", ".join(f"{k}: {v}" for k, v in out.items())
               + (f" (errors containing {error!r})" if error else ""))
    if not id and stage in (None, "analyze") and (unusable := ops.unusable_samples(store, int(r["id"]))):
        typer.echo(f"{unusable} clip(s) stay failed: their audio was unusable at ingest and requeue cannot help; "
                   "`m2i sql \"SELECT source, error FROM sample WHERE audio_sha256 IS NULL AND status = 'failed'\"` says why")
    if id:
        ok = {"failed"} if failed else {"failed", "cancelled"}
        _say_untouched(stage, id, before, ok, command="requeue", verb="requeued", acted=out[stage],
                       hint=" (--all adds cancelled ones)" if failed else "")


@app.command()
def cancel(
    db: DbOpt = None,
    run: RunOpt = None,
    stage: StageOpt = None,
    id: Annotated[list[int] | None, typer.Option("--id", help="Row id (repeatable); needs --stage.")] = None,
) -> None:
    """Cancel pending and running work (the whole run, one stage, or rows by id)."""
    from m2i.store import ops

    if id and not stage:
        raise InputError("--id needs --stage (ids are per table), e.g. `m2i cancel --stage render --id 3`.")
    store = _open(db)
    r = _run_of(store, run)
    before = ops.row_statuses(store, stage, id, run_id=int(r["id"])) if id else {}
    out = ops.cancel(store, run_id=int(r["id"]), stage=stage, ids=_ids(id))
    if not stage and not id and not sum(out.values()):
        typer.echo(f"run {r['name']} has no pending or running work: nothing to cancel (it stays as it is)")
        return
    typer.echo("cancelled " + ", ".join(f"{k}: {v}" for k, v in out.items()))
    if stage and not id:
        counts = ops.status_counts(store, int(r["id"]))
        upstream = [s for s in ops.STAGE_ORDER[: ops.STAGE_ORDER.index(stage)]
                    if counts[s]["pending"] + counts[s]["running"]]
        if upstream:  # a render row is added as each prompt is written: those are still to come
            others = ",".join(x for x in ops.STAGE_ORDER if x != stage)
            going = f"{' and '.join(upstream)} {'goes' if len(upstream) == 1 else 'go'} on"
            typer.echo(f"{stage} rows added from now on (as {going}) are not cancelled; to leave {stage} out, "
                       f"stop the runner and run it again with --stages {others}")
    if id:
        _say_untouched(stage, id, before, {"pending", "running"}, command="cancel", verb="cancelled", acted=out[stage])


@app.command()
def pause(db: DbOpt = None, run: RunOpt = None) -> None:
    """Pause a run: no new work is handed out; work in flight finishes."""
    from m2i.store import ops

    store = _open(db)
    r = _run_of(store, run)
    changed = ops.set_paused(store, int(r["id"]), True)
    typer.echo(f"run {r['name']} paused" if changed else f"run {r['name']} was already paused")


@app.command()
def resume(db: DbOpt = None, run: RunOpt = None) -> None:
    """Resume a paused run."""
    from m2i.store import ops

    store = _open(db)
    r = _run_of(store, run)
    changed = ops.set_paused(store, int(r["id"]), False)
    typer.echo(f"run {r['name']} resumed" if changed else f"run {r['name']} was not paused")


@app.command()
def report(
    db: DbOpt = None,
    run: RunOpt = None,
    json_out: JsonOpt = False,
    recompute: Annotated[bool, typer.Option("--recompute", help="Recompute the statistics from the scores.")] = False,
) -> None:
    """Run summary and the convergent-vs-divergent statistics (mean, 95 % CI, Wilcoxon p, effect size)."""
    from m2i.report import build_report, format_text

    store = _open(db, readonly=True)
    r = _run_of(store, run)
    rep = build_report(store, int(r["id"]), recompute=recompute)
    if json_out:
        _echo_json(rep)
    else:
        typer.echo(format_text(rep))


@app.command()
def gallery(
    db: DbOpt = None,
    run: RunOpt = None,
    out: Annotated[str | None, typer.Option(
        "--out", help="HTML file to write, or a folder to write gallery.html into (default <out_dir>/gallery.html).")] = None,
) -> None:
    """Write a static HTML contact sheet of a run (opens from the filesystem, no server)."""
    from m2i.gallery import write_gallery
    from m2i.store import ops

    store = _open(db, readonly=True)
    r = _run_of(store, run)
    target = Path(out) if out else Path((r["config"] or {}).get("out_dir") or "m2i-output")
    if not out or target.is_dir():  # `--out results/` as `cp` takes a folder
        target = target / "gallery.html"
    finder = ops.ImageFinder(ops.image_bases(store, target.parent))
    try:
        path = write_gallery(store, int(r["id"]), target, finder)
    except OSError as exc:
        raise InputError(f"Cannot write the gallery to {target}: {exc.strerror}; choose another --out.") from exc
    typer.echo(f"gallery: {path.resolve()}")
    _say_unfinished(store, int(r["id"]), "the gallery shows")
    _say_missing_images(store, int(r["id"]), finder)


@app.command()
def doctor(
    db: DbOpt = None,
    llm: Annotated[str | None, typer.Option("--llm", help="Provider to check (default: the configured one).")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url")] = None,
    skip_llm: Annotated[bool, typer.Option("--skip-llm", help="Do not contact the LLM.")] = False,
    config: Annotated[str | None, typer.Option("--config", help="m2i.toml to read.")] = None,
) -> None:
    """Check this machine: Python, packages, GPU and VRAM, disk, SDXL weights, the LLM, the database."""
    from m2i.doctor import run_checks

    settings = _settings({"llm": llm, "model": model, "base_url": base_url}, config)
    checks = run_checks(settings, db=_db(db), llm=not skip_llm)
    for c in checks:
        typer.echo(c.line())
    worst = "fail" if any(c.level == "fail" for c in checks) else "warn" if any(c.level == "warn" for c in checks) else "ok"
    typer.echo(f"doctor: {worst}")
    if worst == "fail":
        raise typer.Exit(code=1)


@app.command()
def export(
    db: DbOpt = None,
    run: RunOpt = None,
    out: Annotated[str | None, typer.Option("--out", help="Output folder (default <out_dir>/exports).")] = None,
) -> None:
    """Write the earlier system's JSON files (same names and shapes) for a run."""
    from m2i.exports import export_run
    from m2i.store import ops

    store = _open(db, readonly=True)
    r = _run_of(store, run)
    target = Path(out) if out else Path((r["config"] or {}).get("out_dir") or "m2i-output") / "exports"
    finder = ops.ImageFinder(ops.image_bases(store, target.parent))
    paths = export_run(store, int(r["id"]), target, finder)
    for key, path in paths.items():
        typer.echo(f"{key}: {path}")
    _say_unfinished(store, int(r["id"]), "these files hold")
    _say_missing_images(store, int(r["id"]), finder)


def _say_missing_images(store: Any, run_id: int, finder: Any) -> None:
    """On stderr: the run's image files that are neither at their recorded path nor moved with their
    folder under the places ``finder`` looks (written on another machine, or deleted)."""
    from m2i.store import ops

    located = ops.image_locations(store, run_id, finder=finder)
    missing = [x for x in located if not x["reachable"]]
    if missing:
        hosts = sorted({x["host"] or "?" for x in missing})
        typer.echo(
            f"note: {len(missing)} of {len(located)} image file(s) are not reachable from this machine "
            f"(written on {', '.join(hosts)}):", err=True,
        )
        for x in missing[:20]:
            typer.echo(f"  {x['host'] or '?'}:{x['path']}", err=True)
        if len(missing) > 20:
            typer.echo(f"  ... and {len(missing) - 20} more (m2i sql \"SELECT host, path FROM image\")", err=True)


def _say_unfinished(store: Any, run_id: int, what: str) -> None:
    """On stderr: the run has work left, so what was just written is not its final result."""
    from m2i.store import ops
    from m2i.work import unfinished_note

    note = unfinished_note(ops.status_counts(store, run_id), what)
    if note:
        typer.echo(note, err=True)


@app.command("import-legacy")
def import_legacy_cmd(
    file: Annotated[str, typer.Argument(help="The earlier system's visual_prompts_complete.json, or its folder.")],
    db: DbOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (default legacy:<file name>).")] = None,
) -> None:
    """Load the earlier system's prompts into a run, so they can be scored, rendered and browsed."""
    from m2i.exports import import_legacy
    from m2i.scoring.legacy import legacy_path

    legacy_path(file)  # a wrong path is said before a database is created for it
    store = _open(db, create=True)
    res = import_legacy(store, file, name=name)
    what = "already imported as" if res.get("existing") else "imported as"
    typer.echo(f"{file}: {what} run {res['run_id']} {res['name']}: {res['samples']} samples, {res['prompts']} prompts")
    typer.echo(f"next: m2i run --run {res['run_id']} --stages score,render")


@app.command("migrate-db")
def migrate_db_cmd(
    src: Annotated[str, typer.Option("--from", help="Store to copy: SQLite path/URL or postgresql+psycopg://...")],
    dst: Annotated[str, typer.Option("--to", help="Empty store to copy into (created if needed).")],
) -> None:
    """Copy every run of one store into another (SQLite <-> PostgreSQL), losing nothing."""
    from m2i.store.migrate import migrate_db

    out = migrate_db(src, dst)
    typer.echo(f"copied {out['runs']} run(s) in {out['seconds']:.1f} s: "
               + ", ".join(f"{k} {v}" for k, v in out["tables"].items()))


# --------------------------------------------------------------------------- sql


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL statement.")],
    db: DbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a read-only SQL query and print the result (writes are refused).

    A table on a terminal; tab-separated lines (header first) when piped; JSON lines with --json.
    """
    from m2i.store.sql import run_readonly_query

    store = _open(db, readonly=True)
    columns, rows = run_readonly_query(store, query)
    if json_out:
        for row in rows:
            _echo_json(dict(zip(columns, row)))
        return
    if not sys.stdout.isatty():
        # piped or redirected: tab-separated rows, not a table squeezed to 80 columns with "…" in every cell
        def cell(v: Any) -> str:
            return "" if v is None else str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

        typer.echo("\t".join(str(c) for c in columns))
        for row in rows:
            typer.echo("\t".join(cell(v) for v in row))
        return
    from rich.table import Table

    t = Table(show_lines=False)
    for c in columns:
        t.add_column(str(c))
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    con = _console()
    con.print(t)
    con.print(f"{len(rows)} row(s)")


# --------------------------------------------------------------------------- dashboard


@app.command()
def tui(
    db: DbOpt = None,
    start_runner: Annotated[bool, typer.Option("--run", help="Also run the pipeline in this process.")] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id or name to show (default: the newest).")] = None,
    config: Annotated[str | None, typer.Option("--config", help="m2i.toml to read (with --run).")] = None,
) -> None:
    """The dashboard: live progress, convergent vs divergent, failures and requeue, samples."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # without a terminal Textual writes escape codes into the pipe and waits for keys that never come
        raise InputError(
            "m2i tui needs an interactive terminal (over SSH: ssh -t host m2i tui); "
            "m2i status and m2i report print the same figures as plain text."
        )
    if os.environ.get("TERM", "") == "dumb":  # Textual would draw escape codes this terminal cannot show
        raise InputError(
            "m2i tui needs a terminal that can draw, and TERM=dumb says this one cannot "
            "(set TERM, e.g. TERM=xterm-256color, or use m2i status and m2i report, which print plain text)."
        )
    from tui.app import run_app

    _setup_logging()  # as for `m2i run`: the runner's INFO lines, which the app shows in its event log
    settings = _settings({"run_name": run_id}, config, run_name="--run-id") if start_runner else None
    run_app(db=_db(db), run=run_id, settings=settings)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the Typer app and turn m2i errors into one sentence."""
    try:
        rc = app(args=argv, standalone_mode=False)
        if rc == 130:  # Ctrl-C: Typer turns the KeyboardInterrupt into this return code, and said nothing
            typer.echo("interrupted; what was written before it is kept", err=True)
        if isinstance(rc, int) and rc:
            raise SystemExit(rc)
    except M2IError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; what was written before it is kept", err=True)
        raise SystemExit(130) from None
    except Exception as exc:
        # Typer carries its own copy of click: recognise its exceptions by behaviour, not import.
        if hasattr(exc, "exit_code") and type(exc).__name__ == "Exit":
            raise SystemExit(exc.exit_code) from None
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if type(exc).__name__ == "Abort":
            typer.echo("aborted", err=True)
            raise SystemExit(1) from None
        raise
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
