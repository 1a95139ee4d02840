"""What the render stage hands an image backend, and what it gets back.

Both are plain dataclasses (no torch), so the stage adapter, the TUI and the tests can build and
read them without loading a model. All fields are keyword-only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(kw_only=True)
class ImageJob:
    """One image to render.

    Parameters
    ----------
    prompt_id : int
        The prompt row's id (also what the seed is derived from).
    sample_idx : int
        The sample's index in the run.
    slot : int
        The prompt's slot within its sample.
    prompt : str
        The prompt's ``image_prompt``: the text the image model reads.
    out_path : str or Path
        Full path of the PNG to write, normally :func:`m2i.images.layout.image_path`.
    negative_prompt : str or None
        What the image should avoid; ``None`` or ``""`` for nothing.
    seed : int
        The image's seed, normally :func:`m2i.images.seeds.image_seed`.
    width, height : int or None
        Pixels, multiples of 8; ``None`` takes the model's default.
    steps : int or None
        Denoising steps; ``None`` takes the model's default.
    guidance : float or None
        Classifier-free guidance scale; ``None`` takes the model's default.
    features : dict or None
        The sample's feature record (read through :func:`m2i.features.summarize`); the ``preview``
        backend draws from it.
    title : str or None
        The prompt's title, written into the PNG when given.
    """

    prompt_id: int
    sample_idx: int
    slot: int
    prompt: str
    out_path: str | Path
    negative_prompt: str | None = None
    seed: int = 0
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    features: dict[str, Any] | None = None
    title: str | None = None


@dataclass(kw_only=True)
class RenderedImage:
    """The outcome of one :class:`ImageJob`.

    A job that failed on its own (empty prompt, unwritable folder, out of memory at batch size 1)
    has ``error`` set to one sentence naming the cause and the fix, and ``path`` is ``None``.
    Every other field records the settings actually used, so the image can be reproduced from the
    database row alone.
    """

    prompt_id: int
    path: str | None
    width: int | None
    height: int | None
    seed: int | None
    steps: int | None
    guidance: float | None
    backend: str
    model: str | None
    scheduler: str | None
    device: str | None
    refiner: bool = False
    truncated: bool = False
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    """Things worth logging that are not errors (prompt truncated, batch reduced after OOM)."""

    @property
    def ok(self) -> bool:
        """Whether the PNG was written."""
        return self.error is None and self.path is not None

    def image_columns(self) -> dict[str, Any]:
        """The ``image`` table columns this result fills (``error`` included; status is the caller's)."""
        row = asdict(self)
        row.pop("prompt_id")
        row.pop("notes")
        return row
