"""Turn a model's answer into a validated visual prompt.

Order of attempts on one answer: the first JSON object in the text (code fences and chatter
around it ignored); the same after mechanical repairs (smart quotes, trailing commas, a string or
braces cut off by the token limit); and for a model that does not write JSON, ``Key: value``
lines. The result is validated with pydantic. An answer that loops (a phrase repeated over and
over) or lacks an ``image_prompt`` raises :class:`InvalidOutput`, and the caller asks again.

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
    """The answer cannot be turned into a visual prompt; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


def _first_object(text: str) -> str | None:
    start = text.find("{")
    if start < 0:
        return None
    depth = 0
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
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return text[start:]  # unterminated: left for repair


def _repair(obj: str) -> str:
    s = obj.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    s = re.sub(r",\s*([}\]])", r"\1", s)
    # close a string and brackets cut off by the token limit
    in_str = False
    esc = False
    stack: list[str] = []
    for c in s:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]" and stack:
            stack.pop()
    if in_str:
        s += '"'
    s = re.sub(r",\s*$", "", s.rstrip())
    if re.search(r'"\s*:\s*$', s):
        s += '""'
    return s + "".join(reversed(stack))


def _load_json(text: str) -> dict[str, Any] | None:
    cleaned = re.sub(r"```(?:json)?", "", text)
    obj = _first_object(cleaned)
    if obj is None:
        return None
    for candidate in (obj, _repair(obj)):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return {str(k).strip().lower().replace(" ", "_"): v for k, v in data.items()}
    return None


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
        Empty answer, no ``image_prompt`` found, or a repetition loop.
    """
    if not text or not text.strip():
        raise InvalidOutput("the answer was empty")
    data = _load_json(text)
    if data is None:
        data = _from_lines(text)
    if "image_prompt" not in data:
        for alias in ("prompt", "visual_prompt", "imageprompt"):
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
            raise InvalidOutput(f"the {name} loops on the phrase {loop!r}")
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
