"""What every LLM provider offers, and the retry policy they share.

A provider turns one chat request into one :class:`Completion`. It owns the wire format of its
API (where temperature and seed go, how tokens are counted), retries transient failures (429,
5xx, timeouts, dropped connections, unreadable bodies) with exponential backoff that honours
``Retry-After``, and translates every third-party error into :class:`m2i.errors.ProviderError`
with one sentence that never contains an API key, and a ``scope``: about this request or answer,
the provider being unavailable (429, 5xx, 529, no connection, timeouts), or the provider refusing
all work until the user acts (a rejected key, an unknown model or base path).

Unavailable
-----------
While a provider is unavailable, every request to it waits in one :class:`ProviderHold`: one
shared backoff (``Retry-After`` when the server sends one, else doubling up to a few minutes),
logged once per hold, over as soon as any request is answered. After ``limit_s`` without an
answer the hold gives up with a ``scope="provider"`` error.

Mode realisation
----------------
A request carries the mode's ``temperature`` and an ``instruction`` (the documented convergent
or divergent instruction). A provider whose model accepts sampling parameters sends the
temperature and, unless asked to add it anyway, leaves the instruction out; it reports
``realised_by="temperature"``. A model that refuses sampling parameters (Claude from Opus 4.7 on)
gets the instruction instead and reports ``realised_by="instruction"``. What was learned about a
model is kept in a :class:`CapabilityStore` (the ``llm_model`` table in a run store).
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from m2i.config import redact_url
from m2i.errors import ProviderError

log = logging.getLogger(__name__)

request_label: contextvars.ContextVar[str | None] = contextvars.ContextVar("m2i_request_label", default=None)
"""Which prompt the provider call in this task is for (``"prompt 12 (sample 3, slot 4)"``), set by
:func:`m2i.prompts.generate.write_prompt`; :func:`call_with_retries` names it in its log lines."""

Realisation = Literal["temperature", "instruction"]
T = TypeVar("T")

SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "OLLAMA_API_KEY")


@dataclass
class Completion:
    """One model answer and what it cost.

    Attributes
    ----------
    text : str
        The assistant text (may be empty).
    model : str
        The model that answered.
    realised_by : {"temperature", "instruction"}
        How the mode reached the model.
    tokens_in, tokens_out : int or None
        Prompt and completion tokens as the API counts them (cache reads and writes included in
        ``tokens_in``).
    latency_ms : float
        Wall time of all attempts, backoff sleeps included.
    attempts : int
        HTTP (or local) calls made, 1 when the first one succeeded.
    stop_reason : str or None
        Why the model stopped, in its API's words: ``end_turn``/``stop``/``max_tokens``/``length``/
        ``refusal``... :attr:`cut_off` reads it the same way for every provider.
    refusal : bool
        The model declined to answer.
    raw : str
        The response body as received (API keys redacted).
    cost_usd : float or None
        Estimated price; ``None`` when the model's price is unknown (local models cost 0).
    cache_read_tokens, cache_write_tokens : int
        Prompt-cache use (Anthropic).
    """

    text: str
    model: str
    realised_by: Realisation = "temperature"
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_ms: float = 0.0
    attempts: int = 1
    stop_reason: str | None = None
    refusal: bool = False
    raw: str = ""
    cost_usd: float | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def cut_off(self) -> bool:
        """The answer stopped at the token limit (``max_tokens`` for Anthropic, ``length`` for Ollama,
        OpenAI-compatible servers and llama.cpp): its text is incomplete."""
        return (self.stop_reason or "") in CUT_OFF_STOP_REASONS


CUT_OFF_STOP_REASONS = frozenset({"max_tokens", "length", "model_context_window_exceeded"})
"""Stop reasons, in every provider's vocabulary, that mean the answer was cut off before its end."""


@dataclass
class BatchRequest:
    """One request of a provider-side batch (Anthropic Message Batches)."""

    custom_id: str
    messages: list[dict[str, Any]]
    temperature: float
    seed: int
    max_tokens: int
    system: str | None = None
    instruction: str | None = None
    json_schema: dict[str, Any] | None = None


