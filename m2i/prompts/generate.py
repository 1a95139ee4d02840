"""The ``generate`` stage's pure function: one visual prompt for one clip and mode.

:func:`write_prompt` builds the request from :mod:`m2i.prompts.template`, sends it through a
provider (which retries transport failures), validates the answer with
:func:`m2i.prompts.parse.parse_prompt` and, on an invalid answer (empty, cut off at the token
limit, not JSON, no ``image_prompt``, several prompts, a repetition loop), asks again a bounded
number of times: with the bad answer and what was wrong with it when there is something to
repair, afresh with another seed otherwise. A refusal ends the prompt at once, with the model's
words as the reason. It returns the columns of the ``prompt`` table; it never touches the database.
"""

from __future__ import annotations

import logging
from typing import Any

from m2i.errors import ProviderError
from m2i.prompts.parse import InvalidOutput, VisualPrompt, opens_reasoning, parse_prompt, refusal_reason
from m2i.prompts.providers.base import Completion, LLMProvider, redact, request_label
from m2i.prompts.template import DEFAULT_NEGATIVE_PROMPT, DEFAULTS, PromptRequest, build_request

log = logging.getLogger(__name__)

RETRY_SEED_STEP = 1000
"""Answer ``k`` (0-based) after an invalid one is sampled with ``seed + k * RETRY_SEED_STEP``."""


def spent_columns(comps: list[Completion]) -> dict[str, Any]:
    """What the completions a prompt took cost, as ``prompt`` columns (kept on a failed row too)."""
    costs = [c.cost_usd for c in comps]
    return {
        "tokens_in": sum(c.tokens_in or 0 for c in comps),
        "tokens_out": sum(c.tokens_out or 0 for c in comps),
        "latency_ms": round(sum(c.latency_ms for c in comps), 1),
        "cost_usd": None if any(c is None for c in costs) else round(sum(costs), 8),  # type: ignore[arg-type]
        "llm_attempts": sum(c.attempts for c in comps),
    }


SPENT_COLUMNS = ("tokens_in", "tokens_out", "latency_ms", "cost_usd", "llm_attempts")


