"""Ollama through the official client's ``AsyncClient`` (``OLLAMA_HOST``, default 127.0.0.1:11434).

Ollama reads sampling parameters only inside ``options``: ``temperature``, ``seed`` and
``num_predict`` (the token limit) go there, and the answer's JSON schema goes in ``format``
(structured output). The earlier system put the temperature next to ``options``, where Ollama
ignores it; the tests check the field on the wire.
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
    RetryPolicy,
    call_with_retries,
    redact,
    rejected,
    retry_after,
    status_scope,
    unavailable,
)


class OllamaProvider(LLMProvider):
    """Models served by Ollama.

    Parameters
    ----------
    model : str or None
        Model name as ``ollama list`` shows it (default ``llama3.2``).
    base_url : str or None
        Server; ``OLLAMA_HOST`` or ``http://127.0.0.1:11434`` when ``None``.
    structured_output : bool
        Send the JSON schema as ``format``.
    repeat_penalty : float or None
        ``options.repeat_penalty``.
    keep_alive : str or None
        How long Ollama keeps the model loaded after a request.
    **kwargs
        ``capabilities``, ``retry``, ``timeout``, ``always_instruct`` (see :class:`LLMProvider`).
    """

    name = "ollama"
    default_model = "llama3.2"

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
        repeat_penalty: float | None = None,
        keep_alive: str | None = "10m",
    ) -> None:
        super().__init__(model, capabilities=capabilities, retry=retry, timeout=timeout,
                         always_instruct=always_instruct)
        self.host = base_url or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        self.structured_output = structured_output
        self.repeat_penalty = repeat_penalty
        self.keep_alive = keep_alive
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            from ollama import AsyncClient

            self._client = AsyncClient(host=self.host, timeout=self.timeout)
        return self._client

    def _translate(self, exc: BaseException) -> ProviderError:
        import httpx
        import ollama

        where = f"Ollama at {redact_url(self.host)}"
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, ollama.ResponseError):
            status = exc.status_code
            msg = redact(str(exc.error))
            if status == 404 and "model" not in msg.lower():  # the endpoint itself: Go's "404 page not found"
                return rejected(
                    f"Nothing answers at {where} (404: {msg}): its address looks wrong; OLLAMA_HOST or --base-url "
                    "is the server's root, e.g. http://127.0.0.1:11434, without /api or /v1."
                )
            if status == 404 or "not found" in msg.lower():
                return rejected(
                    f"{where} has no model {self.model!r}: run `ollama pull {self.model}` and try again."
                )
            if status in (401, 403):
                return rejected(f"{where} rejected the request ({status}: {msg}); check OLLAMA_API_KEY.")
            if status_scope(status) == "unavailable" or status < 0:
                # the client drops the response but keeps it on the HTTP error it replaced
                response = getattr(exc.__context__, "response", None)
                return unavailable(f"{where} answered {status}: {msg}", status=status if status > 0 else None,
                                   retry_after=retry_after(getattr(response, "headers", None)))
            return ProviderError(f"{where} refused the request for {self.model} ({status}: {msg}).")
        if isinstance(exc, httpx.TimeoutException):
            return unavailable(f"{where} did not answer within {self.timeout:g} s.",
                               cause=f"no answer within {self.timeout:g} s")
        if isinstance(exc, (ConnectionError, httpx.TransportError)):
            return unavailable(f"Cannot reach {where}: start it with `ollama serve` or set OLLAMA_HOST.",
                               cause="no connection")
        if isinstance(exc, ValueError):  # JSON decode / validation of the body
            return ProviderError(f"{where} sent a body that is not valid JSON ({type(exc).__name__}).",
                                 retryable=True)
        raise exc

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
        sys_text = self._instruct(system, instruction, "temperature")
        chat = ([{"role": "system", "content": sys_text}] if sys_text else []) + list(messages)
        options: dict[str, Any] = {"temperature": float(temperature), "seed": int(seed), "num_predict": int(max_tokens)}
        if self.repeat_penalty is not None:
            options["repeat_penalty"] = float(self.repeat_penalty)
        fmt = json_schema if (json_schema is not None and self.structured_output) else None
        client = self._get_client()

        async def once() -> Any:
            try:
                return await client.chat(model=self.model, messages=chat, format=fmt, options=options,
                                         stream=False, keep_alive=self.keep_alive)
            except Exception as exc:  # noqa: BLE001 - translated or re-raised
                raise self._translate(exc) from exc

        resp, attempts = await call_with_retries(once, policy=self.retry, what=f"ollama {self.model}",
                                                 hold=self.hold)
        return Completion(
            text=resp.message.content or "",
            model=resp.model or self.model,
            realised_by="temperature",
            tokens_in=resp.prompt_eval_count,
            tokens_out=resp.eval_count,
            latency_ms=self._elapsed_ms(t0),
            attempts=attempts,
            stop_reason=resp.done_reason,
            raw=redact(resp.model_dump_json(exclude_none=True)),
            cost_usd=0.0,
        )

    async def check(self) -> str:
        """Unreachable server or a model not pulled: one sentence with the command to run."""
        client = self._get_client()

        async def once() -> Any:
            try:
                return await client.show(self.model)
            except Exception as exc:  # noqa: BLE001
                raise self._translate(exc) from exc

        await call_with_retries(once, policy=RetryPolicy(max_attempts=2, base_delay=0.2), what="ollama show",
                                hold=self.hold)
        return "is pulled on the server (POST /api/show; no completion sent)"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