@dataclass
class BatchError:
    """A batch item that did not produce a message (errored, canceled or expired)."""

    custom_id: str
    kind: str
    message: str
    retryable: bool = True


@runtime_checkable
class CapabilityStore(Protocol):
    """Where a provider remembers whether a model takes sampling parameters.

    The run store implements it over the ``llm_model`` table; :class:`MemoryCapabilityStore` is
    the in-process version.
    """

    def get(self, provider: str, model: str) -> str | None:
        """``"temperature"``, ``"instruction"`` or ``None`` when nothing is known yet."""
        ...

    def set(self, provider: str, model: str, sampling: str, note: str | None = None) -> None:
        """Remember ``sampling`` (``"temperature"`` or ``"instruction"``) for the model."""
        ...


@dataclass
class MemoryCapabilityStore:
    """A :class:`CapabilityStore` in a dict (one process, nothing persisted)."""

    data: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)

    def get(self, provider: str, model: str) -> str | None:
        hit = self.data.get((provider, model))
        return hit[0] if hit else None

    def set(self, provider: str, model: str, sampling: str, note: str | None = None) -> None:
        if sampling not in ("temperature", "instruction"):
            raise ValueError(f"sampling must be 'temperature' or 'instruction', got {sampling!r}")
        self.data[(provider, model)] = (sampling, note)


_SAMPLING_WORDS = ("temperature", "top_p", "top_k")
_REJECT_WORDS = ("deprecated", "not supported", "unsupported", "not allowed", "not permitted", "extra inputs")


def is_sampling_rejection(status: int | None, message: str) -> bool:
    """Whether a 400 says the model does not take sampling parameters.

    Claude from Opus 4.7 on: "`temperature` is deprecated for this model."; OpenAI's reasoning
    models: "Unsupported value: 'temperature' does not support 0.4 with this model. Only the
    default (1) value is supported."
    """
    low = message.lower()
    return status == 400 and any(w in low for w in _SAMPLING_WORDS) and any(w in low for w in _REJECT_WORDS)


def is_model_not_found(body: Any, model: str) -> bool:
    """Whether a 404's body is the API's error about the model, rather than a missing endpoint.

    APIs answer an unknown model with their error object naming it (``{"error": {"message":
    "model: X"}}``, ``{"message": "The model `X` does not exist."}``, ``code: model_not_found``);
    a wrong base URL gets a generic "Not Found" or a body that is no such object.
    """
    if not isinstance(body, dict):
        return False
    err = body.get("error", body)
    if not isinstance(err, dict):
        return False
    text = " ".join(str(err.get(k) or "") for k in ("message", "code")).lower()
    return "model" in text or bool(model) and model.lower() in text


_URL_SECRETS: set[str] = set()
"""Passwords of the base URLs providers were built with, and the HTTP Basic credentials made
from them (``base64(user:password)``): a server that echoes its Authorization header in an error
must not put them in a log or the database (:func:`remember_url_secrets`)."""


def remember_url_secrets(url: str | None) -> None:
    """Add the password of ``url`` (``http://user:PASSWORD@host``) and its Basic-auth form to the
    secrets :func:`redact` masks for the rest of the process."""
    import base64
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url or "")
    except ValueError:
        return
    if parts.password:
        user, password = unquote(parts.username or ""), unquote(parts.password)
        _URL_SECRETS.update({password, base64.b64encode(f"{user}:{password}".encode()).decode()})


def known_secrets(extra: Sequence[str | None] = ()) -> list[str]:
    """API keys found in the environment, the base URLs' passwords (:func:`remember_url_secrets`)
    plus ``extra`` (only values long enough to be keys)."""
    values = [os.environ.get(name) for name in SECRET_ENV_VARS] + sorted(_URL_SECRETS) + list(extra)
    return sorted({v for v in values if v and len(v) >= 6}, key=len, reverse=True)


def redact(text: str | None, secrets: Sequence[str | None] = ()) -> str:
    """Replace every known API key, and any password in a URL, in ``text`` with ``***``."""
    if not text:
        return text or ""
    for secret in known_secrets(secrets):
        text = text.replace(secret, "***")
    return redact_url(text) or ""


