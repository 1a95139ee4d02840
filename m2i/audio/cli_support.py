"""Helpers for ``m2i analyze FILE... [--json]`` (the CLI itself lives in ``cli.py``)."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from m2i.errors import InputError, M2IError


def analyze_results(paths: Iterable[str | Path], *, settings: dict[str, Any] | None = None,
                    png_dir: str | Path | None = None, npy_sr: int | None = None,
                    workers: int | None = 1) -> Iterator[dict[str, Any]]:
    """Analyse files; a bad file gives an error record and the other files go on.

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
    workers : int or None
        Worker processes to spread the files over (None: one per core, at most 8), from
        :data:`POOL_FROM` files on and when no path is a pipe; 1 analyses them in this process.
        The records come in the order of ``paths`` either way, and are the same.

    Yields
    ------
    dict
        ``{"file": ..., "features": {...}, "abc": ..., "duration_s": ...}`` for a good file, or
        ``{"file": ..., "error": "one sentence"}`` for a bad one, in the order of ``paths``.
    """
    if png_dir is not None:  # an unwritable folder is one sentence, not one error per file after its analysis
        try:
            Path(png_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the spectrogram folder {png_dir} ({exc.strerror}); "
                             "choose a writable --spectrogram-png.") from exc
    items = list(_expand_folders(paths))
    shown = [STDIN_NAME if str(p) == "-" else str(p) for p in items]
    stems = _png_stems(Path(n).name for n in shown)
    job = {"settings": settings, "png_dir": None if png_dir is None else str(png_dir), "npy_sr": npy_sr}
    n = max(1, min(os.cpu_count() or 1, 8)) if workers is None else workers
    if n > 1 and len(items) >= POOL_FROM and not any(map(is_stream, items)):
        yield from _pooled(items, stems, job, min(n, len(items)))
        return
    stdin_read = False
    for path, name, stem in zip(items, shown, stems):
        if str(path) == "-" and stdin_read:
            yield {"file": name, "error": "'-' is given twice; what was piped in is one stream, read for the first."}
            continue
        stdin_read = stdin_read or str(path) == "-"
        if not is_stream(path):
            yield from file_records(path, stem, **job)
            continue
        try:
            with spooled(path) as file:
                for result in file_records(file, stem, **job):
                    yield _renamed(result, file, name)
        except M2IError as exc:
            yield {"file": name, "error": str(exc)}


POOL_FROM = 8
"""``m2i analyze`` spreads the files over worker processes from this many on (a worker takes a
second or two to start, the analysis of a 10 s window about 0.1 s)."""


def file_records(path: str | Path, stem: str, *, settings: dict[str, Any] | None, png_dir: str | None,
                 npy_sr: int | None) -> Iterator[dict[str, Any]]:
    """The ``m2i analyze`` records of one file (every clip of a .npy of clips), its error last if it
    has one; spectrogram pictures go to ``png_dir`` as ``<stem>.png`` (``<stem>-clip<row>.png``)."""
    from m2i.audio.analyze import analyze_file, analyze_rows
    from m2i.audio.datasets import plain_json

    def png(row: int | None = None) -> Path | None:
        return None if png_dir is None else Path(png_dir) / (f"{stem}.png" if row is None else f"{stem}-clip{row}.png")

    try:
        if Path(path).suffix.lower() == ".npy" and Path(path).is_file():  # every clip of it
            for result in analyze_rows(path, settings=settings, npy_sr=npy_sr,
                                       spectrogram_png=png if png_dir is not None else None):
                yield plain_json(result)
            return
        yield plain_json(analyze_file(path, settings=settings, spectrogram_png=png(), npy_sr=npy_sr))
    except M2IError as exc:
        yield plain_json({"file": str(path), "error": str(exc)})


def _file_job(path: str, stem: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`file_records` in a worker process."""
    return list(file_records(path, stem, **job))


def _pooled(items: list[str | Path], stems: list[str], job: dict[str, Any], workers: int) -> Iterator[dict[str, Any]]:
    """:func:`file_records` of each item, computed in ``workers`` processes, yielded in order.

    A worker that dies (out of memory, a crash in native code) breaks the pool: the file at the
    head is then analysed alone in a fresh pool, so that it fails only if it is the cause, and the
    files that were in flight are handed to the fresh pool.
    """
    from collections import deque
    from concurrent.futures import BrokenExecutor

    from m2i.runner import make_process_pool

    pool = make_process_pool(workers)
    todo = iter(range(len(items)))
    flight: deque[tuple[int, Any]] = deque()

    def submit(i: int) -> None:
        flight.append((i, pool.submit(_file_job, str(items[i]), stems[i], job)))

    try:
        for i in todo:
            submit(i)
            if len(flight) >= 2 * workers:
                break
        while flight:
            i, future = flight.popleft()
            try:
                records = future.result()
            except BrokenExecutor:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = make_process_pool(workers)
                try:
                    records = pool.submit(_file_job, str(items[i]), stems[i], job).result()
                except BrokenExecutor:
                    records = [{"file": str(items[i]), "error": (
                        "the analysis worker process died on this file (out of memory, a crash in the decoder, "
                        "or a signal); the other files go on")}]
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = make_process_pool(workers)
                again = [j for j, _ in flight]
                flight.clear()
                for j in again:
                    submit(j)
            yield from records
            if (j := next(todo, None)) is not None:
                submit(j)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _png_stems(names: Iterable[str]) -> list[str]:
    """Each file's spectrogram picture stem: its name, ``<name>-2`` and on when names repeat."""
    taken: set[str] = set()
    out = []
    for name in names:
        stem, n = name, 1
        while stem in taken:
            n += 1
            stem = f"{name}-{n}"
        taken.add(stem)
        out.append(stem)
    return out


STDIN_NAME = "stdin"
"""How ``m2i analyze -`` names the audio piped in."""

MAX_STREAM_BYTES = 2 << 30
"""``m2i analyze`` keeps at most this much of a pipe (an hour of 48 kHz stereo 24-bit WAV is 1 GiB)."""


def is_stream(path: str | Path) -> bool:
    """``"-"`` (standard input; a file named ``-`` is ``./-``), a path that is neither a file nor
    a folder: a pipe (``<(ffmpeg ...)``, ``/dev/stdin`` fed by a pipe) or a device, or a file
    descriptor's name (``/dev/stdin < song.wav``, ``/dev/fd/3``, ``/proc/self/fd/0``), which has no
    suffix to read it by."""
    if str(path) == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if stat.S_ISREG(mode) and _FD_NAME.match(os.path.abspath(path)):
        return True
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


_FD_NAME = re.compile(r"^/(dev/(stdin|fd/\d+)|proc/(self|\d+)/fd/\d+)$")


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
    .npy, ``== FILE #ROW (track · artists)`` for a row of the annotation file), the features one per line (as
    the LLM reads them, :func:`m2i.features.describe`), a ``not stated: ...`` line naming those
    measured too unsure to state (:func:`m2i.features.unsure`), and the ABC,
    which is left out when no melody was heard (:func:`m2i.features.stated_abc`), after a
    ``warning: ...`` line for a file read past damaged data; or ``error: ...`` for a bad file."""
    from m2i.features import FEATURE_NAMES, clip_label, describe, stated_abc, unsure

    clip = f" #{result['clip']}" if "clip" in result else ""  # a row of a .npy of clips
    if (song := clip_label(None, result.get("meta"))) and clip:  # the annotation file's track and artists
        clip += f" ({song})"
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
