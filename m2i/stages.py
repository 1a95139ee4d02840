"""The four stage adapters: claim-side glue between the run store and the pure stage functions.

Each adapter reads what its rows need from the store, calls the stage's pure function
(``m2i.audio.analyze``, ``m2i.prompts.generate``, ``m2i.scoring``, ``m2i.images.backends``)
and returns :class:`~m2i.runner.Outcome` values; the runner writes them. Nothing here decides
*what* a feature, prompt, score or image is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import and_, false, func, insert, or_, select, update

from m2i.errors import BackendError, InputError, ProviderError
from m2i.prompts.providers.local import DEFAULT_PARALLEL
from m2i.runner import Outcome, RunContext, StageImpl, StageStop, make_process_pool
from m2i.store import ops
from m2i.store.engine import Store
from m2i.store.models import Image, LLMBatch, LLMModel, Prompt, Sample, Score, Status, utcnow

log = logging.getLogger(__name__)

REMOTE_CONCURRENCY = 32
"""LLM requests in flight per runner for a hosted API (Anthropic, OpenAI-compatible servers)."""

DEFAULT_CONCURRENCY = {"local": DEFAULT_PARALLEL, "ollama": 4}
"""Fewer for servers on the same machine: the embedded model decodes ``parallel`` answers together
(five: a sample's prompts), and Ollama answers at
most ``OLLAMA_NUM_PARALLEL`` (1 to 4 by default) while it queues the rest, whose wait counts against
the 300 s request timeout. More in flight adds no speed there: 32 requests queued on an Ollama that
takes 20 s an answer (an 8B model on a CPU) would wait up to 640 s, and time out."""


# --------------------------------------------------------------------------- analyze


def _analyze_job(pcm, sr: int, settings: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Runs in a worker process: ``analyze_clip`` with the settings for this clip (``clip_settings``:
    a window cut from inside a longer recording reads its key without the final-bass cue)."""
    from m2i.audio.analyze import analyze_clip, clip_settings

    return analyze_clip(pcm, sr, settings=clip_settings(settings, meta, len(pcm) / sr))


class AnalyzeStage(StageImpl):
    """Features + ABC for each sample, in a process pool (one process per core by default)."""

    name = "analyze"
    batch_size = 1

    MAX_POOL_BREAKS = 3
    """Fresh pools started in a row without a clip analysed in between; then the stage gives up."""

    def __init__(self, *, workers: int | None = None, settings: dict[str, Any] | None = None) -> None:
        self.concurrency = workers or max(1, os.cpu_count() or 1)
        self.settings = settings or {}
        self._pool = None
        self._breaks = 0  # pools broken since the last clip analysed

    async def setup(self, ctx: RunContext) -> None:
        if ctx.executor is None:
            self._new_pool()

    def _new_pool(self) -> Any:
        self._pool = make_process_pool(self.concurrency)
        return self._pool

    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        out = []
        for row in rows:
            if not row.get("audio_sha256"):
                out.append(Outcome(id=row["id"], error=row.get("error") or "this sample has no audio", retryable=False))
                continue
            if self._breaks >= self.MAX_POOL_BREAKS:
                out.append(Outcome(id=row["id"], retryable=False, error=(
                    f"analysis worker processes died {self._breaks} times in a row without finishing a clip; "
                    "check memory and the log (a Python script that runs m2i must do so under "
                    "`if __name__ == \"__main__\":`), then requeue")))
                continue
            pcm, sr = await asyncio.to_thread(ops.load_pcm, ctx.store, row["audio_sha256"])
            pool = ctx.executor or self._pool or self._new_pool()
            try:
                result = await loop.run_in_executor(pool, _analyze_job, pcm, sr, self.settings, row.get("meta") or {})
            except InputError as exc:
                out.append(Outcome(id=row["id"], error=str(exc), retryable=False))
                continue
            except BrokenExecutor:
                # a worker died (the kernel's out-of-memory killer, a crash in native code, a
                # signal): this clip may be the cause, so the attempt counts, but the clips after
                # it get a fresh pool instead of failing one after another on the broken one
                if pool is self._pool:
                    self._breaks += 1
                    log.warning("an analysis worker process died; %s", "starting a fresh pool"
                                if self._breaks < self.MAX_POOL_BREAKS else "giving up on this stage's pool")
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                out.append(Outcome(id=row["id"], retryable=True, lost=True, error=(
                    "the analysis worker process died while analysing this clip (out of memory, a crash, "
                    "or a signal); it is tried again")))
                continue
            self._breaks = 0
            out.append(
                Outcome(
                    id=row["id"],
                    values={"features": result["features"], "abc": result["abc"], "duration_s": result.get("duration_s")},
                )
            )
        return out

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# --------------------------------------------------------------------------- generate


class DBCapabilities:
    """Remembers per (provider, model) how sampling works, in the ``llm_model`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[tuple[str, str], str] = {}

    def get(self, provider: str, model: str) -> str | None:
        key = (provider, model)
        if key not in self._cache:
            t = LLMModel.__table__
            with self.store.read() as conn:
                v = conn.execute(select(t.c.sampling).where(t.c.provider == provider, t.c.model == model)).scalar()
            if v is None:
                return None
            self._cache[key] = v
        return self._cache[key]

    def set(self, provider: str, model: str, sampling: str, note: str | None = None) -> None:
        t = LLMModel.__table__
        with self.store.transaction() as conn:
            n = conn.execute(
                update(t).where(t.c.provider == provider, t.c.model == model)
                .values(sampling=sampling, note=note, learned_at=utcnow())
            ).rowcount
            if not n:
                conn.execute(insert(t).values(provider=provider, model=model, sampling=sampling, note=note, learned_at=utcnow()))
        self._cache[(provider, model)] = sampling


def _sample_inputs(store: Store, sample_id: int) -> dict[str, Any]:
    s = Sample.__table__
    with store.read() as conn:
        row = conn.execute(select(s.c.idx, s.c.features, s.c.abc).where(s.c.id == sample_id)).mappings().first()
    return dict(row) if row else {}


def run_provider(store: Store, cfg: dict[str, Any], *, outage_s: float | None = None) -> Any:
    """The LLM provider a run's config names (``llm``, ``model``, ``base_url``), remembering what it
    learns about models in the store's ``llm_model`` table; ``outage_s`` (``llm_outage_s``): how long
    it may answer nothing before it gives up. Raises ``ProviderError`` (one sentence)."""
    from m2i.prompts.providers import get_provider

    provider = get_provider(cfg.get("llm") or "local", model=cfg.get("model"), base_url=cfg.get("base_url"),
                            capabilities=DBCapabilities(store))
    if outage_s is not None:
        provider.hold.limit_s = float(outage_s)
    return provider


async def check_while_busy(check: Callable[[], Awaitable[Any]], wait: Callable[[], Awaitable[Any]]) -> bool:
    """Run ``check`` (a provider's check) again after ``wait`` (the provider's hold) for as long as the
    provider answers busy (429, 5xx, 529: :func:`m2i.prompts.providers.base.busy`); True once it
    passed, False when ``wait`` returned False (the runner stops). Any other error is raised: an
    unreachable server at start-up is more often a wrong address than a restart."""
    from m2i.prompts.providers.base import busy

    while True:
        try:
            await check()
            return True
        except ProviderError as exc:
            if not busy(exc):
                raise
            if await wait() is False:
                return False


def checked_provider(store: Store, cfg: dict[str, Any], *, outage_s: float | None = None) -> Any:
    """:func:`run_provider`, checked (key, server, model) in an event loop of its own, ready for
    :class:`GenerateStage` to use in the runner's loop: a run records nothing until this passed.
    A provider that answers but is busy (429, 5xx, 529) is waited for, as mid-run, for at most
    ``outage_s`` (``llm_outage_s``); one that cannot be reached is refused at once
    (:func:`m2i.prompts.providers.base.busy`).

    Raises
    ------
    ProviderError
        The check's one sentence.
    """
    provider = run_provider(store, cfg, outage_s=outage_s)

    async def hold_over() -> bool:
        await provider.hold.wait(request=False)  # raises once the outage lasts too long
        return True

    async def check() -> None:
        try:
            await check_while_busy(provider.check, hold_over)
        finally:
            await provider.detach()

    try:
        asyncio.run(check())
    except Exception:
        asyncio.run(provider.aclose())  # a loaded local model, say
        raise
    return provider


class GenerateStage(StageImpl):
    """Five visual prompts per sample through the configured LLM provider.

    ``provider``: one :func:`checked_provider` already checked (its outage limit set there);
    without it, :meth:`setup` builds the run's provider with ``outage_s`` and checks it itself.
    """

    name = "generate"
    batch_size = 1

    def __init__(self, *, llm: str, model: str | None, base_url: str | None, settings: dict[str, Any],
                 concurrency: int | None = None, outage_s: float | None = None, provider: Any = None) -> None:
        self.llm, self.model, self.base_url = llm, model, base_url
        self.settings = settings
        self.concurrency = concurrency or DEFAULT_CONCURRENCY.get(llm, REMOTE_CONCURRENCY)
        self.outage_s = outage_s
        """How long the provider may answer nothing before the stage stops (``llm_outage_s``)."""
        self.provider = provider

    async def setup(self, ctx: RunContext) -> None:
        if self.provider is None:
            self.provider = run_provider(ctx.store, {"llm": self.llm, "model": self.model, "base_url": self.base_url},
                                         outage_s=self.outage_s)
            try:  # a busy provider at start-up is waited for, like one that goes away mid-run
                if not await check_while_busy(lambda: self._unless_stopped(self.provider.check(), ctx),
                                              lambda: self._hold(ctx)):
                    return
            except _Stopped:
                return
        how = self.provider.realisation
        msg = (f"prompts: {self.provider.name} {self.provider.model}: convergent and divergent realised by "
               + ({"temperature": "temperature (0.4 / 0.8 by default)",
                   "instruction": "instructions (this model refuses sampling parameters)"}.get(how or "", "whatever "
                  "the first answer shows (temperature if the model accepts it, else instructions)")))
        log.info("%s", msg)
        await asyncio.to_thread(ctx.event, msg, stage="generate")

    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        from m2i.prompts.generate import with_earlier_spend, write_prompt

        out = []
        for row in rows:
            sample = await asyncio.to_thread(_sample_inputs, ctx.store, row["sample_id"])
            try:
                values = await self._unless_stopped(write_prompt(
                    self.provider, features=sample.get("features") or {}, abc=sample.get("abc"),
                    mode=row["mode"], temperature=row["temperature"], seed=row["seed"], settings=self.settings,
                    label=f"prompt {row['id']} (sample {row['sample_id']}, slot {row.get('slot')})",
                ), ctx)
            except _Stopped:
                out.append(Outcome(id=row["id"], error="stopped while the provider was unavailable", handback=True))
                continue
            except ProviderError as exc:
                if exc.scope == "provider":  # the key, the model, the base path, or a long outage
                    raise _stage_stop(exc) from exc
                if exc.scope == "unavailable":
                    # not this prompt's fault: back to pending with the attempt not counted; its next
                    # request waits in the provider's hold with every other one
                    out.append(Outcome(id=row["id"], error=str(exc), handback=True))
                    continue
                out.append(Outcome(id=row["id"], error=str(exc), retryable=exc.retryable, values=with_earlier_spend({
                    "provider": self.provider.name, "model": self.provider.model, **getattr(exc, "spent", {}),
                    "llm_attempts": getattr(exc, "attempts", None), "raw": getattr(exc, "raw", None) or None}, row)))
                continue
            out.append(Outcome(id=row["id"], values=with_earlier_spend(values, row)))
        return out

    async def _unless_stopped(self, coro: Any, ctx: RunContext) -> Any:
        """Await ``coro``; when the runner stops while the provider is unavailable, cancel it and
        raise :class:`_Stopped` instead of waiting out the hold (a request the provider is
        answering is left to finish)."""
        task = asyncio.ensure_future(coro)
        if ctx.stop is None:
            return await task
        stop = asyncio.ensure_future(ctx.stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and self.provider.hold.since is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise _Stopped
            return await task
        finally:
            stop.cancel()
            if not task.done():  # this task itself was cancelled (the runner's grace ran out)
                task.cancel()

    async def _hold(self, ctx: RunContext) -> bool:
        """Wait while the provider is held (unavailable); False when the runner stops meanwhile.

        Raises
        ------
        ProviderError
            ``scope="provider"``: the provider answered nothing for ``llm_outage_s``.
        """
        wait = asyncio.ensure_future(self.provider.hold.wait(request=False))
        waiters = {wait} | ({asyncio.ensure_future(ctx.stop.wait())} if ctx.stop is not None else set())
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        if wait in done:
            try:
                wait.result()
            except ProviderError as exc:
                raise _stage_stop(exc) from exc
        return not ctx.stopping

    async def close(self) -> None:
        if self.provider is not None:
            await self.provider.aclose()


class _Stopped(Exception):
    """The runner stopped while the provider was unavailable."""


def _stage_stop(exc: ProviderError) -> StageStop:
    """The provider refuses all work (key, model, base path) or has answered nothing for too long."""
    return StageStop(f"{str(exc).rstrip('. ')}; the prompts not written yet stay pending for the next `m2i run`.")


class BatchGenerateStage(GenerateStage):
    """``--batch``: the prompts go to Anthropic's Message Batches API (half price).

    Each claim takes every claimable prompt of the run. Prompts already sent in a stored batch
    (table ``llm_batch``) are not sent again: a restarted runner polls and collects that batch
    from its id. The batch id is committed before any waiting starts. Provider errors are
    handled as in :class:`GenerateStage`: refusing all work stops the stage, unavailable hands the
    prompts back (the stored batch is collected by the next claim, which waits in the hold).
    """

    batch_size = 100_000
    concurrency = 1
    poll_s = 30.0

    def __init__(self, *, model: str | None, base_url: str | None, settings: dict[str, Any],
                 provider: Any = None) -> None:
        settings = dict(settings)
        self.poll_s = float(settings.pop("batch_poll_s", self.poll_s))
        super().__init__(llm="anthropic", model=model, base_url=base_url, settings=settings, concurrency=1,
                         provider=provider)
        self._stop_next: ProviderError | None = None
        """The provider refused all work after this claim had collected a batch: stop at the next claim."""

    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        from m2i.prompts.batch import BatchItem, generate_batch
        from m2i.prompts.generate import with_earlier_spend

        if self._stop_next is not None:
            raise _stage_stop(self._stop_next)
        by_id = {r["id"]: r for r in rows}
        open_batches = await asyncio.to_thread(_open_batches, ctx.store, ctx.run_id)
        jobs: list[tuple[str | None, int | None, list[int]]] = [
            (b["batch_id"], b["id"], [i for i in b["prompt_ids"] if i in by_id])
            for b in open_batches if set(b["prompt_ids"]) & set(by_id)
        ]
        covered = {i for _, _, ids in jobs for i in ids}
        new = [i for i in by_id if i not in covered]
        if new:
            jobs.append((None, None, new))
        results: dict[int, Any] = {}
        handback: dict[int, str] = {}  # prompt id -> why it goes back to pending, its attempt not counted
        for batch_id, row_id, ids in jobs:
            if self._stop_next is not None:
                handback.update({i: str(self._stop_next) for i in ids})
                continue
            items = []
            for i in ids:
                r = by_id[i]
                sample = await asyncio.to_thread(_sample_inputs, ctx.store, r["sample_id"])
                items.append(BatchItem(prompt_id=i, features=sample.get("features") or {}, abc=sample.get("abc"),
                                       mode=r["mode"], temperature=r["temperature"], seed=r["seed"]))

            saved: dict[str, Any] = {}

            async def stored(bid: str, prompt_ids: list[int], saved: dict[str, Any] = saved) -> None:
                saved.update(await asyncio.to_thread(_save_batch, ctx.store, ctx.run_id, bid, prompt_ids))
                await asyncio.to_thread(ctx.event, f"Message Batch {bid} submitted with {len(prompt_ids)} prompts",
                                        stage="generate")

            try:
                got = await self._unless_stopped(generate_batch(
                    self.provider, items, on_submitted=stored, batch_id=batch_id, settings=self.settings,
                    poll_s=self.poll_s), ctx)
            except _Stopped:
                handback.update({i: "stopped while the provider was unavailable" for i in ids})
                continue
            except ProviderError as exc:
                if exc.scope == "request":
                    raise
                # Not these prompts' fault: they go back to pending, and a batch already submitted
                # stays stored, to be collected (not paid for again) by the next claim or run; after
                # an outage that next claim waits in the provider's hold.
                if exc.scope == "provider":  # the key, the model, the base path, or a long outage
                    if not results:
                        raise _stage_stop(exc) from exc
                    self._stop_next = exc  # store what this claim collected first, then stop
                handback.update({i: str(exc) for i in ids})
                continue
            results.update(got)
            await asyncio.to_thread(_mark_batch, ctx.store, row_id if row_id is not None else saved["id"])
        out = [Outcome(id=i, error=why, handback=True) for i, why in handback.items()]
        for i in by_id:
            if i in handback:
                continue
            res = results.get(i)
            if isinstance(res, ProviderError):
                out.append(Outcome(id=i, error=str(res), retryable=res.retryable))
            elif res is None:
                out.append(Outcome(id=i, error="the Message Batch returned no result for this prompt"))
            else:
                out.append(Outcome(id=i, values=with_earlier_spend(res, by_id[i])))
        return out


def _open_batches(store: Store, run_id: int) -> list[dict[str, Any]]:
    t = LLMBatch.__table__
    with store.read() as conn:
        return [dict(r) for r in conn.execute(
            select(t.c.id, t.c.batch_id, t.c.prompt_ids).where(t.c.run_id == run_id, t.c.status != "collected")
        ).mappings()]


def _save_batch(store: Store, run_id: int, batch_id: str, prompt_ids: list[int]) -> dict[str, Any]:
    t = LLMBatch.__table__
    with store.transaction() as conn:
        new_id = conn.execute(insert(t).values(
            run_id=run_id, provider="anthropic", batch_id=batch_id, status="submitted", prompt_ids=prompt_ids,
            created_at=utcnow(),
        ).returning(t.c.id)).scalar_one()
    return {"id": new_id, "batch_id": batch_id, "prompt_ids": prompt_ids}


def _mark_batch(store: Store, row_id: int) -> None:
    t = LLMBatch.__table__
    with store.transaction() as conn:
        conn.execute(update(t).where(t.c.id == row_id).values(status="collected", collected_at=utcnow()))


# --------------------------------------------------------------------------- score


PROMPT_FIELDS = ("id", "sample_id", "slot", "mode", "title", "text", "image_prompt")


def _score_inputs(store: Store, run_id: int, prompt_ids: list[int]) -> tuple[list[dict], list[dict], dict[int, dict]]:
    p, s = Prompt.__table__, Sample.__table__
    with store.read() as conn:
        context = [
            dict(r) for r in conn.execute(
                select(*(p.c[f] for f in PROMPT_FIELDS)).where(p.c.run_id == run_id, p.c.status == Status.done.value)
                .order_by(p.c.id)
            ).mappings()
        ]
        samples = {
            int(r.id): (r.features or {})
            for r in conn.execute(select(s.c.id, s.c.features).where(s.c.run_id == run_id))
        }
    by_id = {c["id"]: c for c in context}
    targets = [by_id[i] for i in prompt_ids if i in by_id]
    return targets, context, samples


def mode_rows(store: Store, run_id: int) -> list[dict[str, Any]]:
    """Per prompt: sample, mode and the five scores (done scores that are current only: a score
    computed before other prompts of the run finished is left out, see ``ops.stale_score_cond``)."""
    p, sc = Prompt.__table__, Score.__table__
    with store.read() as conn:
        stale = ops.stale_score_cond(conn, run_id)
        return [
            dict(r) for r in conn.execute(
                select(p.c.sample_id, p.c.mode, sc.c.originality, sc.c.elaboration, sc.c.alignment, sc.c.coherence, sc.c.overall,
                       sc.c.details)
                .join(sc, sc.c.prompt_id == p.c.id)
                .where(p.c.run_id == run_id, sc.c.status == Status.done.value, ~stale)
            ).mappings()
        ]


def write_mode_report(store: Store, run_id: int) -> dict[str, Any] | None:
    """Compute convergent vs divergent for a run and store it (table ``report``, kind ``modes``);
    on a read-only store it is computed and returned only."""
    from m2i.scoring import compare_modes

    until = ops.scores_until(store, run_id)  # read first: a score written meanwhile makes it look older, not newer
    rows = mode_rows(store, run_id)
    if not rows:
        return None
    report = {**compare_modes(rows), "scores_until": until}
    if not store.readonly:
        ops.save_report(store, run_id, "modes", report)
    return report


class ScoreStage(StageImpl):
    """Creativity scores once the run's clips are all analysed and its prompts all written.

    One batch normally holds the whole run: every prompt is embedded once, and originality
    compares each prompt with all the others of its run. When prompts of the run finish after
    its scores were written (a requeue, another ``m2i run`` adding clips), the store puts those
    scores back to pending (``ops._rescore_stale``) and they come here again with the new ones,
    so every score of a run is computed against the same set of prompts.
    """

    name = "score"
    concurrency = 1

    def __init__(self, *, batch_size: int = 10_000, settings: dict[str, Any] | None = None) -> None:
        self.batch_size = batch_size
        self.settings = settings or {}

    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        from m2i.scoring import score_prompts

        ids = [r["prompt_id"] for r in rows]
        targets, context, samples = await asyncio.to_thread(_score_inputs, ctx.store, ctx.run_id, ids)
        results = await asyncio.to_thread(score_prompts, targets, context=context, samples=samples, settings=self.settings)
        by_prompt = {t["id"]: res for t, res in zip(targets, results)}
        out = []
        for row in rows:
            res = by_prompt.get(row["prompt_id"])
            if res is None:
                out.append(Outcome(id=row["id"], error="its prompt is not done", retryable=True))
            else:
                out.append(Outcome(id=row["id"], values=res))
        return out

    async def finalize(self, ctx: RunContext) -> None:
        report = await asyncio.to_thread(write_mode_report, ctx.store, ctx.run_id)
        if report is not None:
            ctx.event("convergent-vs-divergent report written", stage="score")


# --------------------------------------------------------------------------- render


def _render_inputs(store: Store, prompt_ids: list[int]) -> dict[int, dict[str, Any]]:
    p, s = Prompt.__table__, Sample.__table__
    with store.read() as conn:
        rows = conn.execute(
            select(p.c.id, p.c.slot, p.c.title, p.c.image_prompt, p.c.text, p.c.negative_prompt, s.c.idx, s.c.features)
            .join(s, s.c.id == p.c.sample_id).where(p.c.id.in_(prompt_ids))
        ).mappings()
        return {r["id"]: dict(r) for r in rows}


def _images_taken(store: Store, run_id: int, granted: set[int]) -> tuple[int, set[int]]:
    """``(taken, still)``: the run's images that are done plus those of ``granted`` still rendering,
    and which of ``granted`` are still rendering (the rest need not be remembered: done ones are
    counted as done). A row counts once whether or not its result has been written yet."""
    t = Image.__table__
    running = Status.running.value
    with store.read() as conn:
        still = set(conn.scalars(select(t.c.id).where(t.c.id.in_(granted), t.c.status == running))) if granted else set()
        ours = and_(t.c.status == running, t.c.id.in_(still)) if still else false()
        taken = conn.execute(
            select(func.count()).select_from(t).where(t.c.run_id == run_id, or_(t.c.status == Status.done.value, ours))
        ).scalar_one()
    return int(taken), still


class RenderStage(StageImpl):
    """One image per prompt on one device, in batches.

    Two batches are in flight: the backend generates one on the device while the other's PNGs are
    written (the sdxl backend holds its device lock only while generating), so the GPU does not wait
    for the PNG encoder between batches.
    """

    name = "render"
    concurrency = 2

    def __init__(self, *, backend: str, settings: dict[str, Any], out_dir: str | os.PathLike[str],
                 run_seed: int = 0, limit: int | None = None) -> None:
        self.backend_name = backend
        self.settings = settings
        self.batch_size = max(1, int(settings.get("batch_size") or 1))
        self.out_dir = Path(out_dir).expanduser().resolve()
        self.run_seed = run_seed
        self.limit = limit
        self.backend = None
        self._limit_lock = asyncio.Lock()
        self._granted: set[int] = set()  # rows this stage let render that may still be running (--limit)

    async def setup(self, ctx: RunContext) -> None:
        from m2i.images.backends import get_backend
        from m2i.images.png import sweep_stale_temps

        swept = await asyncio.to_thread(sweep_stale_temps, self.out_dir / "images")
        if swept:
            await asyncio.to_thread(ctx.event, f"removed {swept} half-written image(s) left by a stopped runner",
                                    stage="render")
        self.backend = get_backend(self.backend_name, **self.settings)
        await asyncio.to_thread(self.backend.load)

    async def process(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        if self.limit is not None:
            async with self._limit_lock:  # one batch decides at a time, counting what the other took
                self._granted -= {r["id"] for r in rows}  # decided now (a requeued row comes back)
                taken, self._granted = await asyncio.to_thread(_images_taken, ctx.store, ctx.run_id, self._granted)
                room = max(0, self.limit - taken)
                over = [r["id"] for r in rows[room:]]
                rows = rows[:room]
                self._granted |= {r["id"] for r in rows}
            if over:
                await asyncio.to_thread(ops.cancel, ctx.store, run_id=ctx.run_id, stage="render", ids=over)
                if not rows:
                    return [Outcome(id=i, error=f"beyond --limit {self.limit}", retryable=False) for i in over]
        return await self._render(rows, ctx)

    async def _render(self, rows: list[dict[str, Any]], ctx: RunContext) -> list[Outcome]:
        from m2i.images.jobs import ImageJob
        from m2i.images.layout import image_path
        from m2i.images.png import OutputUnwritable
        from m2i.images.seeds import image_seed

        info = await asyncio.to_thread(_render_inputs, ctx.store, [r["prompt_id"] for r in rows])
        jobs, out = [], []
        for row in rows:
            p = info.get(row["prompt_id"])
            if p is None:
                out.append(Outcome(id=row["id"], error="its prompt is missing", retryable=False))
                continue
            prompt = (p["image_prompt"] or p["text"] or "").strip()
            jobs.append((row, ImageJob(
                prompt_id=p["id"], sample_idx=p["idx"], slot=p["slot"], prompt=prompt,
                negative_prompt=p["negative_prompt"] or "", seed=image_seed(self.run_seed, p["id"]),
                width=self.settings.get("width"), height=self.settings.get("height"),
                steps=self.settings.get("steps"), guidance=self.settings.get("guidance"),
                out_path=image_path(self.out_dir, p["idx"], p["slot"]), features=p["features"] or {},
                title=p["title"],
            )))
        if jobs:
            try:
                rendered = await asyncio.to_thread(self.backend.render, [j for _, j in jobs])
            except OutputUnwritable as exc:  # a full disk would fail every row in seconds: stop instead
                raise StageStop(str(exc)) from exc
            except BackendError as exc:
                return out + [Outcome(id=row["id"], error=str(exc), retryable=True) for row, _ in jobs]
            host = socket.gethostname()  # the same name the runner's worker id uses
            for (row, _job), img in zip(jobs, rendered):
                for note in img.notes:
                    await asyncio.to_thread(ctx.event, note, level="warning", stage="render", item=row["id"])
                if img.error:
                    out.append(Outcome(id=row["id"], error=img.error, retryable=False))
                    continue
                values = img.image_columns()
                values.pop("error", None)
                out.append(Outcome(id=row["id"], values={**values, "path": str(img.path), "host": host}))
        return out

    async def close(self) -> None:
        if self.backend is not None:
            await asyncio.to_thread(self.backend.close)


# --------------------------------------------------------------------------- assembly


def image_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """Backend settings from a run's config: the flags plus ``image_options`` from m2i.toml
    (scheduler, dtype, compile, cpu_offload, vae, vae_slicing, vae_tiling, ...; docs/images.md)."""
    keys = ("width", "height", "steps", "guidance", "refiner", "device", "batch_size")
    out = {**(cfg.get("image_options") or {})}
    out.update({k: cfg.get(k) for k in keys if cfg.get(k) is not None})
    if cfg.get("image_model"):
        out["model"] = cfg["image_model"]
    return out


def resolve_devices(devices: str | list[str] | None) -> list[str | None]:
    """``--devices cuda:0,cuda:1`` or ``all`` (every local CUDA GPU) -> device names; None = the backend's own choice."""
    if not devices:
        return [None]
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    items = [d.strip() for d in items if d and d.strip()]
    if items == ["all"]:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(n)] or [None]
    return items or [None]