@dataclass
class RetryPolicy:
    """Backoff for transient failures.

    Attempt ``n`` (1-based) that fails retryably waits ``Retry-After`` when the server sent one
    (capped at ``max_retry_after``), otherwise ``min(max_delay, base_delay * 2**(n-1))`` with
    +-25 % jitter.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_retry_after)
        d = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return d * random.uniform(0.75, 1.25)


UNAVAILABLE_CAUSES = {408: "408 request timeout", 429: "429 rate limited", 500: "500 server error",
                      502: "502 bad gateway", 503: "503 service unavailable", 504: "504 gateway timeout",
                      529: "529 overloaded"}


def status_scope(status: int | None) -> str:
    """What an HTTP error status is about: ``"provider"`` for 401/403 (the key) and 404 (the model
    or the base path), ``"unavailable"`` for 408, 429 and 5xx (529 included), else ``"request"``."""
    if status in (401, 403, 404):
        return "provider"
    if status is not None and (status in (408, 429) or status >= 500):
        return "unavailable"
    return "request"


def unavailable(message: str, *, status: int | None = None, cause: str | None = None,
                retry_after: float | None = None) -> ProviderError:
    """A retryable error that concerns the whole provider (it is not answering now)."""
    if cause is None:
        cause = UNAVAILABLE_CAUSES.get(status or 0, f"{status} server error" if status else "no answer")
    err = ProviderError(message, retryable=True, retry_after=retry_after, scope="unavailable", cause=cause)
    err.status = status  # type: ignore[attr-defined]  # None: no connection, or no answer in time
    return err


def busy(exc: BaseException) -> bool:
    """Whether a provider is there but busy: it answered 429, 5xx or 529. At start-up m2i waits for
    such a provider; one that cannot be reached at all is more often a wrong address than a
    restart, so the run is refused at once with the sentence instead."""
    return isinstance(exc, ProviderError) and exc.scope == "unavailable" and getattr(exc, "status", None) is not None


def rejected(message: str) -> ProviderError:
    """An error no request to this provider can get past until the user acts (key, model, base path)."""
    return ProviderError(message, scope="provider")


def retry_after(headers: Any) -> float | None:
    """Seconds a server asks to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            from datetime import UTC, datetime
            from email.utils import parsedate_to_datetime

            when = parsedate_to_datetime(str(value))
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (AttributeError, TypeError, ValueError, IndexError, OverflowError):
        return None


def sdk_error_message(exc: Any) -> str:
    """The API's own message in an error raised by the Anthropic or OpenAI SDK (both generated by
    Stainless): ``{"error": {"message": ...}}``, ``{"message": ...}`` or ``{"error": "..."}``."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if body.get("message"):
            return str(body["message"])
    return str(getattr(exc, "message", "") or exc)


@dataclass(frozen=True)
class SdkErrorTexts:
    """What :func:`translate_sdk_error` says that differs between the APIs (``str.format`` fields:
    ``where``, ``status``, ``msg``, ``model``)."""

    client: str  # "Anthropic": "The Anthropic client failed: ..."
    unreachable: str  # appended to "Cannot reach {where}"
    bad_key: str
    no_model: str


def translate_sdk_error(
    exc: BaseException,
    sdk: Any,
    *,
    where: str,
    model: str,
    timeout: float,
    texts: SdkErrorTexts,
    wrong_base_url: Callable[[Any, str], ProviderError],
    secrets: Sequence[str | None] = (),
) -> ProviderError:
    """One sentence, no secret, ``scope`` and ``retryable`` set, for any failure of one request made
    with the Anthropic or OpenAI SDK (``sdk``: the imported module; their error classes match).

    ``wrong_base_url(exc, msg)`` words a 404 for the endpoint itself (not for the model). Anything
    that is not an SDK error is raised again.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, sdk.APITimeoutError):
        return unavailable(f"{where} did not answer within {timeout:g} s.", cause=f"no answer within {timeout:g} s")
    if isinstance(exc, sdk.APIConnectionError):
        return unavailable(f"Cannot reach {where}{texts.unreachable}", cause="no connection")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        msg = redact(sdk_error_message(exc), secrets)
        wait = retry_after(exc.response.headers if exc.response is not None else None)
        fields = {"where": where, "status": status, "msg": msg, "model": repr(model)}
        if status in (401, 403):
            return rejected(texts.bad_key.format(**fields))
        if status == 404 and is_model_not_found(getattr(exc, "body", None), model):
            return rejected(texts.no_model.format(**fields))
        if status == 404:
            return wrong_base_url(exc, msg)
        if status_scope(status) == "unavailable":
            return unavailable(f"{where} answered {status}: {msg}", status=status, retry_after=wait)
        if status == 409:
            return ProviderError(f"{where} answered {status}: {msg}", retryable=True, retry_after=wait)
        err = ProviderError(f"{where} refused the request for {model} ({status}: {msg}).")
        err.status = status  # type: ignore[attr-defined]
        return err
    if isinstance(exc, (ValueError, sdk.APIResponseValidationError)):
        return ProviderError(f"{where} sent a body that is not valid JSON ({type(exc).__name__}).", retryable=True)
    base_error = getattr(sdk, "AnthropicError", None) or sdk.OpenAIError
    if isinstance(exc, base_error):
        return ProviderError(redact(f"The {texts.client} client failed: {exc}", secrets), retryable=True)
    raise exc


