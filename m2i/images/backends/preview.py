"""The ``preview`` backend: draw the music itself, fast, with numpy and Pillow.

For machines without a GPU or without SDXL weights. It is not an image model and never claims to
be one: rows record ``backend="preview"`` and ``model="m2i-preview-1"``, and every picture carries
a small "m2i preview" caption.

Conventions (what each feature controls)
----------------------------------------
- **Key** sets the hue: the tonic's place on the circle of fifths (C at 0 deg, G at 30 deg, ...),
  so related keys get related colours. **Tonality**: minor is cooler and darker, major warmer and
  lighter.
- **Mood**: valence lightens and warms the palette, arousal saturates it and strengthens the
  bands and particles. Legacy mood words ("upbeat, dark") are mapped through a small lexicon.
- **Tempo** sets the motion and density: the number of diagonal bands and of particles grows
  with BPM.
- **Melody contour** is drawn as a glowing line across the picture (ascending, descending, arch,
  valley, wave, flat), its height span from the pitch range.
- **Dynamics** set the brightness (pp dark .. ff bright, or the measured loudness), and a
  crescendo/decrescendo brightens the picture towards the right/left.
- The job's seed places the particles and the band phase, so the five prompts of one sample
  give five related but different pictures, and the same seed gives the same pixels.
"""

from __future__ import annotations

import colorsys
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from m2i.errors import BackendError
from m2i.features import summarize
from m2i.images.backends.base import ImageBackend, failed, job_problem
from m2i.images.jobs import ImageJob, RenderedImage
from m2i.images.png import OutputUnwritable, png_text, save_png

log = logging.getLogger(__name__)

PREVIEW_MODEL = "m2i-preview-1"
MAX_SIDE = 4096

_PITCH = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_POSITIVE = {
    "bright",
    "happy",
    "joyful",
    "upbeat",
    "cheerful",
    "playful",
    "warm",
    "hopeful",
    "uplifting",
    "triumphant",
    "serene",
    "peaceful",
    "calm",
    "tender",
    "romantic",
    "light",
    "sunny",
}
_NEGATIVE = {
    "dark",
    "sad",
    "melancholic",
    "melancholy",
    "gloomy",
    "tense",
    "somber",
    "sombre",
    "angry",
    "anxious",
    "ominous",
    "eerie",
    "dramatic",
    "mournful",
    "brooding",
    "menacing",
    "bleak",
}
_ENERGETIC = {
    "energetic",
    "upbeat",
    "driving",
    "intense",
    "aggressive",
    "excited",
    "dramatic",
    "tense",
    "angry",
    "fast",
    "powerful",
    "triumphant",
    "playful",
    "frantic",
    "agitated",
}
_CALM = {
    "calm",
    "peaceful",
    "serene",
    "relaxed",
    "soft",
    "gentle",
    "tender",
    "dreamy",
    "mellow",
    "slow",
    "sad",
    "melancholic",
    "melancholy",
    "moderate",
}
_DYNAMICS = {
    "ppp": 0.05,
    "pp": 0.15,
    "p": 0.3,
    "mp": 0.45,
    "mf": 0.6,
    "f": 0.75,
    "ff": 0.9,
    "fff": 1.0,
    "soft": 0.25,
    "quiet": 0.2,
    "moderate": 0.55,
    "medium": 0.55,
    "loud": 0.8,
    "intense": 0.8,
    "very_intense": 0.95,
    "very intense": 0.95,
}


@dataclass(frozen=True)
class Look:
    """The numbers a picture is drawn from (all derived from the features)."""

    hue: float  # [0, 1)
    minor: bool
    valence: float  # [0, 1]
    arousal: float  # [0, 1]
    tempo: float  # BPM
    contour: str  # ascending | descending | arch | valley | wave | flat
    span: float  # [0, 1] share of the height the melody line covers
    dynamics: float  # [0, 1]
    trend: str  # crescendo | decrescendo | ""
    label: str