def with_earlier_spend(values: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """``values`` of a prompt's new attempt plus what its earlier attempts spent (the columns a failed
    attempt kept on the row): a prompt's tokens, calls and cost are everything it took, so that the
    run's spend adds up. A cost stays unknown (None) once any attempt's cost was unknown."""
    if not any(earlier.get(k) for k in SPENT_COLUMNS):
        return values
    out = dict(values)
    for k in SPENT_COLUMNS:
        old = earlier.get(k)
        if k not in out:
            out[k] = old
        elif k == "cost_usd":
            spent_before = bool(earlier.get("tokens_in") or earlier.get("tokens_out"))
            unknown = out[k] is None or (old is None and spent_before)
            out[k] = None if unknown else round((old or 0.0) + out[k], 8)
        elif old is not None:
            out[k] = round(old + (out[k] or 0), 1) if k == "latency_ms" else old + (out[k] or 0)
    return out


def prompt_columns(vp: VisualPrompt, tokens: int, *, provider: str, comps: list[Completion]) -> dict[str, Any]:
    """The ``prompt`` row columns for a validated answer and the completions it took."""
    last = comps[-1]
    return {
        "title": redact(vp.title),
        "text": redact(vp.description),
        "image_prompt": redact(vp.image_prompt),
        "negative_prompt": redact(vp.negative_prompt),
        "palette": [redact(c) for c in vp.palette],
        "image_prompt_tokens": tokens,
        "realised_by": last.realised_by,
        "provider": provider,
        "model": last.model,
        **spent_columns(comps),
        "raw": redact(last.raw),
    }


def prompt_from_completion(comp: Completion, *, provider: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Columns for one finished completion (a Message Batches result, say).

    Raises
    ------
    ProviderError
        ``retryable=False``: the model refused (the message quotes it). ``retryable=True``: the
        answer was cut off at the token limit or invalid; send the prompt again live.
    """
    s = {**DEFAULTS, **(settings or {})}
    try:
        vp, tokens = _judge(comp, s)
    except InvalidOutput as exc:
        if exc.kind == "refusal":
            raise ProviderError(_sentence(redact(f"{comp.model} gave no visual prompt; {exc.reason}"))) from exc
        raise ProviderError(f"{comp.model} gave no usable visual prompt: {exc.reason}.", retryable=True) from exc
    return prompt_columns(vp, tokens, provider=provider, comps=[comp])


def _judge(comp: Completion, s: dict[str, Any]) -> tuple[VisualPrompt, int]:
    """Validate one completion: a refusal or an answer cut off at the token limit is never used,
    whatever its text holds; otherwise :func:`_parse`. Raises :class:`InvalidOutput` (``kind``)."""
    if comp.refusal:
        raise InvalidOutput(refusal_reason(comp.text, comp.stop_reason), kind="refusal")
    if comp.cut_off:
        raise InvalidOutput(f"it was cut off at the token limit (max_tokens {s['max_tokens']})", kind="cut_off")
    return _parse(comp.text, s)


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _parse(text: str, s: dict[str, Any]) -> tuple[VisualPrompt, int]:
    return parse_prompt(text, clip_limit=int(s["clip_token_limit"]), drop_music_words=bool(s["drop_music_words"]),
                        drop_gibberish=bool(s.get("drop_gibberish")),
                        default_negative=str(s.get("negative_prompt") or DEFAULT_NEGATIVE_PROMPT))


def _settings(provider: LLMProvider | None, settings: dict[str, Any] | None) -> dict[str, Any]:
    hint = getattr(provider, "prompt_settings", None) or {}
    return {**DEFAULTS, **hint, **(settings or {})}


def _repair_turns(req: PromptRequest, comp: Completion, reason: str) -> list[dict[str, Any]]:
    return req.messages + [
        {"role": "assistant", "content": comp.text[:3000]},
        {"role": "user", "content": (
            f"That answer cannot be used: {reason}. Reply again with only the JSON object with the keys "
            "title, image_prompt, negative_prompt, palette and description."
        )},
    ]


async def write_prompt(
    provider: LLMProvider,
    *,
    features: dict[str, Any] | None,
    abc: str | None,
    mode: str,
    temperature: float,
    seed: int,
    settings: dict[str, Any] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Write one visual prompt.

    Parameters
    ----------
    provider : LLMProvider
        From :func:`m2i.prompts.providers.get_provider`.
    features : dict or None
        The sample's feature record (full or legacy form).
    abc : str or None
        The sample's ABC transcription.
    mode : {"convergent", "divergent"}
        The prompt's mode.
    temperature : float
        The mode's temperature (0.4 and 0.8 by default).
    seed : int
        The prompt's seed.
    settings : dict or None
        Overrides of :data:`m2i.prompts.template.DEFAULTS` (``max_tokens``, ``abc_chars``,
        ``include_spectrogram``, ``max_output_retries``, ``clip_token_limit``, ``system_prompt``,
        ``style``, ``drop_music_words``, ``negative_prompt``); they take precedence over the
        provider's ``prompt_settings``.
    label : str or None
        Which prompt this is, for the log (the generate stage passes ``"prompt 12 (sample 3, slot 4)"``).

    Returns
    -------
    dict
        ``title, text, image_prompt, negative_prompt, palette, image_prompt_tokens, realised_by,
        provider, model, tokens_in, tokens_out, latency_ms, cost_usd, llm_attempts, raw``:
        columns of the ``prompt`` table. Token counts, latency, cost and attempts add up every
        request this prompt took.

    Raises
    ------
    InputError
        Unknown mode or a temperature outside [0, 2].
    ProviderError
        The provider failed (``retryable`` as the provider said); or (``retryable=False``) the
        model refused, or no valid answer came within ``1 + max_output_retries`` answers (answers
        cut off at the token limit count among them); the message gives the reason, quoting a
        refusal, ``exc.raw`` holds the last answer, ``exc.attempts`` the calls made and
        ``exc.spent`` the :func:`spent_columns` of the answers that came.

    Examples
    --------
    >>> row = await write_prompt(provider, features=f, abc=abc, mode="divergent",
    ...                          temperature=0.8, seed=7)  # doctest: +SKIP
    >>> row["realised_by"]  # doctest: +SKIP
    'temperature'
    """
    s = _settings(provider, settings)
    req = build_request(features, abc, mode=mode, temperature=temperature, seed=seed, settings=s)
    answers = 1 + max(0, int(s["max_output_retries"]))
    comps: list[Completion] = []
    messages = req.messages
    reason = ""
    for k in range(answers):
        named = request_label.set(label)
        try:
            comp = await provider.complete(
                messages,
                temperature=req.temperature,
                seed=req.seed + k * RETRY_SEED_STEP,
                max_tokens=req.max_tokens,
                system=req.system,
                json_schema=req.json_schema,
                instruction=req.instruction,
            )
        except ProviderError as exc:
            spent = sum(c.attempts for c in comps) + int(getattr(exc, "attempts", 1))
            exc.attempts = spent  # type: ignore[attr-defined]
            exc.spent = spent_columns(comps)  # type: ignore[attr-defined]
            exc.raw = redact(comps[-1].raw if comps else "")  # type: ignore[attr-defined]
            raise
        finally:
            request_label.reset(named)
        comps.append(comp)
        try:
            vp, tokens = _judge(comp, s)
        except InvalidOutput as exc:
            reason = exc.reason
            log.info("%s %s answer %d of %d%s invalid: %s", provider.name, provider.model, k + 1, answers,
                     f" for {label}" if label else "", redact(reason))
            if exc.kind == "refusal":  # asking again is pointless and costs money
                raise _gave_up(f"{provider.name} model {provider.model} gave no visual prompt; {reason}", comps) from exc
            repairable = s["style"] == "json" and exc.kind == "invalid"
            messages = _repair_turns(req, comp, reason) if repairable else req.messages
            continue
        return prompt_columns(vp, tokens, provider=provider.name, comps=comps)
    if all(c.cut_off for c in comps):
        fix = "; raise max_tokens (in m2i.toml or M2I_MAX_TOKENS) for a new run (`m2i run --new`)"
        if any(_reasoned(c) for c in comps):
            fix = (", spent on its reasoning: raise max_tokens well above what it reasons (in m2i.toml or "
                   "M2I_MAX_TOKENS) for a new run (`m2i run --new`), or use a model that does not think first")
        raise _gave_up(
            f"{provider.name} model {provider.model} gave no usable visual prompt: the model's answers were cut off "
            f"at the token limit (max_tokens {req.max_tokens}) {len(comps)} times{fix}", comps)
    raise _gave_up(f"{provider.name} model {provider.model} gave no usable visual prompt in {answers} answers; "
                   f"the last one failed because {reason}", comps)


def _reasoned(comp: Completion) -> bool:
    """The answer is (or began with) a thinking model's reasoning: in its text as ``<think>``, or
    beside it in the response (Ollama's ``thinking``, vLLM's ``reasoning_content``)."""
    raw = comp.raw or ""
    return opens_reasoning(comp.text) or any(f'"{key}":' in raw for key in ("thinking", "reasoning_content", "reasoning"))


def _gave_up(message: str, comps: list[Completion]) -> ProviderError:
    """The non-retryable error for a prompt that got no usable answer: the calls it made and the last answer."""
    err = ProviderError(_sentence(redact(message)))
    err.attempts = sum(c.attempts for c in comps)  # type: ignore[attr-defined]
    err.spent = spent_columns(comps)  # type: ignore[attr-defined]
    err.raw = redact(comps[-1].raw if comps else "")  # type: ignore[attr-defined]
    return err
