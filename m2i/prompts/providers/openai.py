"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, LM Studio, OpenAI itself).

``AsyncOpenAI`` against ``base_url`` (``--base-url`` or ``OPENAI_BASE_URL``) and
``/v1/chat/completions`` with ``temperature``, ``seed`` and ``max_tokens`` as top-level fields,
and the answer's JSON schema as ``response_format`` (``json_schema``). A server that rejects
``response_format`` with a 400 is asked again without it, and remembered. A model that refuses a
temperature other than its default (OpenAI's reasoning models: "Unsupported value: 'temperature'
does not support 0.4 with this model") is treated as Claude's are: the first such 400 is
remembered for the model in the capability store and the request is sent again at once without a
temperature and with the mode's instruction (``realised_by="instruction"``). ``OPENAI_API_KEY`` is
sent when set; local servers usually want none.
"""

from __future__ import annotations

import os
import time
from typing import Any

from m2i.config import redact_url
from m2i.errors import ProviderError
from m2i.prompts.providers.base import (
    CapabilityStore,
    Completion,
    LLMProvider,
    Realisation,
    RetryPolicy,
    SdkErrorTexts,
    call_with_retries,
    redact,
    rejected,
    translate_sdk_error,
)

_TEXTS = SdkErrorTexts(
    client="OpenAI",
    unreachable=": start the server or fix --base-url / OPENAI_BASE_URL.",
    bad_key="{where} rejected the key in OPENAI_API_KEY ({status}: {msg}); set the key the server expects.",
    no_model="{where} has no model {model} ({msg}); pass --model with one listed by GET /v1/models.",
)

NO_KEY = "no-key-needed"
"""Sent as the bearer token when OPENAI_API_KEY is unset (local servers ignore it)."""


class OpenAIProvider(LLMProvider):
    """An OpenAI-compatible chat-completions server.

    Parameters
    ----------
    model : str
        Model id the server serves (required; ``GET /v1/models`` lists them).
    base_url : str or None
        API root including ``/v1``; ``OPENAI_BASE_URL`` when ``None``.
    structured_output : bool
        Send ``response_format`` with the JSON schema.
    price_in, price_out : float or None
        USD per million tokens, for the cost estimate (``None``: unknown).
    **kwargs
        ``capabilities``, ``retry``, ``timeout``, ``always_instruct`` (see :class:`LLMProvider`).
    """

    name = "openai"
    default_model = ""
    learns_sampling = True

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        capabilities: CapabilityStore | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 300.0,
        always_instruct: bool = False,
        structured_output: bool = True,
        price_in: float | None = None,
        price_out: float | None = None,
    ) -> None:
        super().__init__(model, capabilities=capabilities, retry=retry, timeout=timeout,
                         always_instruct=always_instruct)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not self.base_url:
            raise ProviderError(
                "The openai provider needs a server: pass --base-url (e.g. http://127.0.0.1:8000/v1) "
                "or set OPENAI_BASE_URL."
            )
        self.structured_output = structured_output
        self.token_limit_param = "max_tokens"
        """What the token limit is sent as; ``max_completion_tokens`` once a model refused ``max_tokens``."""
        self.price = (price_in, price_out) if price_in is not None and price_out is not None else None
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=os.environ.get("OPENAI_API_KEY") or NO_KEY,
                base_url=self.base_url,
                max_retries=0,
                timeout=self.timeout,
            )
        return self._client

    def _translate(self, exc: BaseException) -> ProviderError:
        import openai

        return translate_sdk_error(exc, openai, where=f"the OpenAI-compatible server at {redact_url(self.base_url)}",
                                   model=self.model, timeout=self.timeout, texts=_TEXTS,
                                   wrong_base_url=lambda exc, msg: self._wrong_base_url(exc))

    def _wrong_base_url(self, exc: Any) -> ProviderError:
        """A 404 for the endpoint itself (not for the model): the base URL lacks /v1, or has a wrong path."""
        base = redact_url(self.base_url.rstrip("/")) or ""
        hint = (f" (try {base}/v1)" if not base.endswith("/v1") else "")
        return rejected(
            f"Nothing answers at {redact_url(str(exc.request.url))} (404): the base URL {base} looks wrong{hint}; "
            "an OpenAI-compatible server's --base-url (or OPENAI_BASE_URL) is its API root, usually ending in /v1 "
            "(e.g. http://127.0.0.1:8000/v1)."
        )

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
        comp = await self._realise(lambda realised: self._send(
            realised, messages, temperature=temperature, seed=seed, max_tokens=max_tokens, system=system,
            json_schema=json_schema, instruction=instruction))
        comp.latency_ms = self._elapsed_ms(t0)
        return comp

    async def _send(
        self,
        realised: Realisation,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        seed: int,
        max_tokens: int,
        system: str | None,
        json_schema: dict[str, Any] | None,
        instruction: str | None,
    ) -> Completion:
        """One request, the temperature sent only when the mode is realised by it."""
        sys_text = self._instruct(system, instruction, realised)
        chat = ([{"role": "system", "content": sys_text}] if sys_text else []) + list(messages)
        sampling = {"temperature": float(temperature)} if realised == "temperature" else {}
        client = self._get_client()
        spent = 0

        async def once(structured: bool) -> Any:
            extra: dict[str, Any] = dict(sampling)
            if structured and json_schema is not None:
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "visual_prompt", "schema": json_schema, "strict": True},
                }
            extra[self.token_limit_param] = int(max_tokens)
            try:
                return await client.chat.completions.create(model=self.model, messages=chat, seed=int(seed), **extra)
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc) from exc

        while True:
            try:
                resp, attempts = await call_with_retries(lambda: once(self.structured_output), policy=self.retry,
                                                         what=f"openai {self.model}", hold=self.hold)
                break
            except ProviderError as exc:
                if not self._adapt(exc):
                    raise
                spent += getattr(exc, "attempts", 1)
        choice = resp.choices[0] if resp.choices else None
        msg = choice.message if choice else None
        refusal_text = getattr(msg, "refusal", None) if msg else None
        usage = resp.usage
        t_in = usage.prompt_tokens if usage else None
        t_out = usage.completion_tokens if usage else None
        cost = None
        if self.price and t_in is not None and t_out is not None:
            cost = round((t_in * self.price[0] + t_out * self.price[1]) / 1e6, 8)
        return Completion(
            text=(msg.content if msg and msg.content else "") or (refusal_text or ""),
            model=resp.model or self.model,
            realised_by=realised,
            tokens_in=t_in,
            tokens_out=t_out,
            attempts=attempts + spent,
            stop_reason=choice.finish_reason if choice else None,
            refusal=bool(refusal_text) or (choice is not None and choice.finish_reason == "content_filter"),
            raw=redact(resp.model_dump_json(exclude_none=True)),
            cost_usd=cost,
        )

    def _adapt(self, exc: ProviderError) -> bool:
        """Learn from a 400 what this server or model does not take, for the rest of the run: a
        ``response_format`` (send the schema in the instructions only), or ``max_tokens`` (OpenAI's
        reasoning models want ``max_completion_tokens``). True when the request should be sent again."""
        if getattr(exc, "status", None) != 400:
            return False
        if self.structured_output and "response_format" in str(exc):
            self.structured_output = False
            return True
        if self.token_limit_param == "max_tokens" and "max_completion_tokens" in str(exc):
            self.token_limit_param = "max_completion_tokens"
            return True
        return False

    async def check(self) -> str:
        """Unreachable server, rejected key, wrong base URL or unknown model: one sentence, before any work.

        Lists the server's models (``GET /v1/models``); no completion is sent.
        """
        import openai

        client = self._get_client()

        async def once() -> Any:
            try:
                return [m.id async for m in client.models.list()]
            except openai.NotFoundError as exc:  # the list itself is missing: the base URL is wrong
                raise self._wrong_base_url(exc) from exc
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc) from exc

        ids, _ = await call_with_retries(once, policy=RetryPolicy(max_attempts=2, base_delay=0.2),
                                         what="openai models", hold=self.hold)
        if ids and self.model not in ids:
            raise ProviderError(
                f"The server at {redact_url(self.base_url)} has no model {self.model!r}; pass --model with one of: "
                f"{', '.join(sorted(ids)[:10])}."
            )
        if not ids:
            return "was not checked: the server lists no models (GET /v1/models; no completion sent)"
        return "is listed by the server (GET /v1/models; no completion sent)"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