def _span(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds:.2f} s"


class ProviderHold:
    """One shared backoff for every request to a provider that is not answering.

    A request that meets a ``scope="unavailable"`` error calls :meth:`failed`. The first such
    failure after a hold ended starts the next hold: ``Retry-After`` when the server sent one,
    otherwise ``first_s`` (the retry policy's first delay) doubling up to ``max_s``; it is logged
    once. Every request waits in :meth:`wait` until the hold is over; then one request goes alone
    (the probe) and the others wait for its outcome, so a rate-limited server is not met by every
    request at once. Any answer (:meth:`answered`) ends the outage and resets the backoff. When nothing was answered for
    ``limit_s``, :meth:`failed` and :meth:`wait` raise a ``scope="provider"`` error: the caller
    stops instead of waiting forever.
    """

    def __init__(self, name: str, *, max_s: float = 300.0, limit_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.max_s = max_s
        self.limit_s = limit_s
        self.clock = clock
        self.since: float | None = None  # the first unanswered failure of this outage
        self.until = 0.0
        self.delay = 0.0
        self.holds = 0
        self.last: ProviderError | None = None
        self._probe: asyncio.Event | None = None

    def left(self) -> float:
        """Seconds until the current hold is over (0 when there is none)."""
        return max(0.0, self.until - self.clock())

    def failed(self, exc: ProviderError, *, first_s: float = 0.5) -> None:
        now = self.clock()
        if self.since is None:
            self.since = now
        self.last = exc
        self._give_up_if_long(now)
        asked = exc.retry_after if exc.retry_after is not None and exc.retry_after >= 0 else None
        if now < self.until:  # another request of the same hold: only a longer Retry-After extends it
            if asked is not None:
                self.until = max(self.until, now + min(self.max_s, asked))
            return
        self.delay = min(self.max_s, first_s if not self.delay else self.delay * 2)
        wait = min(self.max_s, asked) if asked is not None else self.delay
        wait = min(wait, max(0.0, self.since + self.limit_s - now))  # wake up to give up on time
        self.until = now + wait
        self.holds += 1
        log.log(logging.WARNING if wait >= 5 else logging.INFO, "%s unavailable (%s); holding prompts for %s",
                self.name, exc.cause or "no answer", _span(wait))

    async def wait(self, *, request: bool = True) -> bool:
        """Wait until a request may go; True when it goes alone as the probe (call :meth:`probe_done`
        after it). With ``request=False``, only wait for the current hold to end."""
        while True:
            self._give_up_if_long(self.clock())
            left = self.left()
            if left > 0:
                await asyncio.sleep(left)
            elif self.since is None or not request:
                return False
            elif self._probe is None:
                self._probe = asyncio.Event()
                return True
            else:
                await self._probe.wait()

    def probe_done(self) -> None:
        """The probe request ended (answered, failed or cancelled): the others look again."""
        if self._probe is not None:
            self._probe.set()
            self._probe = None

    def answered(self) -> None:
        if self.since is not None and self.holds:
            log.info("%s answers again after %s", self.name, _span(self.clock() - self.since))
        self.since, self.until, self.delay, self.holds = None, 0.0, 0.0, 0

    def _give_up_if_long(self, now: float) -> None:
        if self.since is not None and now - self.since >= self.limit_s:
            last = str(self.last or "").rstrip(". ")
            raise rejected(f"{self.name} has answered nothing for {_span(now - self.since)} ({last}); "
                           "try again when it answers (the setting llm_outage_s is how long m2i waits)")


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    what: str,
    hold: ProviderHold | None = None,
) -> tuple[T, int]:
    """Run ``fn`` until it succeeds, retrying :class:`ProviderError` with ``retryable=True``.

    With a ``hold``, a ``scope="unavailable"`` failure holds every request to the provider (see
    :class:`ProviderHold`) instead of this one alone, and each attempt first waits for the hold.

    Returns
    -------
    (result, attempts)

    Raises
    ------
    ProviderError
        The last error, once ``policy.max_attempts`` calls failed or a non-retryable one came;
        the hold's ``scope="provider"`` error once the provider answered nothing for its limit.
    """
    attempt = 0
    while True:
        attempt += 1
        probe = False
        if hold is not None:
            try:
                probe = await hold.wait()
            except ProviderError as gone:
                gone.attempts = attempt - 1  # type: ignore[attr-defined]
                raise
        try:
            result = await fn()
        except ProviderError as exc:
            shared = hold is not None and exc.scope == "unavailable"
            if hold is not None and shared:
                try:
                    hold.failed(exc, first_s=policy.base_delay)
                except ProviderError as gone:
                    gone.attempts = attempt  # type: ignore[attr-defined]
                    raise gone from exc
            elif hold is not None and exc.scope != "provider":
                hold.answered()  # an answer about this request: the provider is there
            if not exc.retryable or attempt >= policy.max_attempts:
                exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            wait = hold.left() if hold is not None and shared else policy.delay(attempt, exc.retry_after)
            label = request_label.get()
            # a shared hold is logged once by the hold, not once per waiting request
            log.log(logging.DEBUG if shared else logging.INFO, "%s%s failed (attempt %d of %d): %s; retrying in %.2f s",
                    what, f" for {label}" if label else "", attempt, policy.max_attempts, str(exc).rstrip("."), wait)
            if not shared:
                await asyncio.sleep(wait)
        else:
            if hold is not None:
                hold.answered()
            return result, attempt
        finally:
            if probe and hold is not None:
                hold.probe_done()