def _number(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def look_of(features: dict[str, Any] | str | None) -> Look:
    """Derive the drawing parameters from a feature record (full or legacy form).

    A record still serialised as JSON text is parsed; anything that is not a feature object
    draws the neutral picture.
    """
    if isinstance(features, (str, bytes)):
        try:
            features = json.loads(features)
        except ValueError:
            features = None
    s = summarize(features if isinstance(features, dict) else None)
    key = s["key"].strip()
    pc = None
    if key and key[0].upper() in _PITCH:
        pc = _PITCH[key[0].upper()] + key[1:].count("#") - key[1:].count("b")
    hue = (((pc * 7) % 12) / 12.0) if pc is not None else 0.58
    minor = s["tonality"].lower().startswith("min")

    mood = s["mood"].lower()
    words = set(re.findall(r"[a-z_]+", mood))
    valence = _number(r"valence\s+([0-9.]+)", mood)
    arousal = _number(r"arousal\s+([0-9.]+)", mood)
    if valence is None:
        pos, neg = len(words & _POSITIVE), len(words & _NEGATIVE)
        valence = 0.5 + 0.2 * (pos - neg)
        valence += -0.1 if minor else 0.1
    if arousal is None:
        hi, lo = len(words & _ENERGETIC), len(words & _CALM)
        arousal = 0.5 + 0.2 * (hi - lo)
    valence = min(1.0, max(0.0, valence))
    arousal = min(1.0, max(0.0, arousal))

    tempo = _number(r"([0-9]+(?:\.[0-9]+)?)", s["tempo"]) or 100.0
    tempo = min(240.0, max(30.0, tempo))

    contour_text = s["melody_contour"].lower()
    contour = "wave"
    for shape, names in (
        ("ascending", ("ascend", "rising", "rise", "upward")),
        ("descending", ("descend", "falling", "fall", "downward")),
        ("valley", ("valley", "inverted", "u-shape", "bowl")),
        ("arch", ("arch", "hill", "peak")),
        ("flat", ("flat", "static", "stationary", "monoton")),
        ("wave", ("wave", "undulat", "zigzag", "oscillat")),
    ):
        if any(n in contour_text for n in names):
            contour = shape
            break
    rng_semi = _number(r"range\s+([0-9.]+)", contour_text)
    span = min(0.8, max(0.15, (rng_semi if rng_semi is not None else 12.0) / 24.0))

    dyn_text = s["dynamic_intensity"].lower()
    db = _number(r"(-?[0-9.]+)\s*db", dyn_text)
    label_word = dyn_text.split(",")[0].strip()
    if label_word in _DYNAMICS:
        dynamics = _DYNAMICS[label_word]
    elif db is not None:
        dynamics = (db + 40.0) / 35.0  # -40 dBFS dark .. -5 dBFS bright
    else:
        dynamics = 0.6
    dynamics = min(1.0, max(0.0, dynamics))
    trend = (
        "crescendo"
        if "cresc" in dyn_text
        else "decrescendo"
        if ("decresc" in dyn_text or "dimin" in dyn_text)
        else ""
    )

    parts = [p for p in (" ".join(x for x in (s["key"], s["tonality"]) if x), s["tempo"]) if p]
    return Look(
        hue=hue,
        minor=minor,
        valence=valence,
        arousal=arousal,
        tempo=tempo,
        contour=contour,
        span=span,
        dynamics=dynamics,
        trend=trend,
        label=" · ".join(parts),
    )


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, min(1.0, max(0.0, s)), min(1.0, max(0.0, v)))


def _curve(look: Look, t: Any, seed_phase: float) -> Any:
    import numpy as np

    c = look.contour
    if c == "ascending":
        y = t
    elif c == "descending":
        y = 1.0 - t
    elif c == "arch":
        y = np.sin(np.pi * t)
    elif c == "valley":
        y = 1.0 - np.sin(np.pi * t)
    elif c == "flat":
        y = np.full_like(t, 0.5)
    else:
        y = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 * t) + seed_phase)
    # note-to-note wiggle: one bump per beat of a 10 s clip
    beats = look.tempo / 60.0 * 10.0
    y = y + 0.06 * np.sin(2 * np.pi * beats * t / 4.0 + seed_phase) * (0.5 + look.arousal)
    return y


