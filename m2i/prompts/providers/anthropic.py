"""Claude through the official SDK's ``AsyncAnthropic`` (2.x), live or through Message Batches.

Temperature
-----------
SDK 2.x speaks API version ``2026-10-21`` and has no ``temperature`` argument. Models before
Opus 4.7 (Sonnet 4.6, Opus 4.6, the 4.5 line and earlier) still read ``temperature`` under
``anthropic-version: 2023-06-01``, so for them m2i sends that header (``extra_headers``) and the
temperature (``extra_body``). Models from Opus 4.7 on answer 400 to any sampling parameter; the
first such 400 is remembered for the model in the :class:`CapabilityStore` and the request is sent
again at once with the mode's documented instruction instead (``realised_by="instruction"``).
Anthropic has no seed parameter; the seed is only recorded.

Everything else: ``max_tokens``; the shared system prompt is sent as a text block with
``cache_control`` (prompt caching; Anthropic caches only prefixes of at least 1,024 tokens, 2,048
for Haiku, so a short system prompt is simply not cached); retries with backoff on 429, 5xx,
timeouts and dropped connections, honouring ``retry-after-ms`` / ``Retry-After`` (the SDK's own
retries are off so that each attempt is counted). The key comes only from ``ANTHROPIC_API_KEY``
and the server from ``ANTHROPIC_BASE_URL`` (or ``base_url``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from m2i.config import redact_url
from m2i.errors import ProviderError
from m2i.prompts.pricing import anthropic_price, estimate_cost
from m2i.prompts.providers.base import (
    BatchError,
    BatchRequest,
    CapabilityStore,
    Completion,
    LLMProvider,
    Realisation,
    RetryPolicy,
    SdkErrorTexts,
    call_with_retries,
    is_sampling_rejection,
    redact,
    rejected,
    translate_sdk_error,
)

log = logging.getLogger(__name__)

LEGACY_API_VERSION = "2023-06-01"
"""The API version under which pre-Opus-4.7 models still read ``temperature``."""

_TEXTS = SdkErrorTexts(
    client="Anthropic",
    unreachable=" (connection failed or dropped); check ANTHROPIC_BASE_URL and the network.",
    bad_key="Anthropic rejected the key in ANTHROPIC_API_KEY ({status}: {msg}); set a valid key from console.anthropic.com.",
    no_model="Anthropic has no model {model} ({msg}); pass --model with a current Claude model id.",
)


class AnthropicProvider(LLMProvider):
    """Claude models.

    Parameters
    ----------
    model : str or None
        Claude model id (default ``claude-sonnet-4-6``).
    base_url : str or None
        API root; ``ANTHROPIC_BASE_URL`` or ``https://api.anthropic.com`` when ``None``.
    cache_system : bool
        Mark the system prompt for prompt caching.
    structured_output : bool
        Also send the JSON schema as ``output_config.format`` (models with structured outputs).
    price_in, price_out : float or None
        USD per million tokens, overriding :mod:`m2i.prompts.pricing`.
    **kwargs
        ``capabilities``, ``retry``, ``timeout``, ``always_instruct`` (see :class:`LLMProvider`).
    """

    name = "anthropic"
    default_model = "claude-sonnet-4-6"
    learns_sampling = True

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        capabilities: CapabilityStore | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 120.0,
        always_instruct: bool = False,
        cache_system: bool = True,
        structured_output: bool = False,
        price_in: float | None = None,
        price_out: float | None = None,
    ) -> None:
        super().__init__(model, capabilities=capabilities, retry=retry, timeout=timeout,
                         always_instruct=always_instruct)
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        self.cache_system = cache_system
        self.structured_output = structured_output
        self.price = (price_in, price_out) if price_in is not None and price_out is not None else anthropic_price(self.model)
        self._client: Any = None

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def _key(self) -> str | None:
        return os.environ.get("ANTHROPIC_API_KEY") or None

    def _require_key(self) -> str:
        key = self._key
        if not key:
            raise ProviderError(
                "ANTHROPIC_API_KEY is not set: export your Claude API key "
                "(console.anthropic.com) before running with --llm anthropic, or choose another --llm."
            )
        return key

    def _get_client(self) -> Any:
        if self._client is None:
            from anthropic import AsyncAnthropic

            self._client = AsyncAnthropic(
                api_key=self._require_key(), base_url=self.base_url, max_retries=0, timeout=self.timeout
            )
        return self._client

    def _translate(self, exc: BaseException) -> ProviderError:
        """One sentence, no key, ``retryable`` set, for any failure of one request."""
        import anthropic

        def wrong_base_url(exc: Any, msg: str) -> ProviderError:  # ANTHROPIC_BASE_URL=https://host/v1, say
            return rejected(
                f"Nothing answers at {redact_url(str(exc.request.url))} (404: {msg}): the base URL "
                f"{redact_url(self.base_url)} looks wrong; ANTHROPIC_BASE_URL (or --base-url) should be the "
                "API's root, without /v1 (e.g. https://api.anthropic.com)."
            )

        return translate_sdk_error(exc, anthropic, where=f"the Anthropic API at {redact_url(self.base_url)}",
                                   model=self.model, timeout=self.timeout, texts=_TEXTS,
                                   wrong_base_url=wrong_base_url, secrets=[self._key])

    def _params(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        max_tokens: int,
        system: str | None,
        instruction: str | None,
        json_schema: dict[str, Any] | None,
        realised: Realisation,
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, str] | None]:
        """(SDK kwargs, extra_body, extra_headers) for one request."""
        blocks: list[dict[str, Any]] = []
        if system:
            block: dict[str, Any] = {"type": "text", "text": system}
            if self.cache_system:
                block["cache_control"] = {"type": "ephemeral"}
            blocks.append(block)
        if instruction and (realised == "instruction" or self.always_instruct):
            blocks.append({"type": "text", "text": instruction})
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": int(max_tokens), "messages": messages}
        if blocks:
            kwargs["system"] = blocks
        if json_schema is not None and self.structured_output:
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": json_schema}}
        if realised == "temperature":
            return kwargs, {"temperature": float(temperature)}, {"anthropic-version": LEGACY_API_VERSION}
        return kwargs, None, None

    def _completion(self, msg: Any, *, realised: Realisation, batch: bool = False) -> Completion:
        text = "".join(getattr(b, "text", "") for b in msg.content if getattr(b, "type", "") == "text")
        usage = msg.usage
        cache_read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
        cache_write = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        plain_in = int(usage.input_tokens or 0)
        out = int(usage.output_tokens or 0)
        return Completion(
            text=text,
            model=msg.model or self.model,
            realised_by=realised,
            tokens_in=plain_in + cache_read + cache_write,
            tokens_out=out,
            stop_reason=msg.stop_reason,
            refusal=msg.stop_reason == "refusal",
            raw=redact(msg.model_dump_json(exclude_none=True), [self._key]),
            cost_usd=estimate_cost(price=self.price, tokens_in=plain_in, tokens_out=out,
                                   cache_read=cache_read, cache_write=cache_write, batch=batch),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )

    # -- live requests ----------------------------------------------------------------------------

    async def _send(self, realised: Realisation, **params: Any) -> Completion:
        kwargs, extra_body, extra_headers = self._params(realised=realised, **params)
        client = self._get_client()

        async def once() -> Any:
            try:
                return await client.messages.create(**kwargs, extra_body=extra_body, extra_headers=extra_headers)
            except Exception as exc:  # noqa: BLE001 - translated, or re-raised by _translate
                raise self._translate(exc) from exc

        msg, attempts = await call_with_retries(once, policy=self.retry, what=f"anthropic {self.model}",
                                                hold=self.hold)
        comp = self._completion(msg, realised=realised)
        comp.attempts = attempts
        return comp

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        seed: int,
        max_tokens: int,
        system: str | None = None,
        json_schema: dict[str, Any] | None = None,
        instruction: str | None = None,
    ) -> Completion:
        t0 = time.perf_counter()
        params = dict(messages=messages, temperature=temperature, max_tokens=max_tokens, system=system,
                      instruction=instruction, json_schema=json_schema)
        comp = await self._realise(lambda realised: self._send(realised, **params))
        comp.latency_ms = self._elapsed_ms(t0)
        return comp

    async def check(self) -> str:
        """Missing key, rejected key, unreachable server, wrong base URL or unknown model: one
        sentence, before any work.

        Sends one 1-token request (a few input tokens), with a temperature unless the model is
        known to refuse it, so :attr:`realisation` is known afterwards.
        """
        self._require_key()
        await self.complete([{"role": "user", "content": "Reply with OK."}], temperature=0.4, seed=0, max_tokens=1)
        return "answers a 1-token request"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- Message Batches ------------------------------------------------------------------------

    async def submit_batch(self, requests: list[BatchRequest]) -> str:
        """Create a Message Batch (half price) and return its id.

        Store the id before waiting: :meth:`collect_batch` works from the id alone, so a restarted
        runner collects the results instead of paying twice.

        Raises
        ------
        ProviderError
            The batch could not be created (after retries).
        """
        if not requests:
            raise ProviderError("A Message Batch needs at least one request.")
        realised: Realisation = "instruction" if self.realisation == "instruction" else "temperature"
        items = []
        for r in requests:
            kwargs, extra_body, _ = self._params(
                r.messages, temperature=r.temperature, max_tokens=r.max_tokens, system=r.system,
                instruction=r.instruction, json_schema=r.json_schema, realised=realised,
            )
            items.append({"custom_id": r.custom_id, "params": {**kwargs, **(extra_body or {})}})
        headers = {"anthropic-version": LEGACY_API_VERSION} if realised == "temperature" else None
        client = self._get_client()

        async def once() -> Any:
            try:
                return await client.messages.batches.create(requests=items, extra_headers=headers)
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc) from exc

        batch, _ = await call_with_retries(once, policy=self.retry, what="anthropic batch create", hold=self.hold)
        self._batch_realised = realised
        return str(batch.id)

    async def batch_status(self, batch_id: str) -> str:
        """``in_progress``, ``canceling`` or ``ended``."""
        client = self._get_client()

        async def once() -> Any:
            try:
                return await client.messages.batches.retrieve(batch_id)
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc) from exc

        batch, _ = await call_with_retries(once, policy=self.retry, what="anthropic batch status", hold=self.hold)
        return str(batch.processing_status)

    async def collect_batch(self, batch_id: str) -> dict[str, Completion | BatchError]:
        """Results of an ended batch by ``custom_id``.

        A succeeded item becomes a :class:`Completion` (priced at the batch rate); an errored,
        canceled or expired one a :class:`BatchError`. An item refused for its sampling
        parameters teaches the capability store, so resubmitting it live uses the instruction.
        """
        client = self._get_client()
        realised: Realisation = "instruction" if self.realisation == "instruction" else "temperature"

        async def once() -> list[Any]:
            try:
                decoder = await client.messages.batches.results(batch_id)
                return [item async for item in decoder]
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc) from exc

        items, _ = await call_with_retries(once, policy=self.retry, what="anthropic batch results", hold=self.hold)
        out: dict[str, Completion | BatchError] = {}
        for item in items:
            result = item.result
            kind = result.type
            if kind == "succeeded":
                sent_with = getattr(self, "_batch_realised", None) or realised
                out[item.custom_id] = self._completion(result.message, realised=sent_with, batch=True)
                continue
            message = kind
            if kind == "errored":
                err = getattr(result.error, "error", None)
                message = f"{getattr(err, 'type', 'error')}: {getattr(err, 'message', '')}"
                if is_sampling_rejection(400, message):
                    self._learn_instruction(message)
            retryable = kind != "errored" or "invalid_request" not in message or is_sampling_rejection(400, message)
            out[item.custom_id] = BatchError(item.custom_id, kind, redact(message, [self._key]), retryable=retryable)
        return out
