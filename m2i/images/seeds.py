"""Per-image seeds.

An image's seed is a pure function of the run seed and the prompt id, so that re-rendering a row
(after a crash, a requeue, or on another machine) reproduces the same latents. The value is
stored in the ``image.seed`` column and in the PNG's ``seed`` text chunk.
"""

from __future__ import annotations

import hashlib

from m2i.errors import InputError

SEED_BITS = 63
"""Seeds fit in a signed 64-bit SQLite INTEGER and in ``torch.Generator.manual_seed``."""


def image_seed(run_seed: int, prompt_id: int) -> int:
    """Return the seed of one image.

    The seed is the first 8 bytes of ``blake2b("m2i-image:<run_seed>:<prompt_id>")`` masked to
    63 bits: stable across processes, Python versions and machines (unlike ``hash()``).

    Parameters
    ----------
    run_seed : int
        The run's seed (``run.config["seed"]``).
    prompt_id : int >= 0
        The prompt row's id.

    Returns
    -------
    int
        A seed in ``[0, 2**63)``.

    Raises
    ------
    InputError
        If either argument is not an integer, or ``prompt_id`` is negative.

    Examples
    --------
    >>> image_seed(0, 1) == image_seed(0, 1)
    True
    >>> image_seed(0, 1) != image_seed(0, 2)
    True
    """
    for name, value in (("run_seed", run_seed), ("prompt_id", prompt_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{name} must be an integer, got {value!r}; pass the id from the database.")
    if prompt_id < 0:
        raise InputError(f"prompt_id must be >= 0, got {prompt_id}; pass the prompt row's id.")
    digest = hashlib.blake2b(f"m2i-image:{run_seed}:{prompt_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << SEED_BITS) - 1)
