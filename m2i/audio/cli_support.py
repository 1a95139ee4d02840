"""Helpers for ``m2i analyze FILE... [--json]`` (the CLI itself lives in ``cli.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from m2i.errors import InputError, M2IError


def analyze_results(paths: Iterable[str | Path], *, settings: dict[str, Any] | None = None,
                    png_dir: str | Path | None = None, npy_sr: int | None = None) -> Iterator[dict[str, Any]]:
    """Analyse files one by one; a bad file gives an error record and the other files go on.

    Parameters
    ----------
    paths : iterable of str or Path
        Audio files, or .npy files (every clip of a file of clips, each record with ``"clip"``: its
        row); a folder stands for the files in it, recursively, in the order ``m2i ingest`` reads them.
    settings : dict or None
        Passed to :func:`m2i.audio.analyze.analyze_clip`.
    png_dir : str or Path or None
        Also draw each analysed window's mel spectrogram into this folder, as ``<file name>.png``
        (``<file name>-2.png`` and on when two files share a name); the record names it.

    Yields
    ------
    dict
        ``{"file": ..., "features": {...}, "abc": ..., "duration_s": ...}`` for a good file, or
        ``{"file": ..., "error": "one sentence"}`` for a bad one, in the order of ``paths``.
    """
    from m2i.audio.analyze import analyze_file, analyze_rows
    from m2i.audio.datasets import plain_json

    if png_dir is not None:  # an unwritable folder is one sentence, not one error per file after its analysis
        try:
            Path(png_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the spectrogram folder {png_dir} ({exc.strerror}); "
                             "choose a writable --spectrogram-png.") from exc
    taken: set[str] = set()

    def png_for(stem: str) -> Path | None:
        if png_dir is None:
            return None
        name, n = f"{stem}.png", 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name)
        return Path(png_dir) / name

    for path in _expand_folders(paths):
        try:
            if Path(path).suffix.lower() == ".npy" and Path(path).is_file():  # every clip of it
                for result in analyze_rows(path, settings=settings, npy_sr=npy_sr,
                                           spectrogram_png=(lambda row, name=Path(path).name: png_for(name if row is None else f"{name}-clip{row}"))
                                           if png_dir is not None else None):
                    yield plain_json(result)
                continue
            result = analyze_file(path, settings=settings, spectrogram_png=png_for(Path(path).name), npy_sr=npy_sr)
        except M2IError as exc:
            result = {"file": str(path), "error": str(exc)}
        yield plain_json(result)


def _expand_folders(paths: Iterable[str | Path]) -> Iterator[str | Path]:
    """Each path, a folder replaced by the files in it that ``m2i ingest`` would read (so every
    line names the file it describes); a folder with none stays, to be reported."""
    from m2i.audio.datasets import folder_files

    for path in paths:
        if not Path(path).is_dir():
            yield path
            continue
        try:
            files = folder_files(Path(path))
        except M2IError:
            yield path
            continue
        yield from files


def analyze_lines(paths: Iterable[str | Path], *, settings: dict[str, Any] | None = None) -> Iterator[str]:
    """:func:`analyze_results` as one JSON object per line, the ``m2i analyze --json`` output."""
    for out in analyze_results(paths, settings=settings):
        yield json.dumps(out, ensure_ascii=False)


def human_summary(result: dict[str, Any]) -> str:
    """What ``m2i analyze`` prints without ``--json``: ``== FILE`` (``== FILE #ROW`` for a clip of a
    .npy), the features one per line (as
    the LLM reads them, :func:`m2i.features.describe`), a ``not stated: ...`` line naming those
    measured too unsure to state (:func:`m2i.features.unsure`), and the ABC,
    which is left out when no melody was heard (:func:`m2i.features.stated_abc`), after a
    ``warning: ...`` line for a file read past damaged data; or ``error: ...`` for a bad file."""
    from m2i.features import FEATURE_NAMES, describe, stated_abc, unsure

    clip = f" #{result['clip']}" if "clip" in result else ""  # a row of a .npy of clips
    if "error" in result:
        return f"error: {result['file']}{clip}: {result['error']}" if clip else f"error: {result['error']}"
    lines = [f"== {result['file']}{clip}"] + ([f"warning: {result['warning']}"] if "warning" in result else [])
    f = result["features"]
    lines.append(describe(f))
    if held := [n.replace("_", " ") for n in FEATURE_NAMES if unsure(f, n)]:
        lines.append(f"not stated, measured too unsure: {', '.join(held)} (--json has the estimates and confidences)")
    if text := f.get("spectrogram"):
        lines.append(f"spectrogram: {text}")
    if png := result.get("spectrogram_png"):
        lines.append(f"spectrogram picture: {png}")
    if abc := stated_abc(f, result.get("abc")):
        lines.append(abc)
    return "\n".join(lines)
