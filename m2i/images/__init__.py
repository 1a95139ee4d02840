"""Images: render each prompt's ``image_prompt`` to a PNG.

The pieces, all importable without torch or diffusers:

- :class:`~m2i.images.jobs.ImageJob` / :class:`~m2i.images.jobs.RenderedImage`: what the render
  stage hands a backend and what it gets back (one result per job, in order).
- :func:`~m2i.images.layout.image_path`: ``images/sample_007/sample_007_prompt_03.png`` (sample 7, slot 3).
- :func:`~m2i.images.seeds.image_seed`: the per-image seed derived from the run seed and prompt id.
- :mod:`m2i.images.png`: atomic PNG writing with the settings in text chunks, and reading them back.
- :mod:`m2i.images.backends`: the registry (``sdxl``, ``preview``, ``auto``).
"""

from __future__ import annotations

from m2i.images.jobs import ImageJob, RenderedImage
from m2i.images.layout import image_path
from m2i.images.seeds import image_seed

__all__ = ["ImageJob", "RenderedImage", "image_path", "image_seed"]
