"""The analyze stage: one clip of PCM in, the full feature record and its ABC out.

:func:`analyze_clip` is a top-level, picklable, pure function: the runner calls it in a
``ProcessPoolExecutor``. librosa's numba kernels are cached on disk, one folder per live process
(:func:`ensure_numba_cache`), so a fresh worker does not spend seconds compiling them again and
two workers never write the same cache at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from m2i.errors import InputError, M2IError

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    """Plain Python numbers/lists/dicts only (the result is stored as JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 4)
    return value


_SLOT_LOCK: Any = None  # the open lock file of this process's cache slot (held until exit)


def ensure_numba_cache() -> None:
    """Give this process its own numba cache folder before librosa is imported.

    Two processes compiling the same librosa kernels into one cache folder at once leave it
    corrupt: the next process to load it crashes with a segmentation fault (seen here with two
    analysis workers on a cold cache). So every process takes an exclusive *slot* below one base
    folder (``slot-0``, ``slot-1``, ...) with an advisory lock held for its lifetime, and numba
    writes only there. A slot compiles once; later processes reuse it.

    The base is ``$M2I_NUMBA_CACHE_BASE``, else ``$NUMBA_CACHE_DIR``, else ``~/.cache/m2i/numba``;
    it is handed on to child processes in ``M2I_NUMBA_CACHE_BASE``.
    """
    global _SLOT_LOCK
    if _SLOT_LOCK is not None:
        return
    import fcntl

    base = Path(
        os.environ.get("M2I_NUMBA_CACHE_BASE")
        or os.environ.get("NUMBA_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "m2i" / "numba"
    )
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        logger.warning("numba cache folder %s cannot be created; compiled kernels will not be cached", base)
        return
    os.environ["M2I_NUMBA_CACHE_BASE"] = str(base)
    for i in range(256):
        slot = base / f"slot-{i}"
        try:
            slot.mkdir(exist_ok=True)
            fh = open(slot / ".lock", "a")  # noqa: SIM115 - held open for the life of the process
        except OSError:
            break
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        _SLOT_LOCK = fh
        os.environ["NUMBA_CACHE_DIR"] = str(slot)
        return
    logger.warning("no free numba cache slot under %s; compiled kernels will not be cached", base)


def analyze_clip(pcm: np.ndarray, sr: int = 16000, *, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compute the eight musical features and an ABC transcription of one clip.

    Parameters
    ----------
    pcm : np.ndarray [shape=(n,)]
        Mono samples in [-1, 1]; resampled to 16 kHz when ``sr`` differs.
    sr : int > 0
        Sample rate of ``pcm``.
    settings : dict or None
        Overrides of :data:`m2i.audio.features.DEFAULTS`, plus ``"spectrogram": True`` to add a
        text summary of the mel spectrogram and ``"title"`` for the ABC ``T:`` field.

    Returns
    -------
    dict
        ``{"features": {...}, "abc": str, "duration_s": float}``; the features follow the full
        form documented in :mod:`m2i.features`, with a ``confidence`` entry for all eight names.

    Raises
    ------
    InputError
        The clip is not finite, shorter than 1 s, silent or not mono.

    Examples
    --------
    >>> t = np.arange(32000) / 16000
    >>> out = analyze_clip((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    >>> sorted(out)
    ['abc', 'duration_s', 'features']
    """
    from m2i.audio.datasets import SR, check_pcm, to_mono_16k

    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise InputError(f"sample rate {sr!r} is not a positive integer; pass the clip's rate in Hz.")
    arr = np.asarray(pcm)
    if arr.ndim == 2 and min(arr.shape) <= 8:
        raise InputError(f"the clip has shape {arr.shape} (several channels); mix it to mono first.")
    problem = check_pcm(arr, int(sr))
    if problem:
        raise InputError(problem[0].upper() + problem[1:])
    y = to_mono_16k(arr, int(sr)) if (sr != SR or arr.dtype.kind in "iu") else np.asarray(arr, dtype=np.float32)
    peak = float(np.max(np.abs(y)))
    if peak > 1.0:
        y = y / peak
    ensure_numba_cache()
    from m2i.audio import features as F
    from m2i.audio.abc import bar_starts, notes_to_abc

    s = dict(settings or {})
    t0 = time.perf_counter()
    a = F.prepare(y, s)
    beats = F.estimate_beats(a)
    meter = F.estimate_meter(a, beats)
    chord_obs = F.chord_observations(a, beats["beat_frames"])
    key = F.estimate_key(a, chord_obs)
    a.extra["key"] = key
    chords = F.estimate_chords(a, beats["beat_frames"], chord_obs)
    prog = F.progression(chords["segments"], key["tonic_pc"], key["mode"])
    track = F.melody_track(a)
    notes = F.melody_notes(a, track)
    shape = F.contour(track, notes)
    dyn = F.dynamics(a)
    md = F.mood(
        mode=key["mode"],
        mode_conf=key["confidence"],
        tempo=beats["tempo"],
        loudness_db=dyn["loudness_db"],
        brightness_hz=F.brightness(a),
        onset_rate=F.onset_rate(a),
    )
    abc = notes_to_abc(
        notes,
        beats=np.asarray(beats["beats"]),
        tempo=beats["tempo"],
        meter=meter["time_signature"],
        tonic=key["key"],
        mode=key["mode"],
        downbeat=meter["downbeat"],
        title=str(s.get("title") or "m2i transcription"),
    )
    features: dict[str, Any] = {
        "key": key["key"],
        "tonality": key["mode"],
        "key_runner_up": key["runner_up"],
        "tuning_cents": a.tuning_cents,
        "tempo": beats["tempo"],
        "beats": beats["beats"],
        "downbeats": bar_starts(beats["beats"], meter["time_signature"], meter["downbeat"]),
        "time_signature": meter["time_signature"],
        "mood": {k: md[k] for k in ("valence", "arousal", "words")},
        "melody_contour": {k: shape[k] for k in ("shape", "range_semitones")},
        "harmonic_progression": prog,
        "dynamic_intensity": {k: dyn[k] for k in ("label", "loudness_db", "range_db", "trend")},
        "chords": chords["segments"],
        "melody_notes": [[on, off, p] for on, off, p in notes],
        "confidence": {
            "key": key["confidence"],
            "tonality": key["confidence"],
            "tempo": beats["confidence"],
            "time_signature": meter["confidence"],
            "mood": md["confidence"],
            "melody_contour": shape["confidence"],
            "harmonic_progression": round(chords["confidence"] * F.harmony_clarity(F.accompaniment(a, track)), 3),
            "dynamic_intensity": dyn["confidence"],
        },
    }
    if s.get("spectrogram"):
        from m2i.audio.spectrogram import summarize

        features["spectrogram"] = summarize(y, SR)
    logger.debug("analysed %.1f s clip in %.3f s", a.duration_s, time.perf_counter() - t0)
    return {"features": _jsonable(features), "abc": abc, "duration_s": round(float(y.size / SR), 3)}


def clip_settings(settings: dict[str, Any] | None, meta: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """The analysis settings for a clip of a dataset, given its meta and length: a clip that stops
    inside its recording (:func:`m2i.audio.datasets.ends_inside_recording`: a window with more of
    the file after it, a slice of a track in the annotation file) reads its key without the
    final-bass cue (``key_final_weight`` 0), unless the settings name a weight themselves. The cue
    assumes the clip ends on its piece's cadence; cut from inside a song it reads a bass note that
    may be anything (on the pop-style renders of ``bench_meter.py`` the key scores 0.834 / 0.802
    without it against 0.774 / 0.701, as rendered / cut mid-bar; on the evaluation set's and the
    corpus's chorale excerpts that end inside their piece, the same within 0.02; docs/features.md).

    >>> clip_settings({}, {"start_s": 0.0, "file_duration_s": 60.0}, 10.0)
    {'key_final_weight': 0.0}
    >>> clip_settings({}, {}, 10.0)
    {}
    """
    from m2i.audio.datasets import ends_inside_recording

    s = dict(settings or {})
    if "key_final_weight" not in s and ends_inside_recording(meta, duration_s):
        s["key_final_weight"] = 0.0
    return s


def analyze_file(path: str | Path, *, settings: dict[str, Any] | None = None,
                 spectrogram_png: str | Path | None = None, npy_sr: int | None = None,
                 clip_s: float = 10.0) -> dict[str, Any]:
    """Analyse an audio file (or the first clip of a .npy: :func:`npy_clips` and :func:`row_record`
    give them all) in the ``m2i analyze --json`` shape.

    Parameters
    ----------
    path : str or Path
        An audio file (wav, flac, ogg, opus, mp3, aiff) or a .npy. A file longer than 10 s is analysed on its
        first 10 s window that can be analysed (windows of silence before the music are
        skipped); ``m2i ingest`` / ``m2i run`` analyse every window.
    spectrogram_png : str or Path or None
        Also draw the analysed window's mel spectrogram to this PNG file
        (:func:`m2i.audio.spectrogram.render_png`); its path is returned as ``"spectrogram_png"``.
    npy_sr : int, optional
        Sample rate of a .npy's audio (default 16000; see :func:`m2i.audio.datasets.load_dataset`).
    clip_s : float
        Length of the window analysed (the ``clip_s`` setting); :func:`window_record` analyses every one.

    Returns
    -------
    dict
        ``{"file": str, "start_s": float, "features": {...}, "abc": str, "duration_s": float}``;
        ``start_s`` is where the analysed window starts in the file. A file the decoder read past
        damaged data, or a .npy whose clip length suggests another sample rate, also has
        ``"warning"``.

    Raises
    ------
    InputError
        The file is missing, unreadable, or none of its audio is usable (the first window's
        reason is given).
    """
    from m2i.audio.datasets import load_dataset

    return _first_usable(path, load_dataset(path, npy_sr=npy_sr, clip_s=clip_s, hop_s=clip_s), settings, spectrogram_png)


def _first_usable(path: str | Path, clips: Iterator[Any], settings: dict[str, Any] | None,
                  png: str | Path | None) -> dict[str, Any]:
    """:func:`analyze_file` of the file's ``clips``: the first one that can be analysed."""
    first = None
    for clip in clips:
        if clip.error is None and clip.pcm is not None:
            return _clip_record(path, clip, settings, png)
        first = first or clip
    if first is None:
        raise InputError(f"{path} holds no audio; supply a file with at least 1 s of sound.")
    named = str(path) in str(first.error) or Path(path).name in str(first.error)
    raise InputError(first.error if named else f"{path}: {first.error}")


def npy_clips(path: str | Path, *, npy_sr: int | None = None, clip_s: float = 10.0,
              hop_s: float = 10.0) -> Iterator[tuple[int | None, Any]]:
    """``(row, clip)`` for each row of a .npy of clips, read once; for a .npy that is one signal
    (``[T]``, ``[T, channels]``) a single ``(None, clips)``, the iterator of its windows.

    Raises
    ------
    InputError
        The file cannot be used at all (missing, refused, not audio).
    """
    from m2i.audio.datasets import load_dataset

    clips = load_dataset(path, npy_sr=npy_sr, clip_s=clip_s, hop_s=hop_s)
    for clip in clips:
        row = clip.source.rpartition("#")[2]
        if not row.isdigit():
            yield None, itertools.chain([clip], clips)
            return
        yield int(row), clip


def row_record(path: str | Path, row: int, clip: Any, settings: dict[str, Any] | None,
               png: Path | None) -> dict[str, Any]:
    """The ``m2i analyze`` record of row ``row`` of a .npy of clips (:func:`npy_clips`): the
    ``m2i analyze --json`` shape plus ``"clip"``, its row, and for a row of the annotation file
    ``"meta"``, its ``audio_meta`` (track, artists, album, ...); a bad row's is ``{"file", "clip", "error"}``."""
    from m2i.audio.datasets import WARNING_KEYS

    # the annotation file's audio_meta (track, artists, album, ...): which song the row is
    about = {k: v for k, v in clip.meta.items() if k not in (*WARNING_KEYS, "sr", "file", "start_s", "file_duration_s")}
    meta = {"meta": about} if about else {}
    if clip.error is not None or clip.pcm is None:
        return {"file": str(path), "clip": row, **meta, "error": clip.error}
    return {"file": str(path), "clip": row, **meta, **_clip_record(path, clip, settings, png)}


def window_record(path: str | Path, clip: Any, settings: dict[str, Any] | None, png: Path | None) -> dict[str, Any]:
    """The ``m2i analyze --windows`` record of one window of a file (a clip of
    :func:`m2i.audio.datasets.load_dataset`): the ``m2i analyze --json`` shape, ``start_s`` saying
    where the window starts; a window that cannot be read or analysed (silence between movements)
    gives ``{"file", "start_s", "error"}``, and a file that cannot be read at all ``{"file", "error"}``."""
    start = window_start(clip)
    try:
        if clip.error is None and clip.pcm is not None:
            return _clip_record(path, clip, settings, png)
        why = clip.error
    except M2IError as exc:
        why = str(exc)
    return {"file": str(path), **({} if start is None else {"start_s": start}), "error": why}


def window_start(clip: Any) -> float | None:
    """Where a window of a file starts (s): ``start_s`` of its meta, or the ``@0`` of its source for
    a file short enough to be one window; None for a clip that stands for the whole file (one
    that could not be read)."""
    if (start := clip.meta.get("start_s")) is not None:
        return float(start)
    head, at, tail = str(clip.source).rpartition("@")
    try:
        return float(tail) if at else None
    except ValueError:
        return None


def _clip_record(path: str | Path, clip: Any, settings: dict[str, Any] | None, png: Path | None) -> dict[str, Any]:
    """One analysed clip in the ``m2i analyze --json`` shape."""
    from m2i.audio.datasets import WARNING_KEYS

    out = analyze_clip(clip.pcm, 16000, settings=clip_settings(settings, clip.meta, clip.pcm.size / 16000))
    if png is not None:
        from m2i.audio.spectrogram import render_png

        out["spectrogram_png"] = str(render_png(clip.pcm, 16000, png))
    said = [clip.meta[k] for k in WARNING_KEYS if clip.meta.get(k)]
    warning = {"warning": "; ".join(said)} if said else {}
    return {"file": str(path), "start_s": float(clip.meta.get("start_s", 0.0)), **out, **warning}
