"""The image-backend interface.

A backend turns :class:`~m2i.images.jobs.ImageJob` s into PNG files. It is built once per runner
worker, loaded once (weights stay resident), asked to :meth:`ImageBackend.render` batches of
jobs, and closed at the end. ``render`` returns one :class:`~m2i.images.jobs.RenderedImage` per
job, in order; a job that fails on its own gets ``error`` set instead of raising, so one bad
row never stops a batch.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from m2i.images.jobs import ImageJob, RenderedImage


class ImageBackend(abc.ABC):
    """Base class of image backends (``sdxl``, ``preview``).

    Attributes
    ----------
    name : str
        Registry name, recorded in ``image.backend``.
    model : str or None
        What renders (model id or path, or the preview renderer's version).
    device : str
        ``cuda``, ``mps`` or ``cpu`` once loaded (the requested value before).
    """

    name: ClassVar[str]
    model: str | None
    device: str
    auto_reason: str | None = None
    """Set by ``get_backend("auto")``: one sentence on why this backend was chosen."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights or resources; idempotent.

        Raises
        ------
        m2i.errors.BackendError
            If the backend cannot work here (one sentence with the fix).
        """

    @abc.abstractmethod
    def render(self, jobs: list[ImageJob]) -> list[RenderedImage]:
        """Render ``jobs`` and write their PNGs; one result per job, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release memory held by the backend; it can be loaded again afterwards."""

    def describe(self) -> dict[str, Any]:
        """Name, model and device, for logs and the dashboard."""
        return {"backend": self.name, "model": self.model, "device": self.device}

    def __enter__(self) -> ImageBackend:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def job_problem(job: ImageJob, *, multiple_of: int = 8) -> str | None:
    """Check one job before any work is spent on it.

    Returns
    -------
    str or None
        ``None`` when the job is renderable, else one sentence naming the problem and the fix.
    """
    if not isinstance(job.prompt, str) or not job.prompt.strip():
        return (
            f"prompt {job.prompt_id} has an empty image_prompt; regenerate the prompt "
            "(m2i requeue --stage generate) before rendering it."
        )
    for name in ("width", "height"):
        value = getattr(job, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % multiple_of
        ):
            return f"{name} {value!r} is not a positive multiple of {multiple_of}; use e.g. 768 or 1024."
    if job.steps is not None and (
        isinstance(job.steps, bool) or not isinstance(job.steps, int) or job.steps < 1
    ):
        return f"steps {job.steps!r} must be an integer >= 1; use e.g. --steps 30."
    if job.guidance is not None and not (isinstance(job.guidance, (int, float)) and job.guidance >= 0):
        return f"guidance {job.guidance!r} must be a number >= 0; use e.g. --guidance 7."
    return None


def failed(job: ImageJob, error: str, *, backend: ImageBackend, **fields: Any) -> RenderedImage:
    """A :class:`RenderedImage` for a job that did not render."""
    base: dict[str, Any] = {
        "prompt_id": job.prompt_id,
        "path": None,
        "width": job.width,
        "height": job.height,
        "seed": job.seed,
        "steps": job.steps,
        "guidance": job.guidance,
        "backend": backend.name,
        "model": backend.model,
        "scheduler": None,
        "device": backend.device,
        "error": error,
    }
    base.update(fields)
    return RenderedImage(**base)
