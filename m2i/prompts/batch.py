"""Write many prompts through a provider-side batch (Anthropic Message Batches, half price).

:func:`generate_batch` submits one batch, hands its id to ``on_submitted`` *before* waiting (the
runner stores it in ``llm_batch``), polls until the batch has ended and turns each result into
``prompt`` columns. Given ``batch_id`` of a batch submitted earlier (a restarted runner), it
submits nothing and collects that batch, so no prompt is paid for twice. Pure: no database.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m2i.errors import ProviderError
from m2i.prompts.generate import _settings, prompt_from_completion
from m2i.prompts.providers.base import BatchError, BatchRequest, LLMProvider
from m2i.prompts.template import build_request

log = logging.getLogger(__name__)


@dataclass
class BatchItem:
    """One prompt row to write: its id and the inputs :func:`write_prompt` would take."""

    prompt_id: int
    features: dict[str, Any] | None
    abc: str | None
    mode: str
    temperature: float
    seed: int


def _custom_id(prompt_id: int) -> str:
    return f"prompt-{prompt_id}"


async def generate_batch(
    provider: LLMProvider,
    items: list[BatchItem],
    *,
    on_submitted: Callable[[str, list[int]], Any] | None = None,
    batch_id: str | None = None,
    settings: dict[str, Any] | None = None,
    poll_s: float = 30.0,
    timeout_s: float | None = None,
) -> dict[int, dict[str, Any] | ProviderError]:
    """Write the prompts of ``items`` in one provider-side batch.

    Parameters
    ----------
    provider : LLMProvider
        A provider with ``submit_batch``/``batch_status``/``collect_batch`` (``anthropic``).
    items : list of BatchItem
        The prompts; with ``batch_id``, the prompts that batch was submitted for.
    on_submitted : callable or None
        ``on_submitted(batch_id, prompt_ids)`` (sync or async), called right after the batch is
        created and before any waiting: store the id there.
    batch_id : str or None
        Collect this earlier batch instead of submitting a new one.
    settings : dict or None
        Template settings, as for :func:`m2i.prompts.generate.write_prompt`.
    poll_s : float > 0
        Seconds between status polls.
    timeout_s : float or None
        Give up waiting after this long (the batch keeps running; collect it later by id).

    Returns
    -------
    dict
        ``prompt_id -> prompt columns`` for each usable answer, ``prompt_id -> ProviderError`` for
        each item that errored, expired, was refused or invalid (``retryable=True``: write it live).

    Raises
    ------
    ProviderError
        The provider has no batch API, the batch could not be created or read, or ``timeout_s``
        passed (``retryable=True``; the id was already handed to ``on_submitted``).
    """
    if not hasattr(provider, "submit_batch"):
        raise ProviderError(f"The {provider.name} provider has no batch API: run without --batch.")
    s = _settings(provider, settings)
    if batch_id is None:
        if not items:
            return {}
        reqs = []
        for it in items:
            r = build_request(it.features, it.abc, mode=it.mode, temperature=it.temperature, seed=it.seed, settings=s)
            reqs.append(BatchRequest(custom_id=_custom_id(it.prompt_id), messages=r.messages,
                                     temperature=r.temperature, seed=r.seed, max_tokens=r.max_tokens,
                                     system=r.system, instruction=r.instruction, json_schema=r.json_schema))
        batch_id = await provider.submit_batch(reqs)  # type: ignore[attr-defined]
        log.info("submitted batch %s with %d prompts", batch_id, len(reqs))
        if on_submitted is not None:
            done = on_submitted(batch_id, [it.prompt_id for it in items])
            if inspect.isawaitable(done):
                await done
    t0 = time.monotonic()
    while (status := await provider.batch_status(batch_id)) != "ended":  # type: ignore[attr-defined]
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            raise ProviderError(f"Batch {batch_id} is still {status} after {timeout_s:g} s; "
                                "run again later to collect it.", retryable=True)
        await asyncio.sleep(poll_s)
    results = await provider.collect_batch(batch_id)  # type: ignore[attr-defined]
    out: dict[int, dict[str, Any] | ProviderError] = {}
    for it in items:
        got = results.get(_custom_id(it.prompt_id))
        if got is None:
            out[it.prompt_id] = ProviderError(f"Batch {batch_id} has no result for prompt {it.prompt_id}.",
                                              retryable=True)
        elif isinstance(got, BatchError):
            out[it.prompt_id] = ProviderError(f"Batch item {got.custom_id} {got.kind}: {got.message}",
                                              retryable=got.retryable)
        else:
            try:
                out[it.prompt_id] = prompt_from_completion(got, provider=provider.name, settings=s)
            except ProviderError as exc:
                out[it.prompt_id] = exc
    return out