class LLMProvider(abc.ABC):
    """One chat-model API behind one ``complete`` method.

    Parameters
    ----------
    model : str
        Model id as the API names it.
    capabilities : CapabilityStore or None
        Where to remember what the model accepts; an in-memory store when ``None``.
    retry : RetryPolicy or None
        Backoff for transient failures.
    timeout : float
        Seconds one HTTP request may take before it counts as a (retryable) timeout.
    always_instruct : bool
        Add the mode instruction even when the temperature is sent.
    """

    name: str = ""
    default_model: str = ""
    learns_sampling: bool = False
    """Whether this API may refuse sampling parameters per model (learned from the first such 400,
    remembered in the capability store; see :meth:`_realise`)."""
    prompt_settings: dict[str, Any] = {}
    """Template settings this provider's models need (merged under the caller's ``settings``)."""

    def __init__(
        self,
        model: str | None = None,
        *,
        capabilities: CapabilityStore | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        always_instruct: bool = False,
    ) -> None:
        self.model = model or self.default_model
        if not self.model:
            raise ProviderError(f"The {self.name} provider needs a model: pass --model with a model id.")
        self.capabilities: CapabilityStore = capabilities if capabilities is not None else MemoryCapabilityStore()
        self.retry = retry or RetryPolicy()
        self.hold = ProviderHold(self.name)
        """Every request to this provider waits here while it is unavailable."""
        self.timeout = float(timeout)
        self.always_instruct = bool(always_instruct)

    @classmethod
    def recorded_model(cls, model: str | None) -> str | None:
        """What a run records as its model for ``--model model``: the model that will run (the
        provider's default when none is given)."""
        return model or cls.default_model or None

    @property
    def realisation(self) -> Realisation | None:
        """How modes reach this model: known after :meth:`check` or the first request (``None``:
        not known yet)."""
        if not self.learns_sampling:
            return "temperature"
        known = self.capabilities.get(self.name, self.model)
        return known if known in ("temperature", "instruction") else None  # type: ignore[return-value]

    @abc.abstractmethod
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
        """Send one chat request and return the answer.

        Parameters
        ----------
        messages : list of {"role": "user"|"assistant", "content": str}
            The conversation.
        temperature : float in [0, 2]
            The mode's sampling temperature.
        seed : int
            Sampling seed (where the API has one).
        max_tokens : int > 0
            Completion token limit.
        system : str or None
            The shared system prompt (cached where the API supports it).
        json_schema : dict or None
            JSON schema of the expected answer, for APIs with structured output.
        instruction : str or None
            The mode's instruction, used when the temperature cannot be sent (or always, with
            ``always_instruct``).

        Raises
        ------
        ProviderError
            ``retryable=True`` once transient failures outlasted the retry policy.
        """

    async def check(self) -> str:
        """Fail fast, before any work, on a missing or rejected key, a dead server or an unknown model.

        Returns what was verified, as a phrase about the model (``"answers a 1-token request"``,
        ``"is listed by the server (GET /v1/models; no completion sent)"``) for ``m2i doctor``.
        """
        return "needs no check"

    async def aclose(self) -> None:
        """Release connections and models."""

    async def detach(self) -> None:
        """Let go of what belongs to the running event loop (HTTP connections), keeping what was
        loaded and learned, so that the provider can be used again under another loop (the run
        checks its provider before it records anything, then runs its stages in a loop of their own)."""
        await self.aclose()

    async def _realise(self, send: Callable[[Realisation], Awaitable[Completion]]) -> Completion:
        """``send(realised)`` the request, by temperature unless the model is known to refuse it.

        A 400 that says the model does not take sampling parameters is remembered for the model
        in the capability store and the request is sent again at once with the mode's instruction;
        both calls count in ``attempts``. A model that took its temperature is remembered too.
        """
        known = self.capabilities.get(self.name, self.model)
        realised: Realisation = "instruction" if known == "instruction" else "temperature"
        spent = 0
        try:
            comp = await send(realised)
        except ProviderError as exc:
            if realised != "temperature" or not is_sampling_rejection(getattr(exc, "status", None), str(exc)):
                raise
            spent = getattr(exc, "attempts", 1)
            self._learn_instruction(str(exc))
            realised = "instruction"
            try:
                comp = await send(realised)
            except ProviderError as exc2:
                exc2.attempts = spent + getattr(exc2, "attempts", 1)  # type: ignore[attr-defined]
                raise
        if realised == "temperature" and known is None:
            self.capabilities.set(self.name, self.model, "temperature", None)
        comp.attempts += spent
        return comp

    def _learn_instruction(self, note: str) -> None:
        if self.capabilities.get(self.name, self.model) == "instruction":
            return  # learned already, from a request that was in flight at the same time
        log.warning("%s refuses sampling parameters; modes will be realised by instruction (%s)", self.model, note)
        self.capabilities.set(self.name, self.model, "instruction", note[:500])

    def _instruct(self, system: str | None, instruction: str | None, realised: Realisation) -> str | None:
        if instruction and (realised == "instruction" or self.always_instruct):
            return f"{system}\n\n{instruction}" if system else instruction
        return system

    @staticmethod
    def _elapsed_ms(t0: float) -> float:
        return (time.perf_counter() - t0) * 1000.0
