"""What is left of a run, read from its stage counts (:func:`m2i.store.ops.status_counts`).

Light on purpose (no database imports): the dashboard uses it as well as the commands.
"""

from __future__ import annotations

_LEFT_WORDS = {"analyze": "clip(s) to analyse", "generate": "prompt(s) to write", "score": "score(s) to compute",
               "render": "image(s) to render"}


def work_left(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """``{stage: rows pending or running}`` from :func:`m2i.store.ops.status_counts`, stages with none left out."""
    left = {stage: int(c.get("pending", 0)) + int(c.get("running", 0)) for stage, c in counts.items()}
    return {stage: n for stage, n in left.items() if n}


def describe_work_left(counts: dict[str, dict[str, int]], stages: tuple[str, ...] = tuple(_LEFT_WORDS)) -> str:
    """``"3 clip(s) to analyse and 12 prompt(s) to write"`` for ``stages``; empty when none is left."""
    left = work_left(counts)
    parts = [f"{left[s]} {_LEFT_WORDS[s]}" for s in stages if s in left]
    if len(parts) < 2:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def unfinished_note(counts: dict[str, dict[str, int]], what: str) -> str | None:
    """One sentence for a command that writes a run's results while work is left (``m2i export``,
    ``m2i gallery``): ``what`` holds what is done so far; None when the run is finished."""
    left = describe_work_left(counts)
    if not left:
        return None
    return f"note: this run is not finished ({left}); {what} what is done so far, and `m2i run` continues it."
