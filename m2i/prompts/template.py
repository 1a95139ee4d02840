"""The one prompt template: a shared system prompt and a per-clip user message.

The system prompt is identical for every request of a run (so providers can cache it). The user
message holds the eight musical features (through :func:`m2i.features.describe`, so legacy rows
work), the ABC transcription (first ``abc_chars`` characters) and, when asked for, the
mel-spectrogram summary. Convergent and divergent requests are the same text; they differ in
temperature. The two mode instructions below are added only where a model cannot take a
temperature (or when ``always_instruct`` is configured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from m2i.errors import InputError
from m2i.features import describe, stated_abc, summarize

Mode = Literal["convergent", "divergent"]

SYSTEM_PROMPT = """\
You turn a short piece of music into one image. You write the prompt that a text-to-image model \
(Stable Diffusion XL) will read, from the musical features you are given.

Reply with one JSON object and nothing else, with exactly these keys:
- "title": 2 to 6 words naming the image.
- "image_prompt": one line of at most 40 words that Stable Diffusion XL will read. Concrete and \
visual only: the subject, the setting, the light, the colours, the composition, the medium or \
style. Comma-separated phrases are fine. No music words (no notes, keys, tempo, instruments, \
sound), no abstract feelings without something visible that carries them.
- "negative_prompt": a few comma-separated things the image must not show.
- "palette": a list of 3 to 6 colour names.
- "description": 2 to 4 sentences saying what the image shows and which musical features led to \
which visual choices.

Let the features drive the picture: tonality and mood set the emotional colour, tempo and \
dynamics the energy and motion, the melodic contour the main lines and shapes, the harmonic \
progression the tension and resolution. Do not repeat yourself."""

MODE_INSTRUCTIONS: dict[str, str] = {
    "convergent": (
        "Mode: convergent. Choose the most fitting, expected imagery for these features, the "
        "picture most listeners would agree on; keep it literal, coherent and conventional."
    ),
    "divergent": (
        "Mode: divergent. Choose a surprising, unusual visual idea that still fits these "
        "features; avoid the first idea that comes to mind and avoid cliches."
    ),
}
"""Documented instructions that realise the two modes where temperature cannot be sent."""

PROMPT_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 80},
        "image_prompt": {"type": "string", "minLength": 1, "maxLength": 400},
        "negative_prompt": {"type": "string", "maxLength": 200},
        "palette": {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 1, "maxItems": 6},
        "description": {"type": "string", "minLength": 1, "maxLength": 700},
    },
    "required": ["title", "image_prompt", "negative_prompt", "palette", "description"],
    "additionalProperties": False,
}
"""JSON schema of the answer, sent where the API supports structured output."""

LINES_SYSTEM_PROMPT = (
    "You are an art director. For a piece of music you invent one picture that a painter could paint. "
    "Answer in exactly three lines: Title, Image, About. Image lists only visible things: places, objects, "
    "weather, light, colours, style. Never mention music, notes or sound in Image."
)
"""The short system prompt for small local models (``style="lines"``)."""

LINES_EXAMPLE = (
    "Music: key: D minor; tempo: 60 BPM; mood: sad, calm; melody: descending; dynamics: soft.",
    "Title: Harbour at dusk\n"
    "Image: a quiet harbour at dusk, violet fog over dark water, a lantern on a wooden pier, soft golden light, "
    "oil painting\n"
    "About: The slow sad music becomes fog and still water, and the lonely lantern is the melody.",
)
"""One worked exchange (user, assistant) put before the clip's message in ``style="lines"``: small
models follow a shown answer far better than a described one. The answer's three labelled lines
are read by :func:`m2i.prompts.parse.parse_prompt`; the negative prompt is the default one and the
palette is read from the colours the lines name."""

DEFAULT_NEGATIVE_PROMPT = "text, letters, watermark, signature, blurry, low quality, deformed"

DEFAULTS: dict[str, Any] = {
    "max_tokens": 400,
    "abc_chars": 400,
    "include_spectrogram": False,
    "always_instruct": False,
    "max_output_retries": 2,
    "clip_token_limit": 75,
    "style": "json",
    "drop_music_words": False,
    "drop_gibberish": False,
}
"""Settings :func:`m2i.prompts.generate.write_prompt` reads. Precedence: these defaults, then the
provider's ``prompt_settings`` (the local model asks for ``style="lines"``), then ``settings``.
``style="lines"`` uses :data:`LINES_SYSTEM_PROMPT`, :data:`LINES_EXAMPLE` and the compact user
message, and asks for three labelled lines instead of JSON."""


@dataclass
class PromptRequest:
    """Everything one request needs, independent of the provider."""

    system: str
    messages: list[dict[str, Any]]
    mode: Mode
    temperature: float
    seed: int
    max_tokens: int
    instruction: str
    json_schema: dict[str, Any] | None = field(default_factory=lambda: PROMPT_JSON_SCHEMA)


def user_message(features: dict[str, Any] | None, abc: str | None, *, abc_chars: int = 400,
                 include_spectrogram: bool = False) -> str:
    """The per-clip user message.

    Parameters
    ----------
    features : dict or None
        The sample's feature record (full or legacy form).
    abc : str or None
        ABC transcription; cut to ``abc_chars`` characters at a line end, and left out when the
        melody it transcribes was not heard (:func:`m2i.features.stated_abc`).
    abc_chars : int
        How much ABC to include (0 leaves it out).
    include_spectrogram : bool
        Add ``features["spectrogram"]`` (a text summary) when present.
    """
    lines = ["Musical features of a 10-second clip:", describe(features) or "(no features)"]
    if include_spectrogram and isinstance((features or {}).get("spectrogram"), str):
        lines += ["", "Mel-spectrogram summary:", str(features["spectrogram"]).strip()]  # type: ignore[index]
    abc = stated_abc(features, abc)
    if abc and abc_chars > 0:
        text = abc.strip()
        if len(text) > abc_chars:
            cut = text.rfind("\n", 0, abc_chars)
            text = text[: cut if cut > 0 else abc_chars].rstrip()
        lines += ["", "ABC transcription of the melody:", text]
    lines += ["", "Write the JSON object for this clip."]
    return "\n".join(lines)


def compact_user_message(features: dict[str, Any] | None) -> str:
    """One line of features for small models: ``Music: key: F# minor; tempo: 96 BPM; ...``."""
    s = summarize(features)
    parts = []
    key = " ".join(p for p in (s["key"], s["tonality"]) if p)
    if key:
        parts.append(f"key: {key}")
    for name, label in (("tempo", "tempo"), ("time_signature", "time signature"), ("mood", "mood"),
                        ("melody_contour", "melody"), ("harmonic_progression", "harmony"),
                        ("dynamic_intensity", "dynamics")):
        if s[name]:
            parts.append(f"{label}: {s[name]}")
    return "Music: " + ("; ".join(parts) or "unknown") + "."


