"""Helpers for ``m2i analyze FILE... [--json]`` (the CLI itself lives in ``cli.py``)."""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2i.errors import InputError, M2IError
from m2i.procs import pool_size


def analyze_results(paths: Iterable[str | Path], *, settings: dict[str, Any] | None = None,
                    png_dir: str | Path | None = None, npy_sr: int | None = None,
                    workers: int | None = 1, windows: bool = False, clip_s: float = 10.0,
                    hop_s: float = 10.0) -> Iterator[dict[str, Any]]:
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
        Worker processes to spread the files and the clips of a .npy over (None: one per core, at
        most 8), from :data:`POOL_FROM` of them on; 1 analyses them in this process. The records
        come in the order of ``paths`` either way, and are the same.
    windows : bool
        Every ``clip_s`` window of a file, every ``hop_s`` seconds (as ``m2i ingest`` cuts it), a
        record each with its ``start_s`` (:func:`m2i.audio.analyze.window_record`), instead of the
        file's first window that holds sound. The rows of a .npy of clips are clips already.
    clip_s, hop_s : float
        The window's length, and the hop between windows (``--windows``).

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
    job = {"settings": settings, "png_dir": None if png_dir is None else str(png_dir), "npy_sr": npy_sr,
           "windows": windows, "clip_s": clip_s, "hop_s": hop_s}
    n = pool_size(workers)
    with tempfile.TemporaryDirectory(prefix="m2i-pipe-") as spool:
        units = _units(items, shown, stems, job, Path(spool))
        first = list(itertools.islice(units, POOL_FROM))
        if n > 1 and len(first) >= POOL_FROM:
            yield from _pooled(itertools.chain(first, units), n)
            return
        for unit in itertools.chain(first, units):
            yield from unit.finish(unit.run())


POOL_FROM = 8
"""``m2i analyze`` spreads the work over worker processes from this many files or clips of a .npy
on (a worker takes a second or two to start, the analysis of a 10 s window about 0.1 s)."""


