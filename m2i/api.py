"""A small Python API for notebooks and scripts: the same library calls the CLI makes.

>>> from m2i.api import open_runs
>>> runs = open_runs("m2i.db")                      # doctest: +SKIP
>>> run = runs.new_run("notebook", llm="local", images="preview")   # doctest: +SKIP
>>> run.ingest("demo", samples=2)                   # doctest: +SKIP
>>> run.process(["analyze"])                        # doctest: +SKIP
>>> run.features()[0]["features"]["key"]            # doctest: +SKIP
>>> run.process()                                   # the remaining stages   # doctest: +SKIP
>>> run.report()["modes"]["metrics"]["originality"] # doctest: +SKIP

Works inside Jupyter (whose event loop is already running): :meth:`Run.process` then runs the
pipeline on a helper thread and waits for it; interrupting the cell stops it as Ctrl-C stops
``m2i run`` (work in flight finishes, nothing new starts) and then raises KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from m2i.config import Settings, load_settings
from m2i.errors import InputError
from m2i.store import ops
from m2i.store.engine import Store, open_store
from m2i.store.models import Image, Prompt, Sample, Score

if TYPE_CHECKING:
    from m2i.runner import Runner


class Runs:
    """An open run store."""

    def __init__(self, db: str | None = None) -> None:
        self.store: Store = open_store(db)
        self.db = db

    def new_run(self, name: str | None = None, **settings: Any) -> Run:
        """Create a run; ``settings`` are :class:`m2i.config.Settings` fields (llm, model, images, ...)."""
        from m2i.pipeline import prepare_run

        s = load_settings({**settings, "run_name": name})
        s = s.beside(self.db or s.db)
        return Run(self, int(prepare_run(self.store, s, new_run=True)["id"]), s)

    def run(self, run: int | str | None = None) -> Run:
        """An existing run by id or name (the newest when None)."""
        r = ops.get_run(self.store, run)
        if r is None:
            if run is None:
                raise InputError("This database has no run yet; create one with new_run().")
            raise ops.no_such_run(self.store, run, "create one with new_run()")
        return Run(self, int(r["id"]), load_settings({}))

    def runs(self) -> list[dict[str, Any]]:
        return ops.list_runs(self.store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Runs:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_runs(db: str | None = None) -> Runs:
    """Open (or create) a run store: ``open_runs("m2i.db")``."""
    return Runs(db)


def _run_to_the_end(runner: Runner) -> dict[str, dict[str, int]]:
    """``runner.run()``, from a script or from a notebook, whose event loop is already running:
    there it runs on a helper thread. Interrupting the cell then stops it as Ctrl-C stops ``m2i
    run`` (nothing new is claimed; what is in flight finishes, or is handed back uncounted after
    the runner's grace period) before the KeyboardInterrupt is raised; it used to go on working,
    and spending, behind it. A second interrupt raises at once."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(runner.run())
    box: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: interrupted, it leaves is_alive() False for good

    def target() -> None:
        try:
            box["value"] = asyncio.run(runner.run())
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="m2i-api-runner").start()
    try:
        # in short waits: a SIGINT that the kernel lands on another thread is only handled when
        # this thread runs Python again, and a wait until the end would hold it back that long
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        while not done.is_set():  # asked again until its loop has started and heard it
            runner.stop_threadsafe()
            done.wait(0.1)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


class Run:
    """One run: ingest clips, process stages, read results."""

    def __init__(self, runs: Runs, run_id: int, settings: Settings) -> None:
        self.runs = runs
        self.id = run_id
        self.settings = settings

    @property
    def store(self) -> Store:
        return self.runs.store

    @property
    def info(self) -> dict[str, Any]:
        return ops.get_run(self.store, self.id) or {}

    def ingest(self, dataset: str | list[str], *, samples: int | None = None) -> dict[str, int]:
        """Add clips (.npy, folder, audio file or "demo", or a list of them); returns added/failed/skipped counts."""
        from m2i.pipeline import ingest

        limit = load_settings({"samples": samples}).samples  # 0 or -1 is one sentence, as --samples 0 is
        return ingest(self.store, self.id, dataset, clip_s=self.settings.clip_s, hop_s=self.settings.hop_s,
                      limit=limit, npy_sr=(self.info.get("config") or {}).get("npy_sr", self.settings.npy_sr))

    def process(self, stages: str | Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Run the given stages (one name, or several; default all four) until they have no work
        left; returns the counts."""
        from m2i.pipeline import with_live_secrets
        from m2i.runner import Runner
        from m2i.stages import build_stages

        names = [stages] if isinstance(stages, str) else list(stages or ops.STAGE_ORDER)
        for name in names:  # a misspelt stage ran nothing and returned the counts as they were
            ops.table_of(name)
        impls, _notes = build_stages(self.store, with_live_secrets(self.info, self.settings), names,
                                     outage_s=self.settings.llm_outage_s,
                                     analyze_workers=self.settings.analyze_workers,
                                     generate_concurrency=self.settings.generate_concurrency)
        runner = Runner(self.store, self.id, impls, lease_s=self.settings.lease_s)
        return _run_to_the_end(runner)

    def status(self) -> dict[str, dict[str, int]]:
        return ops.status_counts(self.store, self.id)

    def runners(self) -> list[dict[str, Any]]:
        """The runners at work on this run now (``m2i status`` names them): worker (``host:pid``),
        state (``starting`` while it loads its models, ``working``, ``waiting`` on a paused run),
        started_at, seen_at."""
        with self.store.read() as conn:
            return ops.runners(conn, self.id)

    def requeue_failed(self, stage: str | None = None) -> dict[str, int]:
        return ops.requeue(self.store, run_id=self.id, stage=stage)

    def features(self) -> list[dict[str, Any]]:
        """Per sample: idx, source, meta, features, abc, status, error."""
        s = Sample.__table__
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(
                select(s.c.id, s.c.idx, s.c.source, s.c.meta, s.c.features, s.c.abc, s.c.status, s.c.error)
                .where(s.c.run_id == self.id).order_by(s.c.idx)
            ).mappings()]

    def prompts(self) -> list[dict[str, Any]]:
        """Per prompt: its sample, mode, temperature, text, image prompt, scores and image path."""
        p, s, sc, im = Prompt.__table__, Sample.__table__, Score.__table__, Image.__table__
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(
                select(s.c.idx.label("sample_idx"), p.c.id, p.c.slot, p.c.mode, p.c.temperature, p.c.realised_by,
                       p.c.title, p.c.text, p.c.image_prompt, p.c.status, sc.c.originality, sc.c.elaboration,
                       sc.c.alignment, sc.c.coherence, sc.c.overall, im.c.path.label("image_path"),
                       im.c.backend.label("image_backend"))
                .join(s, s.c.id == p.c.sample_id)
                .outerjoin(sc, sc.c.prompt_id == p.c.id).outerjoin(im, im.c.prompt_id == p.c.id)
                .where(p.c.run_id == self.id).order_by(s.c.idx, p.c.slot)
            ).mappings()]

    def report(self) -> dict[str, Any]:
        """The same report as ``m2i report --json``."""
        from m2i.report import build_report

        return build_report(self.store, self.id)


__all__ = ["Run", "Runs", "open_runs"]
