"""Turn a model's answer into a validated visual prompt.

Order of attempts on one answer: the first JSON object in the text (code fences and chatter
around it ignored; one object in a list, or in a list under a key, is that object); the same after
mechanical repairs (smart quotes, trailing commas); and for a model that does not write JSON,
``Key: value`` lines. The result is validated with pydantic. An answer that is empty, refuses,
holds several prompts, stops before its JSON object ends, loops (a phrase repeated over and over)
or lacks an ``image_prompt`` raises :class:`InvalidOutput` with a ``kind`` the caller acts on.

Post-processing, applied to every valid answer: whitespace collapsed, repeated comma-separated
phrases in ``image_prompt`` dropped, ``image_prompt`` cut at a word boundary to fit the CLIP
token limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError, field_validator

from m2i.prompts.clip_tokens import count_clip_tokens, fit_clip_tokens


class InvalidOutput(ValueError):
    """The answer cannot be turned into a visual prompt; ``reason`` says why.

    ``kind`` tells the caller what to do: ``"refusal"`` (the model declined: asking again is
    pointless), ``"cut_off"`` (the answer stopped at the token limit: ask afresh), ``"empty"``,
    ``"loop"`` (ask afresh) or ``"invalid"`` (anything else: worth showing the model its answer).
    """

    def __init__(self, reason: str, kind: str = "invalid"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class VisualPrompt(BaseModel):
    """The validated answer."""

    title: str = ""
    image_prompt: str
    negative_prompt: str = ""
    palette: list[str] = []
    description: str = ""

    @field_validator("title", "image_prompt", "negative_prompt", "description", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, (list, tuple)):
            v = ", ".join(str(x) for x in v)
        return " ".join(str(v).split()).strip().strip('"').strip()

    @field_validator("palette", mode="before")
    @classmethod
    def _palette(cls, v: Any) -> list[str]:
        if v is None:
            return []
        if isinstance(v, str):
            v = re.split(r"[,;/\n]|\band\b", v)
        if isinstance(v, dict):
            v = list(v.values())
        out: list[str] = []
        for item in v:
            name = " ".join(str(item).split()).strip(" .-*\"'")
            if name and name.lower() not in (o.lower() for o in out):
                out.append(name)
        return out[:8]

    @field_validator("image_prompt")
    @classmethod
    def _required(cls, v: str) -> str:
        if not v:
            raise ValueError("image_prompt is empty")
        return v


_KEYS = {
    "title": "title",
    "image prompt": "image_prompt",
    "image_prompt": "image_prompt",
    "prompt": "image_prompt",
    "visual prompt": "image_prompt",
    "negative prompt": "negative_prompt",
    "negative_prompt": "negative_prompt",
    "negative": "negative_prompt",
    "palette": "palette",
    "colour palette": "palette",
    "color palette": "palette",
    "colors": "palette",
    "colours": "palette",
    "description": "description",
    "image": "image_prompt",
    "about": "description",
}

COLOUR_WORDS = (
    "amber azure beige black blue bronze brown burgundy charcoal cobalt copper coral cream crimson cyan ebony "
    "emerald gold golden gray green grey indigo ivory jade lavender lilac magenta maroon mauve navy ochre olive "
    "orange peach pink plum purple red rose ruby rust saffron scarlet sepia silver slate tan teal turquoise "
    "ultramarine umber vermilion violet white yellow"
).split()
"""Colour names the palette is read from when an answer has none."""

MUSIC_WORDS = frozenset(
    "music musical musician musicians melody melodies melodic song songs sing sings singing sung sound sounds "
    "note notes tempo bpm chord chords crescendo diminuendo harmony harmonic rhythm rhythmic minor major "
    "piano violin guitar lute cello drum drums instrument instruments composer tune tunes audio beat beats "
    "key keys tonality chromatic".split()
)
"""Words that make an ``image_prompt`` phrase about sound rather than sight (``drop_music_words``)."""
_LINE = re.compile(r"^\s*[-*#>\s]*\**\s*\"?([A-Za-z _]{4,20}?)\"?\s*\**\s*[:=]\s*(.*)$")


_OPEN = {"{": "}", "[": "]"}


def _span(text: str, start: int) -> tuple[str, bool]:
    """The JSON value that opens at ``text[start]`` (``{`` or ``[``) and whether it closes."""
    stack: list[str] = []
    in_str = False
    esc = False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in _OPEN:
            stack.append(_OPEN[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return text[start : i + 1], True
    return text[start:], False


def _repair(obj: str) -> str:
    """Smart quotes made straight and trailing commas dropped (what models get wrong in JSON)."""
    s = obj.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    return re.sub(r",\s*([}\]])", r"\1", s)


def _loads(candidate: str) -> Any:
    for text in (candidate, _repair(candidate)):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            continue
    return None


PROMPT_ALIASES = ("prompt", "visual_prompt", "imageprompt")
"""Other names models give ``image_prompt`` in JSON (keys lower-cased, spaces as underscores)."""


def _keys(data: dict[Any, Any]) -> dict[str, Any]:
    return {str(k).strip().lower().replace(" ", "_"): v for k, v in data.items()}


def _holds_objects(v: Any) -> bool:
    return isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict) for x in v))


def _one_prompt(data: Any) -> dict[str, Any] | None:
    """The one prompt object in ``data``: the object itself, or the single object of a list, bare
    or under a key (``{"prompts": [{...}]}``).

    Raises
    ------
    InvalidOutput
        The list holds several prompts (m2i asks for one per request).
    """
    for _ in range(3):  # a wrapper in a wrapper at most
        if isinstance(data, list):
            objects = [x for x in data if isinstance(x, dict)]
            if len(objects) > 1:
                raise InvalidOutput(f"the answer holds {len(objects)} prompts in a list, and m2i asks for "
                                    "one prompt per request")
            if not objects:
                return None
            data = objects[0]
        if not isinstance(data, dict):
            return None
        if any(k in ("image_prompt", *PROMPT_ALIASES) and not _holds_objects(v) for k, v in _keys(data).items()):
            return data
        nested = [v for v in data.values() if _holds_objects(v)]
        if len(nested) != 1:
            return data
        data = nested[0]
    return data if isinstance(data, dict) else None


def _load_json(text: str) -> dict[str, Any] | None:
    """The answer's one prompt object with normalised keys; ``None`` when it holds no JSON.

    Raises
    ------
    InvalidOutput
        The JSON stops before its end (``kind="cut_off"``), or holds several prompts.
    """
    cleaned = re.sub(r"```(?:json)?", "", text)
    brace = cleaned.find("{")
    bracket = cleaned.find("[")
    if 0 <= bracket and (brace < 0 or bracket < brace):
        span, closed = _span(cleaned, bracket)
        if not closed and cleaned[bracket + 1 :].lstrip().startswith("{"):
            raise InvalidOutput("the answer stops before its JSON list ends", kind="cut_off")
        data = _loads(span) if closed else None
        if isinstance(data, list):
            found = _one_prompt(data)
            if found is not None:
                return _keys(found)
    if brace < 0:
        return None
    span, closed = _span(cleaned, brace)
    if not closed:
        if cleaned[brace + 1 :].lstrip()[:1] not in ('"', "\u201c", ""):
            return None  # a stray brace in plain text, not a JSON object
        raise InvalidOutput("the answer stops before its JSON object ends", kind="cut_off")
    found = _one_prompt(_loads(span))
    return None if found is None else _keys(found)


_REASONING = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.S | re.I)
_REASONING_END = re.compile(r"</(?:think|thinking|reasoning)>", re.I)
_REASONING_OPEN = re.compile(r"^\s*<(?:think|thinking|reasoning)>", re.I)


def opens_reasoning(text: str) -> bool:
    """The text begins with a thinking model's reasoning block (``<think>``, ``<thinking>``, ``<reasoning>``)."""
    return bool(_REASONING_OPEN.match(text))


def drop_reasoning(text: str) -> str:
    """The answer without the reasoning a thinking model writes before it (qwen3, DeepSeek-R1 and
    gpt-oss served without a reasoning parser put it in the text as ``<think>...</think>``; some
    templates open the block in the prompt, so only ``</think>`` appears). A draft JSON object in
    the reasoning is not the answer.

    Raises
    ------
    InvalidOutput
        ``kind="cut_off"``: the text is all reasoning, its block never closed.
    """
    text = _REASONING.sub("", text)
    ends = list(_REASONING_END.finditer(text))
    if ends:
        text = text[ends[-1].end():]
    elif opens_reasoning(text):
        raise InvalidOutput("the answer stops inside the model's reasoning (<think> never closed), before any "
                            "visual prompt", kind="cut_off")
    if not text.strip():
        raise InvalidOutput("the answer holds only the model's reasoning, no visual prompt", kind="empty")
    return text


def _from_lines(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    current: str | None = None
    for line in text.splitlines():
        m = _LINE.match(line)
        key = _KEYS.get(m.group(1).strip().lower()) if m else None
        if m and key:
            current = key
            fields[key] = m.group(2).strip().strip("*").strip()
        elif current and line.strip() and current in ("description", "image_prompt"):
            fields[current] = f"{fields[current]} {line.strip()}".strip()
        elif not line.strip():
            current = None
    return fields


_REFUSAL = re.compile(
    r"^[\W_]*(?:unfortunately,?\s+)?(?:"
    r"i(?:'m| am) sorry|sorry,? (?:but )?i\b|i apologi[sz]e|"
    r"i (?:can't|cannot|can not|won't|will not|must decline|am unable|am not able)|"
    r"i'm (?:unable|not able)|as an ai\b)",
    re.IGNORECASE,
)
"""How a chat model opens a refusal ("I'm sorry, but I can't help with that.")."""


def is_refusal(text: str) -> bool:
    """Whether an answer with no prompt in it is worded as a refusal."""
    return bool(_REFUSAL.match((text or "").replace("\u2019", "'")))


def refusal_reason(text: str, stop_reason: str | None = None) -> str:
    """``"the model refused: <the first 120 characters of its answer>"``."""
    said = " ".join((text or "").split())[:120]
    if not said:
        return f"the model refused (stop reason {stop_reason or 'refusal'}, no text)"
    return f"the model refused: {said}"


def find_loop(text: str, *, n: int = 3, max_repeats: int = 3) -> str | None:
    """The phrase of ``n`` words that ``text`` repeats more than ``max_repeats`` times, if any."""
    words = re.findall(r"[\w']+", text.lower())
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] > max_repeats:
            return " ".join(gram)
    return None


def _dedupe_phrases(prompt: str) -> str:
    seen: set[str] = set()
    parts = []
    for part in prompt.split(","):
        key = " ".join(part.lower().split())
        if key and key not in seen:
            seen.add(key)
            parts.append(part.strip())
    return ", ".join(parts)


def palette_from_text(*texts: str, limit: int = 6) -> list[str]:
    """Colour names mentioned in ``texts``, in order of first mention."""
    found: list[str] = []
    for text in texts:
        for word in re.findall(r"[a-z]+", (text or "").lower()):
            if word in COLOUR_WORDS and word not in found:
                found.append(word)
    return found[:limit]


NOTATION = re.compile(r"(?<![\w-])(?:[A-Za-z#]{1,3}\d?-){2,}[A-Za-z#]{1,3}\d?(?![\w-])")
"""Chord or key chains a small model copies from the features ("I-vi-V-I", "Mf-Mv-mF")."""


def drop_music_phrases(prompt: str) -> str:
    """Remove the comma-separated phrases of ``prompt`` that talk about music or sound, and
    chord or key chains copied from the features."""
    keep = []
    for phrase in prompt.split(","):
        phrase = re.sub(r"\s{2,}", " ", NOTATION.sub("", phrase)).strip(" .;:")
        if re.fullmatch(r"[ivIV#b\d ]*", phrase):
            continue  # nothing left, or a lone Roman numeral
        if not MUSIC_WORDS.intersection(re.findall(r"[a-z]+", phrase.lower())):
            keep.append(phrase)
    return ", ".join(keep)


def drop_gibberish_phrases(prompt: str, *, max_pieces: int = 3) -> str:
    """Remove phrases holding a word that CLIP's 49k-word BPE splits into ``max_pieces`` or more
    pieces: run-together or invented words a small model writes ("thatsntnadc", "izhitha")."""
    keep = []
    for phrase in prompt.split(","):
        words = [w for w in re.split(r"[\s-]+", phrase.strip().lower()) if w]
        if words and all(count_clip_tokens(w) < max_pieces for w in words):
            keep.append(phrase.strip())
    return ", ".join(keep)


def parse_prompt(text: str, *, clip_limit: int = 75, drop_music_words: bool = False,
                 drop_gibberish: bool = False, default_negative: str = "") -> tuple[VisualPrompt, int]:
    """Validate one answer and fit its ``image_prompt``.

    Parameters
    ----------
    text : str
        The assistant text.
    clip_limit : int
        CLIP token budget of ``image_prompt``.
    drop_music_words : bool
        Remove ``image_prompt`` phrases about music or sound (for small models); an answer left
        with fewer than two phrases is invalid.
    drop_gibberish : bool
        Remove ``image_prompt`` phrases with run-together or invented words (for small models).
    default_negative : str
        Negative prompt for answers that have none.

    Returns
    -------
    (VisualPrompt, int)
        The prompt and the CLIP token count of its (fitted) ``image_prompt``.

    Raises
    ------
    InvalidOutput
        An empty answer, a refusal, a JSON object cut off before its end, several prompts in a
        list, no ``image_prompt`` found, or a repetition loop; ``kind`` says which.
    """
    if not text or not text.strip():
        raise InvalidOutput("the answer was empty", kind="empty")
    text = drop_reasoning(text)
    data = _load_json(text)
    if data is None:
        data = _from_lines(text)
        if not data.get("image_prompt") and is_refusal(text):
            raise InvalidOutput(refusal_reason(text), kind="refusal")
    if "image_prompt" not in data:
        for alias in PROMPT_ALIASES:
            if alias in data:
                data["image_prompt"] = data.pop(alias)
    if not data.get("image_prompt"):
        raise InvalidOutput("the answer has no image_prompt (expected one JSON object with the five keys)")
    try:
        vp = VisualPrompt.model_validate(data)
    except ValidationError as exc:
        raise InvalidOutput(f"the answer does not validate: {exc.errors()[0]['msg']}") from exc
    for name in ("image_prompt", "description", "title"):
        loop = find_loop(getattr(vp, name))
        if loop:
            raise InvalidOutput(f"the {name} loops on the phrase {loop!r}", kind="loop")
    if not vp.title:
        first = " ".join(vp.image_prompt.split(",")[0].split()[:6])
        vp.title = first[:1].upper() + first[1:]
    if not vp.description:
        vp.description = vp.image_prompt
    if drop_music_words:
        kept = drop_music_phrases(vp.image_prompt)
        if len([p for p in kept.split(",") if p.strip()]) < 2:
            raise InvalidOutput("the image_prompt describes music or sound instead of a picture")
        vp.image_prompt = kept
    if drop_gibberish:
        kept = drop_gibberish_phrases(vp.image_prompt)
        if len([p for p in kept.split(",") if p.strip()]) < 2:
            raise InvalidOutput("the image_prompt is mostly run-together or invented words")
        vp.image_prompt = kept
    if not vp.palette:
        vp.palette = palette_from_text(vp.image_prompt, vp.description)
    if not vp.negative_prompt:
        vp.negative_prompt = default_negative
    vp.image_prompt = fit_clip_tokens(_dedupe_phrases(vp.image_prompt), clip_limit)
    if not vp.image_prompt:
        raise InvalidOutput("the image_prompt is empty after fitting it to the CLIP token limit")
    return vp, count_clip_tokens(vp.image_prompt)