def draw(features: dict[str, Any] | None, *, seed: int, width: int = 512, height: int = 512) -> Any:
    """Draw the preview picture of one sample.

    Parameters
    ----------
    features : dict or None
        The sample's feature record.
    seed : int
        Places particles and band phases.
    width, height : int > 0
        Pixels.

    Returns
    -------
    PIL.Image.Image
        RGB image, identical for identical arguments.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    look = look_of(features)
    rng = np.random.default_rng(int(seed) & ((1 << 63) - 1))
    phase = float(rng.uniform(0, 2 * np.pi))

    # palette: key hue; minor cooler/darker; valence lightens/warms; arousal saturates
    shift = 0.06 if look.minor else -0.04
    sat = 0.35 + 0.5 * look.arousal
    light = 0.35 + 0.35 * look.valence + (0.0 if look.minor else 0.1)
    top = np.array(_hsv(look.hue + shift, sat * 0.8, light * 0.7), np.float32)
    bottom = np.array(_hsv(look.hue - shift, sat, light), np.float32)
    accent = np.array(_hsv(look.hue + 0.5, 0.3 + 0.6 * look.arousal, 0.9), np.float32)
    line_rgb = np.array(_hsv(look.hue + 0.08, 0.25, 1.0), np.float32)

    # Everything is smooth or glowing, so it is drawn at half size and scaled up (4x less work).
    out_w, out_h = width, height
    step = 2 if min(width, height) >= 256 else 1
    width, height = max(1, width // step), max(1, height // step)

    f32 = np.float32
    ys = np.linspace(0.0, 1.0, height, dtype=f32)
    xs = np.linspace(0.0, 1.0, width, dtype=f32)
    grad = top[None, None, :] + (bottom - top)[None, None, :] * ys[:, None, None]  # (H, 1, 3)

    # tempo: diagonal bands, more of them at higher BPM, stronger with arousal.
    # sin(a x + b y + p) = sin(a x + p) cos(b y) + cos(a x + p) sin(b y): two outer products.
    n_bands = 1.0 + look.tempo / 30.0
    angle = 0.35 + 0.5 * look.valence
    ax = (2 * np.pi * n_bands * math.cos(angle) * xs + phase).astype(f32)
    by = (2 * np.pi * n_bands * math.sin(angle) * ys).astype(f32)
    wave = np.outer(np.cos(by), np.sin(ax))
    wave += np.outer(np.sin(by), np.cos(ax))
    strength = 0.08 + 0.22 * look.arousal
    band = (wave + f32(1.0)) * f32(0.5 * strength)
    band *= band * f32(1.0 / max(strength, 1e-6))  # sharpen: strength * b**2
    img = grad + (accent - grad) * band[..., None]

    # particles: density from tempo and arousal
    n = int(40 + look.tempo * (0.6 + 1.4 * look.arousal))
    px = rng.integers(0, width, n)
    py = rng.integers(0, height, n)
    glow = rng.uniform(0.3, 1.0, n).astype(f32)
    r = max(1, round(min(out_w, out_h) / 170 / step))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (dx * dx + dy * dy) <= r * r
    oy = (py[:, None] + dy[disc][None, :]).clip(0, height - 1).ravel()
    ox = (px[:, None] + dx[disc][None, :]).clip(0, width - 1).ravel()
    a = np.repeat(glow, int(disc.sum()))[:, None] * f32(0.8)
    img[oy, ox] = img[oy, ox] * (1.0 - a) + accent[None, :] * a

    # melody contour: a glowing line, computed only in the rows it can reach
    curve = _curve(look, xs, phase)
    y_line = (0.5 * height + (0.5 - curve) * look.span * height).astype(f32)
    thick = (1.5 + 4.0 * look.dynamics * min(out_w, out_h) / 512.0) / step
    reach = thick * 4.0
    r0 = max(0, int(y_line.min() - reach))
    r1 = min(height, int(y_line.max() + reach) + 1)
    rows = np.arange(r0, r1, dtype=f32)[:, None]
    dist = np.abs(rows - y_line[None, :])
    core = np.clip(f32(thick + 1.0) - dist, 0.0, 1.0)
    halo = np.clip(f32(1.0) - dist * f32(1.0 / reach), 0.0, 1.0)
    halo *= halo * f32(0.35)
    alpha = np.maximum(core, halo)[..., None]
    strip = img[r0:r1]
    strip += (line_rgb[None, None, :] - strip) * alpha

    # dynamics: overall brightness, and a ramp for crescendo / decrescendo
    gain = 0.45 + 0.65 * look.dynamics
    if look.trend == "crescendo":
        img *= (gain * (0.7 + 0.6 * xs)).astype(f32)[None, :, None]
    elif look.trend == "decrescendo":
        img *= (gain * (1.3 - 0.6 * xs)).astype(f32)[None, :, None]
    else:
        img *= f32(gain)

    img *= f32(255.0)
    img += f32(0.5)
    np.clip(img, 0.0, 255.0, out=img)
    pixels = img.astype(np.uint8)
    picture = Image.fromarray(pixels, "RGB")
    if picture.size != (out_w, out_h):
        picture = picture.resize((out_w, out_h), Image.Resampling.BILINEAR)
    width, height = out_w, out_h
    caption = f"m2i preview · {look.label}" if look.label else "m2i preview"
    pen = ImageDraw.Draw(picture)
    box = pen.textbbox((0, 0), caption)
    pad = 4
    h_text = box[3] - box[1]
    pen.rectangle((0, height - h_text - 2 * pad, box[2] + 2 * pad, height), fill=(0, 0, 0))
    pen.text((pad, height - h_text - pad - box[1]), caption, fill=(235, 235, 235))
    return picture


class PreviewBackend(ImageBackend):
    """Feature-driven pictures in milliseconds on any CPU (see the module docstring).

    Parameters
    ----------
    width, height : int
        Size used when a job leaves it ``None`` (512 x 512).
    """

    name = "preview"

    def __init__(self, *, width: int = 512, height: int = 512) -> None:
        self.model = PREVIEW_MODEL
        self.device = "cpu"
        self.default_width = int(width)
        self.default_height = int(height)

    def render(self, jobs: list[ImageJob]) -> list[RenderedImage]:
        """Draw and write each job's picture; one result per job, in order."""
        out: list[RenderedImage] = []
        for job in jobs:
            t0 = time.perf_counter()
            width = job.width or self.default_width
            height = job.height or self.default_height
            problem = job_problem(job)  # an unwritable folder shows when saving: drawing costs ms
            if problem is None and max(width, height) > MAX_SIDE:
                problem = f"{width}x{height} is larger than the preview's {MAX_SIDE} px limit; use --width/--height <= {MAX_SIDE}."
            if problem is not None:
                out.append(
                    failed(job, problem, backend=self, width=width, height=height, steps=None, guidance=None)
                )
                continue
            picture = draw(job.features, seed=job.seed, width=width, height=height)
            extra: dict[str, Any] = {
                "prompt_id": job.prompt_id,
                "sample_idx": job.sample_idx,
                "slot": job.slot,
                "device": self.device,
                "note": "feature-driven preview, not an SDXL render",
            }
            if job.title:
                extra["title"] = job.title
            text = png_text(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt,
                seed=job.seed,
                steps=None,
                guidance=None,
                width=width,
                height=height,
                model=self.model,
                scheduler=None,
                backend=self.name,
                extra=extra,
            )
            try:
                path = save_png(picture, job.out_path, text=text, fast=True)
            except OutputUnwritable:
                raise  # no image can be written: the stage stops, the rows stay to do
            except BackendError as exc:
                out.append(
                    failed(job, str(exc), backend=self, width=width, height=height, steps=None, guidance=None)
                )
                continue
            out.append(
                RenderedImage(
                    prompt_id=job.prompt_id,
                    path=str(path),
                    width=width,
                    height=height,
                    seed=job.seed,
                    steps=None,
                    guidance=None,
                    backend=self.name,
                    model=self.model,
                    scheduler=None,
                    device=self.device,
                    refiner=False,
                    truncated=False,
                    seconds=round(time.perf_counter() - t0, 4),
                )
            )
        return out
