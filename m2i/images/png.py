"""PNG files with their settings in text chunks, written atomically.

Every image m2i writes carries what is needed to reproduce it (prompt, negative prompt, seed,
steps, guidance, size, model, scheduler, backend) as PNG ``tEXt``/``iTXt`` chunks, plus a
``parameters`` chunk in the ``prompt / Negative prompt: / Steps: ...`` form other Stable Diffusion
tools display. Files are written to a temporary name in the same folder, flushed to disk and
renamed, so a runner killed mid-write never leaves a half-written PNG at the final path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2i.errors import BackendError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

TMP_PREFIX = ".m2i-tmp-"


def png_text(
    *,
    prompt: str,
    negative_prompt: str | None,
    seed: int | None,
    steps: int | None,
    guidance: float | None,
    width: int,
    height: int,
    model: str | None,
    scheduler: str | None,
    backend: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Build the text chunks of one image.

    Returns
    -------
    dict[str, str]
        ``prompt``, ``negative_prompt``, ``seed``, ``steps``, ``guidance``, ``width``, ``height``,
        ``size`` (``"768x768"``), ``model``, ``scheduler``, ``backend``, ``parameters`` and every
        key of ``extra`` (values turned into strings; ``None`` becomes ``""``).
    """

    def s(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    text = {
        "prompt": s(prompt),
        "negative_prompt": s(negative_prompt),
        "seed": s(seed),
        "steps": s(steps),
        "guidance": s(guidance),
        "width": s(width),
        "height": s(height),
        "size": f"{width}x{height}",
        "model": s(model),
        "scheduler": s(scheduler),
        "backend": s(backend),
    }
    for key, value in (extra or {}).items():
        text[key] = s(value)
    params = [
        f"Steps: {text['steps']}",
        f"Sampler: {text['scheduler']}",
        f"CFG scale: {text['guidance']}",
        f"Seed: {text['seed']}",
        f"Size: {text['size']}",
        f"Model: {text['model']}",
        f"Backend: {text['backend']}",
    ]
    text["parameters"] = f"{text['prompt']}\nNegative prompt: {text['negative_prompt']}\n" + ", ".join(params)
    return text


def save_png(
    image: PILImage.Image, path: str | Path, *, text: dict[str, str], compress_level: int = 6
) -> Path:
    """Write ``image`` to ``path`` with ``text`` chunks, atomically.

    Parameters
    ----------
    image : PIL.Image.Image
        The picture (RGB).
    path : str or Path
        Final location; its folder is created when missing.
    text : dict[str, str]
        Text chunks (non-Latin-1 values are stored as UTF-8 ``iTXt``).
    compress_level : int in [0, 9]
        zlib level; 1 is several times faster than 6 for a few percent more bytes.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    BackendError
        If the folder cannot be created or written (one sentence naming it and the fix).
    """
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".png", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG", pnginfo=info, compress_level=compress_level)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise BackendError(
            f"cannot write {path} ({exc.strerror or exc}); choose a writable output folder."
        ) from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return path


def read_png_text(path: str | Path) -> dict[str, str]:
    """Return the text chunks of a PNG written by :func:`save_png`."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return {str(k): str(v) for k, v in (getattr(im, "text", None) or {}).items()}


def check_writable(path: str | Path) -> str | None:
    """Create ``path``'s folder and check it can take files.

    Returns
    -------
    str or None
        ``None`` when writable, else one sentence naming the folder and the fix.
    """
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write to {folder} ({exc.strerror or exc}); choose a writable output folder."
    return None
