"""Helpers for ``m2i analyze FILE... [--json]`` (the CLI itself lives in ``cli.py``)."""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
        ``"-"`` is the audio piped in on standard input (its records name ``stdin``), and a pipe
        (``<(ffmpeg ...)``) is read likewise: both by what the bytes hold, not by a suffix.
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

    def analyzed(path: str | Path, name: str) -> Iterator[dict[str, Any]]:
        if Path(path).suffix.lower() == ".npy" and Path(path).is_file():  # every clip of it
            yield from analyze_rows(path, settings=settings, npy_sr=npy_sr,
                                    spectrogram_png=(lambda row: png_for(name if row is None else f"{name}-clip{row}"))
                                    if png_dir is not None else None)
            return
        yield analyze_file(path, settings=settings, spectrogram_png=png_for(name), npy_sr=npy_sr)

    stdin_read = False
    for path in _expand_folders(paths):
        shown = STDIN_NAME if str(path) == "-" else str(path)
        try:
            if str(path) == "-" and stdin_read:
                raise InputError("'-' is given twice; what was piped in is one stream, read for the first.")
            stdin_read = stdin_read or str(path) == "-"
            if not is_stream(path):
                for result in analyzed(path, Path(path).name):
                    yield plain_json(result)
                continue
            with spooled(path) as file:
                for result in analyzed(file, Path(shown).name):
                    yield plain_json(_renamed(result, file, shown))
        except M2IError as exc:
            yield plain_json({"file": shown, "error": str(exc)})


STDIN_NAME = "stdin"
"""How ``m2i analyze -`` names the audio piped in."""

MAX_STREAM_BYTES = 2 << 30
"""``m2i analyze`` keeps at most this much of a pipe (an hour of 48 kHz stereo 24-bit WAV is 1 GiB)."""


def is_stream(path: str | Path) -> bool:
    """``"-"`` (standard input; a file named ``-`` is ``./-``), or a path that is neither a file nor
    a folder: a pipe (``<(ffmpeg ...)``, ``/dev/stdin`` fed by a pipe) or a device."""
    if str(path) == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextmanager
def spooled(path: str | Path) -> Iterator[Path]:
    """A pipe's bytes in a temporary file whose suffix says what they hold (a WAV written to a pipe
    gets its true sizes: :func:`m2i.audio.datasets.mend_streamed_wav`); removed afterwards.

    Raises
    ------
    InputError
        Standard input is a terminal; the pipe cannot be read; its bytes are not audio m2i
        decodes; it held more than :data:`MAX_STREAM_BYTES`.
    """
    with tempfile.TemporaryDirectory(prefix="m2i-pipe-") as folder:
        yield _spool(path, Path(folder))


def _spool(path: str | Path, folder: Path) -> Path:
    """:func:`spooled`'s copy of the pipe into ``folder``."""
    from m2i.audio.datasets import AUDIO_EXTENSIONS, UNREAD_AUDIO, mend_streamed_wav, sniff_suffix

    stdin = str(path) == "-"
    shown = STDIN_NAME if stdin else str(path)
    if stdin and (sys.stdin is None or sys.stdin.isatty()):
        raise InputError("'-' reads audio piped in (ffmpeg -i song.m4a -f wav - | m2i analyze -), "
                         "but standard input is the terminal.")
    try:
        with (open(os.dup(sys.stdin.fileno()), "rb") if stdin else open(path, "rb")) as src:
            head = src.read(128)  # enough to sniff: /dev/zero is refused here, not after 2 GiB of zeros
            while len(head) < 128 and (more := src.read(128 - len(head))):
                head += more
            suffix = sniff_suffix(head)
            if suffix in UNREAD_AUDIO:
                raise InputError(f"{shown} holds {UNREAD_AUDIO[suffix]} audio, which m2i does not decode; convert "
                                 f"it to WAV or FLAC on its way in (ffmpeg -i song{suffix} -f wav - | m2i analyze -).")
            if suffix not in (*AUDIO_EXTENSIONS, ".npy"):
                raise InputError(f"{shown} holds no audio m2i reads{' (it is empty)' if not head else ''}; "
                                 "pipe in WAV, FLAC, Ogg, Opus, MP3, AIFF or .npy (ffmpeg ... -f wav -).")
            file = folder / f"{Path(shown).name}{suffix}"
            with open(file, "wb") as out:
                out.write(head)
                left = MAX_STREAM_BYTES - len(head)
                while left > 0 and (block := src.read(min(left, 1 << 20))):
                    out.write(block)
                    left -= len(block)
                if left <= 0 and src.read(1):
                    raise InputError(f"{shown} sent more than {MAX_STREAM_BYTES >> 30} GiB; pipe in a shorter piece "
                                     "(ffmpeg -t 60 ...) or save it to a file and analyse that.")
    except OSError as exc:
        raise InputError(f"cannot read {shown} ({exc.strerror or exc}).") from exc
    if suffix == ".wav":
        mend_streamed_wav(file)
    return file


def _renamed(result: dict[str, Any], file: Path, shown: str) -> dict[str, Any]:
    """A record of the spooled ``file`` naming the pipe ``shown`` instead, in its messages too."""
    out = dict(result, file=shown)
    for key in ("error", "warning"):
        if key in out:
            out[key] = str(out[key]).replace(str(file), shown).replace(file.name, shown)
    return out


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