def build_stages(
    store: Store, run: dict[str, Any], names: list[str], *, out_dir: str | None = None,
    devices: str | list[str] | None = None, outage_s: float | None = None, analyze_workers: int | None = None,
    generate_concurrency: int | None = None, provider: Any = None,
) -> tuple[list[StageImpl], list[str]]:
    """The adapters for ``names`` configured from the run's recorded settings, plus notes to show.

    ``out_dir``, ``devices``, ``outage_s``, ``analyze_workers`` (analysis processes; default one per
    core) and ``generate_concurrency`` (LLM requests in flight; default 32 for hosted APIs, 4 for
    Ollama, 1 for the embedded model) belong to this machine, not to the run: in a cluster each box writes to
    the folder it is given, renders on its own GPUs (one render worker per device) and uses its own
    cores and rate limits; ``outage_s`` (``llm_outage_s``) is how long the generate stage waits for
    an LLM provider that answers nothing before it stops. ``provider``: the run's LLM provider,
    already checked (:func:`checked_provider`).
    """
    cfg = run.get("config") or {}
    impls: list[StageImpl] = []
    notes: list[str] = []
    if "analyze" in names:
        impls.append(AnalyzeStage(workers=analyze_workers, settings={"spectrogram": bool(cfg.get("mel_summary"))}))
    if "generate" in names:
        llm = cfg.get("llm") or "local"
        psettings = dict(cfg.get("prompt_settings") or {})
        if cfg.get("max_tokens"):
            psettings["max_tokens"] = cfg["max_tokens"]  # else the provider's own default (small for local)
        if cfg.get("mel_summary"):
            psettings["include_spectrogram"] = True
        if cfg.get("batch"):
            if llm != "anthropic":
                raise InputError(f"--batch works with --llm anthropic (Message Batches), not {llm!r}.")
            impls.append(BatchGenerateStage(model=cfg.get("model"), base_url=cfg.get("base_url"), settings=psettings,
                                            provider=provider))
        else:
            impls.append(GenerateStage(llm=llm, model=cfg.get("model"), base_url=cfg.get("base_url"), settings=psettings,
                                       outage_s=outage_s, concurrency=generate_concurrency, provider=provider))
        notes.append(f"prompts: {llm} {cfg.get('model') or '(default model)'}" + (" via Message Batches" if cfg.get("batch") else ""))
    if "score" in names:
        impls.append(ScoreStage())
    if "render" in names:
        from m2i.images.backends import resolve_auto

        target = Path(out_dir or cfg.get("out_dir") or "m2i-output")
        for device in resolve_devices(devices):
            settings = image_settings(cfg)
            if device is not None:
                settings["device"] = device
            name = cfg.get("images") or "auto"
            if name == "auto":
                name, reason = resolve_auto(**settings)
                notes.append(f"images: {name} ({reason.rstrip('.')})")
            else:
                notes.append(f"images: {name}" + (f" on {device}" if device else ""))
            stage = RenderStage(backend=name, settings=settings, out_dir=target,
                                run_seed=int(cfg.get("seed", 0)), limit=cfg.get("limit"))
            stage.worker_tag = device or ""
            impls.append(stage)
    return impls, notes


__all__ = [
    "AnalyzeStage", "DBCapabilities", "GenerateStage", "RenderStage", "ScoreStage", "build_stages",
    "checked_provider", "run_provider",
    "mode_rows", "write_mode_report",
]