def build_request(features: dict[str, Any] | None, abc: str | None, *, mode: str, temperature: float,
                  seed: int, settings: dict[str, Any] | None = None) -> PromptRequest:
    """Assemble the request for one prompt.

    Raises
    ------
    InputError
        For an unknown ``mode`` or a temperature outside [0, 2].
    """
    s = {**DEFAULTS, **(settings or {})}
    if mode not in MODE_INSTRUCTIONS:
        raise InputError(f"Prompt mode {mode!r} is unknown: use 'convergent' or 'divergent'.")
    if not 0.0 <= float(temperature) <= 2.0:
        raise InputError(f"Temperature {temperature!r} is outside [0, 2]: pick a value such as 0.4 or 0.8.")
    if s["style"] == "lines":
        content = compact_user_message(features)
        default_system = LINES_SYSTEM_PROMPT
    elif s["style"] == "json":
        content = user_message(features, abc, abc_chars=int(s["abc_chars"]),
                               include_spectrogram=bool(s["include_spectrogram"]))
        default_system = SYSTEM_PROMPT
    else:
        raise InputError(f"Prompt style {s['style']!r} is unknown: use 'json' or 'lines'.")
    messages = [{"role": "user", "content": content}]
    if s["style"] == "lines":
        messages = [{"role": "user", "content": LINES_EXAMPLE[0]},
                    {"role": "assistant", "content": LINES_EXAMPLE[1]}] + messages
    return PromptRequest(
        system=str(s.get("system_prompt") or default_system),
        messages=messages,
        mode=mode,  # type: ignore[arg-type]
        temperature=float(temperature),
        seed=int(seed),
        max_tokens=int(s["max_tokens"]),
        instruction=MODE_INSTRUCTIONS[mode],
        json_schema=PROMPT_JSON_SCHEMA if s["style"] == "json" else None,
    )