@dataclass
class _Unit:
    """One piece of ``m2i analyze``'s work: a file, or a row of a .npy of clips, run by ``fn(*args)``
    here or in a worker process; or records already known (``done``: a bad row, a refused pipe)."""

    fn: Callable[..., list[dict[str, Any]]] | None = None
    args: tuple[Any, ...] = ()
    done: list[dict[str, Any]] | None = None
    spooled: tuple[Path, str] | None = None  # (temporary file, the pipe's name): records name the pipe

    def run(self) -> list[dict[str, Any]]:
        return self.done if self.fn is None else self.fn(*self.args)

    def finish(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records if self.spooled is None else [_renamed(r, *self.spooled) for r in records]


def _units(items: list[str | Path], shown: list[str], stems: list[str], job: dict[str, Any],
           spool: Path) -> Iterator[_Unit]:
    """The work for ``items``, in order: a pipe is copied into ``spool`` first (here, as it comes),
    a .npy of clips is read here and each of its rows is a unit of its own."""
    from m2i.audio.analyze import npy_clips
    from m2i.audio.datasets import is_stream

    stdin_read = False
    for i, (path, name, stem) in enumerate(zip(items, shown, stems)):
        spooled = None
        if is_stream(path):
            if str(path) == "-" and stdin_read:
                yield _Unit(done=[{"file": name, "error": "'-' is given twice; what was piped in is one stream, "
                                                          "read for the first."}])
                continue
            stdin_read = stdin_read or str(path) == "-"
            try:
                (spool / str(i)).mkdir()
                path = _spool(path, spool / str(i))
            except M2IError as exc:
                yield _Unit(done=[{"file": name, "error": str(exc)}])
                continue
            spooled = (path, name)
        if not (Path(path).suffix.lower() == ".npy" and Path(path).is_file()):
            yield from _window_units(path, None, stem, job, spooled) if job["windows"] else [
                _Unit(_file_job, (str(path), stem, job), spooled=spooled)]
            continue
        try:
            for row, clip in npy_clips(path, npy_sr=job["npy_sr"], clip_s=job["clip_s"], hop_s=job["hop_s"]):
                if row is None:  # one signal, not rows: its windows, or a worker reads its first usable one
                    yield from _window_units(path, clip, stem, job, spooled) if job["windows"] else [
                        _Unit(_file_job, (str(path), stem, job), spooled=spooled)]
                    break
                png = None if job["png_dir"] is None else Path(job["png_dir"]) / f"{stem}-clip{row}.png"
                yield _Unit(_row_job, (str(path), row, clip, job["settings"], png), spooled=spooled)
        except M2IError as exc:  # the file cannot be read at all, or breaks off (its rows before stay)
            from m2i.audio.datasets import plain_json

            yield _Unit(done=[plain_json({"file": str(path), "error": str(exc)})], spooled=spooled)


def _window_units(path: str | Path, clips: Iterator[Any] | None, stem: str, job: dict[str, Any],
                  spooled: tuple[Path, str] | None) -> Iterator[_Unit]:
    """A unit per window of a file (``--windows``), read here as the work goes on (a long file is
    read block by block); ``clips``: its windows when already being read."""
    from m2i.audio.analyze import window_start
    from m2i.audio.datasets import load_dataset, plain_json

    try:
        if clips is None:
            clips = load_dataset(path, npy_sr=job["npy_sr"], clip_s=job["clip_s"], hop_s=job["hop_s"])
        for clip in clips:
            start = window_start(clip)
            png = None if job["png_dir"] is None or start is None else Path(job["png_dir"]) / f"{stem}@{start:g}.png"
            yield _Unit(_window_job, (str(path), clip, job["settings"], png), spooled=spooled)
    except M2IError as exc:  # the file cannot be read at all
        yield _Unit(done=[plain_json({"file": str(path), "error": str(exc)})], spooled=spooled)


def _window_job(path: str, clip: Any, settings: dict[str, Any] | None, png: Path | None) -> list[dict[str, Any]]:
    """The record of one window of a file (run here or in a worker process)."""
    from m2i.audio.analyze import window_record
    from m2i.audio.datasets import plain_json

    return [plain_json(window_record(path, clip, settings, png))]


def _file_job(path: str, stem: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The record of an audio file, or of a .npy that is one signal (its first usable window), or
    its error, as a list (run here or in a worker process); the spectrogram picture goes to
    ``<png_dir>/<stem>.png``."""
    from m2i.audio.analyze import analyze_file
    from m2i.audio.datasets import plain_json

    png = None if job["png_dir"] is None else Path(job["png_dir"]) / f"{stem}.png"
    try:
        return [plain_json(analyze_file(path, settings=job["settings"], spectrogram_png=png, npy_sr=job["npy_sr"],
                                        clip_s=job["clip_s"]))]
    except M2IError as exc:
        return [plain_json({"file": path, "error": str(exc)})]


def _row_job(path: str, row: int, clip: Any, settings: dict[str, Any] | None, png: Path | None) -> list[dict[str, Any]]:
    """The record of one row of a .npy of clips (run here or in a worker process)."""
    from m2i.audio.analyze import row_record
    from m2i.audio.datasets import plain_json

    try:
        return [plain_json(row_record(path, row, clip, settings, png))]
    except M2IError as exc:
        return [plain_json({"file": path, "clip": row, "error": str(exc)})]


def _pooled(units: Iterator[_Unit], workers: int) -> Iterator[dict[str, Any]]:
    """The records of each unit, computed in ``workers`` processes (a few units ahead), in order.

    A worker that dies (out of memory, a crash in native code) breaks the pool: the unit at the
    head is then run alone in a fresh pool, so that it fails only if it is the cause, and the
    units that were in flight are handed to the fresh pool.
    """
    from collections import deque
    from concurrent.futures import BrokenExecutor

    from m2i.runner import make_process_pool

    pool = make_process_pool(workers)
    flight: deque[tuple[_Unit, Any]] = deque()

    def submit(unit: _Unit) -> None:
        flight.append((unit, None if unit.fn is None else pool.submit(unit.fn, *unit.args)))

    try:
        for unit in units:
            submit(unit)
            if len(flight) >= 2 * workers:
                break
        while flight:
            unit, future = flight.popleft()
            try:
                records = unit.run() if future is None else future.result()
            except BrokenExecutor:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = make_process_pool(workers)
                try:
                    records = pool.submit(unit.fn, *unit.args).result()
                except BrokenExecutor:
                    where = {"clip": unit.args[1]} if unit.fn is _row_job else {}
                    records = [{"file": unit.args[0], **where, "error": (
                        "the analysis worker process died on this file (out of memory, a crash in the decoder, "
                        "or a signal); the other files go on")}]
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = make_process_pool(workers)
                again = [u for u, _ in flight]
                flight.clear()
                for u in again:
                    submit(u)
            yield from unit.finish(records)
            if (nxt := next(units, None)) is not None:
                submit(nxt)
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


def _spool(path: str | Path, folder: Path) -> Path:
    """A pipe's bytes copied into a file in ``folder`` whose suffix says what they hold (a WAV
    written to a pipe gets its true sizes: :func:`m2i.audio.datasets.mend_streamed_wav`).

    Raises
    ------
    InputError
        Standard input is a terminal; the pipe cannot be read; its bytes are not audio m2i
        decodes; it held more than :data:`MAX_STREAM_BYTES`.
    """
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
    line names the file it describes), ``demo`` by the bundled demo clips, as for ``m2i ingest``;
    a folder with none stays, to be reported."""
    from m2i.audio.datasets import DEMO_DIR, demo_entries, folder_files

    for path in paths:
        if str(path) == "demo":  # was read as one file named demo: its first clip, named "demo"
            try:
                yield from (DEMO_DIR / entry["file"] for entry in demo_entries())
            except M2IError:
                yield path
            continue
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


WINDOW_COLUMNS = ("start", "key", "tempo", "metre", "dyn", "melody", "mood", "harmony")


def window_heading(file: str, clip_s: float, hop_s: float) -> str:
    """What ``m2i analyze --windows`` prints above a file's windows: the file, the windows, the columns."""
    return f"== {file} · {clip_s:g} s windows every {hop_s:g} s · -: too unsure to state\n" + _window_cells(WINDOW_COLUMNS)


def window_row(result: dict[str, Any]) -> str:
    """One window as a row under :func:`window_heading`: where it starts (m:ss), then the features
    as ``m2i analyze`` words them (:func:`m2i.features.summarize`), shortest form, ``-`` for one
    measured too unsure to state."""
    from m2i.features import key_label, summarize

    f = result["features"]
    s = summarize(f)
    return _window_cells((
        clock(float(result.get("start_s", 0.0))), key_label(f) or "-", s["tempo"].removesuffix(" BPM") or "-",
        s["time_signature"] or "-", s["dynamic_intensity"].partition(",")[0] or "-",
        s["melody_contour"].partition(",")[0] or "-", s["mood"].partition(" (")[0] or "-",
        s["harmonic_progression"] or "-"))


def _window_cells(cells: tuple[str, ...]) -> str:
    widths = (7, 10, 5, 5, 3, 10, 24)
    return "  ".join([f"{c:>{w}}" if i in (0, 2) else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cells, widths))]
                     + list(cells[len(widths):])).rstrip()


