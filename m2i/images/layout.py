"""Where images go on disk.

The layout is the one existing users have from the earlier system::

    <out_dir>/images/sample_000/sample_000_prompt_00.png

``sample_000`` is the sample index (zero-padded to 3 digits, wider when needed) and ``prompt_00``
the prompt's slot within its sample (0-2 convergent, 3-4 divergent by default).
"""

from __future__ import annotations

from pathlib import Path

from m2i.errors import InputError

IMAGES_DIR = "images"


def image_path(out_dir: str | Path, sample_idx: int, slot: int) -> Path:
    """Return the PNG path of one prompt's image.

    Parameters
    ----------
    out_dir : str or Path
        The run's output folder.
    sample_idx : int >= 0
        The sample's index in the run.
    slot : int >= 0
        The prompt's slot within its sample.

    Returns
    -------
    Path
        ``out_dir/images/sample_{sample_idx:03d}/sample_{sample_idx:03d}_prompt_{slot:02d}.png``.

    Raises
    ------
    InputError
        If ``sample_idx`` or ``slot`` is negative or not an integer.

    Examples
    --------
    >>> image_path("out", 7, 3).as_posix()
    'out/images/sample_007/sample_007_prompt_03.png'
    """
    for name, value in (("sample_idx", sample_idx), ("slot", slot)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name} must be an integer >= 0, got {value!r}.")
    sample = f"sample_{sample_idx:03d}"
    return Path(out_dir) / IMAGES_DIR / sample / f"{sample}_prompt_{slot:02d}.png"