def clock(seconds: float) -> str:
    """``75.5`` -> ``1:15.5``, ``30`` -> ``0:30``: where a window starts, as a player shows it."""
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}:{rest:04.1f}" if rest != int(rest) else f"{int(minutes)}:{int(rest):02d}"


def human_summary(result: dict[str, Any], *, windows: bool = False) -> str:
    """What ``m2i analyze`` prints without ``--json``: ``== FILE`` (``== FILE #ROW`` for a clip of a
    .npy, ``== FILE #ROW (track · artists)`` for a row of the annotation file, ``== FILE@30`` for a
    window that starts 30 s in, every window with ``windows``), the features one per line (as
    the LLM reads them, :func:`m2i.features.describe`), a ``not stated: ...`` line naming those
    measured too unsure to state (:func:`m2i.features.unsure`), and the ABC,
    which is left out when no melody was heard (:func:`m2i.features.stated_abc`), after a
    ``warning: ...`` line for a file read past damaged data; or ``error: ...`` for a bad file."""
    from m2i.features import FEATURE_NAMES, clip_label, describe, stated_abc, unsure

    clip = f" #{result['clip']}" if "clip" in result else ""  # a row of a .npy of clips
    if (song := clip_label(None, result.get("meta"))) and clip:  # the annotation file's track and artists
        clip += f" ({song})"
    if "clip" not in result and (windows or result.get("start_s")):  # where in the file, as m2i ingest names a window
        clip = f"@{result['start_s']:g}" if "start_s" in result else ""
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
