"""Dataset loaders: every input becomes 16 kHz mono float32 clips.

Accepted inputs for :func:`load_dataset`:

- the annotation file users already have (``label_data_with_16kHz_audio.npy``): a numpy object
  array of dicts with ``audio``, ``style`` and ``audio_meta``. It needs pickle, so it is read
  with a restricted unpickler (:func:`safe_load_npy`) that accepts numpy arrays and plain
  containers only; a crafted file cannot run code.
- a plain numeric ``.npy`` array, ``[N, T]`` (N clips), ``[T, channels]`` (one signal of at most
  :data:`MAX_CHANNELS` channels, mixed to mono) or ``[T]`` (one signal, cut into windows like an
  audio file when longer than one), at 16 kHz unless ``npy_sr`` says otherwise (``--sr``);
- an audio file (wav, flac, ogg, opus, mp3, aiff) or a folder of them (searched recursively); long files
  are sliced into ``clip_s`` windows every ``hop_s`` seconds;
- the string ``"demo"``: the clips bundled in ``m2i/data/demo``.

A bad clip never stops the iteration: it is yielded as a :class:`Clip` whose ``error`` says what
is wrong, and the ingest stage stores it as a failed sample. Only an unusable *path* (missing,
empty folder, not audio at all, a pickle that tries to load code) raises :class:`InputError`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import pickle
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2i.errors import InputError

logger = logging.getLogger(__name__)

SR = 16000
"""Sample rate of every clip m2i stores and analyses."""

MIN_CLIP_S = 1.0
"""Clips shorter than this are rejected."""

SILENCE_DBFS = -60.0
"""A clip whose RMS level is below this is treated as silence."""

MAX_CHANNELS = 8
"""A 2-D array with at most this many columns (and more rows) is one multichannel signal."""

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".oga", ".opus", ".aif", ".aiff")

UNREAD_AUDIO = {".m4a": "AAC", ".aac": "AAC", ".mp4": "AAC", ".m4b": "AAC", ".wma": "WMA", ".ape": "Monkey's Audio",
                ".wv": "WavPack", ".alac": "ALAC", ".webm": "WebM", ".mka": "Matroska", ".amr": "AMR"}
"""Audio formats libsndfile does not decode: a folder's such files are reported, not passed over."""


def sniff_suffix(head: bytes) -> str | None:
    """The suffix m2i reads a file by, from its first bytes (at least 128 of them for Opus): ``.wav``,
    ``.aiff``, ``.flac``, ``.ogg``, ``.opus``, ``.mp3`` or ``.npy``; one of :data:`UNREAD_AUDIO`'s for a
    format libsndfile does not decode (``.m4a``, ``.aac``, ``.webm``, ``.wma``); None for anything else.

    >>> sniff_suffix(b"RIFF\\x24\\x00\\x00\\x00WAVEfmt ")
    '.wav'
    >>> sniff_suffix(b"hello") is None
    True
    """
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return ".aiff"
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"OggS":
        return ".opus" if b"OpusHead" in head[:128] else ".ogg"
    if head[:6] == b"\x93NUMPY":
        return ".npy"
    if head[4:8] == b"ftyp":
        return ".m4a"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    if head[:4] == b"\x30\x26\xb2\x75":
        return ".wma"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS: a frame sync with layer 0
        return ".aac"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return ".mp3"
    return None


def mend_streamed_wav(path: Path) -> None:
    """Write the true sizes into the header of a WAV file that was written to a pipe.

    A writer that cannot seek back (``ffmpeg -f wav -``, ``sox -t wav -``) leaves the RIFF and
    ``data`` sizes at 0 or 0xFFFFFFFF; libsndfile then reads no samples, or trusts a length the file
    does not have. Once the stream is in a file its length is known. A file whose sizes already fit
    is left as it is; RF64 and anything else is left to libsndfile.
    """
    size = path.stat().st_size
    chunk = _wav_data_chunk(path)
    if chunk is None or size > 0xFFFFFFFF:
        return
    at, n = chunk
    room = size - (at + 8)
    if n in (0, 0xFFFFFFFF) or n > room:
        with open(path, "r+b") as f:
            f.seek(at + 4)
            f.write(room.to_bytes(4, "little"))
            f.seek(4)
            f.write((size - 8).to_bytes(4, "little"))


def is_stream(path: str | Path) -> bool:
    """``"-"`` (standard input; a file named ``-`` is ``./-``), a path that is neither a file nor
    a folder: a pipe (``<(ffmpeg ...)``, ``/dev/stdin`` fed by a pipe) or a device, or a file
    descriptor's name (``/dev/stdin < song.wav``, ``/dev/fd/3``, ``/proc/self/fd/0``), which has no
    suffix to read it by. ``m2i analyze`` reads these by their bytes; a run refuses them."""
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


DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"


@dataclass
class Clip:
    """One clip of audio ready to ingest.

    Attributes
    ----------
    source : str
        Where it came from: the file path, plus ``#index`` (row of a .npy) or ``@start_s``
        (slice of a long file).
    meta : dict
        ``audio_meta`` of the annotation file, or sample-rate/channel/file information.
    pcm : np.ndarray [shape=(n,), dtype=float32] or None
        Mono 16 kHz samples in [-1, 1]; ``None`` when the clip is bad.
    error : str or None
        One sentence saying why the clip cannot be used; ``None`` for a good clip.
    """

    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    pcm: np.ndarray | None = None
    error: str | None = None


def pcm_sha256(pcm: np.ndarray) -> str:
    """Content hash of a clip: SHA-256 of its float32 little-endian bytes.

    Parameters
    ----------
    pcm : np.ndarray [shape=(n,)]
        Mono samples; converted to float32 little-endian before hashing.

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> len(pcm_sha256(np.zeros(16000, dtype=np.float32)))
    64
    """
    data = np.ascontiguousarray(np.asarray(pcm, dtype="<f4"))
    return hashlib.sha256(data.tobytes()).hexdigest()


# --------------------------------------------------------------------------- safe .npy loading

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {}


def _allowed() -> dict[tuple[str, str], Any]:
    """The only globals an annotation pickle may name: numpy arrays, dtypes, scalars, containers."""
    if not _ALLOWED_GLOBALS:
        import builtins
        import codecs
        import collections

        reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
        scalar = np.float64(0).__reduce__()[0]
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            _ALLOWED_GLOBALS[(mod, "_reconstruct")] = reconstruct
            _ALLOWED_GLOBALS[(mod, "scalar")] = scalar
        _ALLOWED_GLOBALS[("numpy", "ndarray")] = np.ndarray
        _ALLOWED_GLOBALS[("numpy", "dtype")] = np.dtype
        for name in dir(np.dtypes):
            if name.endswith("DType"):
                _ALLOWED_GLOBALS[("numpy.dtypes", name)] = getattr(np.dtypes, name)
        for name in ("list", "dict", "tuple", "set", "frozenset", "bytearray", "complex"):
            _ALLOWED_GLOBALS[("builtins", name)] = getattr(builtins, name)
            _ALLOWED_GLOBALS[("__builtin__", name)] = getattr(builtins, name)
        _ALLOWED_GLOBALS[("collections", "OrderedDict")] = collections.OrderedDict
        _ALLOWED_GLOBALS[("_codecs", "encode")] = codecs.encode
    return _ALLOWED_GLOBALS


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy arrays, dtypes and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return obj


def safe_load_npy(path: str | Path) -> np.ndarray:
    """Load a ``.npy`` file; object arrays go through a restricted unpickler.

    Parameters
    ----------
    path : str or Path
        A ``.npy`` file (numeric, or an object array of dicts/arrays/strings).

    Returns
    -------
    np.ndarray

    Raises
    ------
    InputError
        When the file is not a valid .npy file, or its pickle names anything other than numpy
        arrays and plain containers (such a file could run code when loaded).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if (size := os.fstat(fh.fileno()).st_size) == 0:
                raise InputError(f"{path} is empty (0 bytes); copy it again.")
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            if not dtype.hasobject:
                count, start = int(np.prod(shape)), fh.tell()
                held = (size - start) // max(dtype.itemsize, 1)
                if held < count:  # numpy's own message ("could only read 36 elements") names no cause
                    raise InputError(f"{path} is cut short: its header announces {count} values and it holds "
                                     f"{held}; copy it again.")
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            try:
                obj = _RestrictedUnpickler(fh).load()
            except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as exc:
                if isinstance(exc, EOFError) or "truncated" in str(exc):  # not a refusal: the copy is incomplete
                    raise InputError(f"{path} is cut short: its pickled contents end early; copy it again.") from exc
                raise InputError(
                    f"{path} contains pickled code or objects other than numpy arrays and plain "
                    f"containers ({exc}); refusing to load it: re-save it with plain arrays and dicts."
                ) from exc
    except InputError:
        raise
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise InputError(f"{path} is not a readable .npy file ({exc}); check that it is complete.") from exc
    if not isinstance(obj, np.ndarray):
        obj = np.asarray(obj, dtype=object)
    return obj


# --------------------------------------------------------------------------- clip checks


def to_mono_16k(y: np.ndarray, sr: int) -> np.ndarray:
    """Convert samples to mono float32 at 16 kHz (soxr, high quality).

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (n, channels)]
        Samples; integer types are scaled to [-1, 1].
    sr : int > 0
        Their sample rate.

    Returns
    -------
    np.ndarray [shape=(m,), dtype=float32]
    """
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        info = np.iinfo(y.dtype)
        if y.dtype.kind == "u":
            y = (y.astype(np.float64) - (info.max + 1) / 2) / ((info.max + 1) / 2)
        else:
            y = y.astype(np.float64) / float(-info.min)
    y = y.astype(np.float64, copy=False)
    if y.ndim == 2:
        y = y.mean(axis=1)
    if sr != SR:
        import soxr

        y = soxr.resample(y, sr, SR, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


_KIND_WORDS = {"U": "text", "S": "text", "b": "true/false", "c": "complex", "O": "Python object",
               "M": "date", "m": "time span", "V": "structured record"}


def kind_of_values(dtype: np.dtype) -> str:
    """What a non-numeric array holds, in words a user knows, numpy's name beside it: "text (<U4)"."""
    words = _KIND_WORDS.get(dtype.kind)
    return str(dtype) if not words else words if dtype.kind == "O" else f"{words} ({dtype})"


def check_pcm(pcm: np.ndarray, sr: int = SR) -> str | None:
    """Return one sentence saying why a clip is unusable, or ``None`` when it is fine.

    Checks, in order: numeric, one-dimensional, finite (no NaN/inf), at least
    :data:`MIN_CLIP_S` long, and louder than :data:`SILENCE_DBFS` once its DC offset (the mean,
    which is not sound) is removed.
    """
    a = np.asarray(pcm)
    if a.dtype.kind not in "fiu":
        return f"the clip holds {kind_of_values(a.dtype)} values, not audio samples; supply numeric PCM."
    if a.ndim != 1:
        return f"the clip has shape {a.shape}, not one mono signal; supply a 1-D array."
    if a.size == 0:
        return "the clip is empty; supply at least 1 s of audio."
    if not np.all(np.isfinite(a)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        return f"the clip contains {bad} NaN or infinite samples; repair or drop it."
    dur = a.size / float(sr)
    if dur < MIN_CLIP_S:
        return f"the clip is {dur:.2f} s long, shorter than {MIN_CLIP_S:g} s; supply longer audio."
    x = a.astype(np.float64)
    rms = float(np.sqrt(np.mean(np.square(x - x.mean()))))
    level = 20 * np.log10(rms) if rms > 0 else -np.inf
    if not np.any(x):
        return "the clip is silent (every sample is 0); drop it."
    if rms == 0:
        return "the clip is silent (every sample has the same value); drop it."
    if level < SILENCE_DBFS:
        return f"the clip is silent (RMS {level:.0f} dBFS, below {SILENCE_DBFS:.0f} dBFS); drop it."
    return None


def _make_clip(source: str, pcm: np.ndarray | None, meta: dict[str, Any], sr: int = SR) -> Clip:
    try:
        arr = np.asarray(pcm)
        if arr.dtype.kind not in "fiu":
            return Clip(source, meta, None, check_pcm(arr))
        if arr.ndim == 2 and min(arr.shape) <= MAX_CHANNELS:  # (n, ch) or (ch, n) stereo in an array
            arr = arr if arr.shape[1] <= MAX_CHANNELS else arr.T
            meta = {**meta, "channels": int(arr.shape[1])}
        if arr.ndim == 2 or sr != SR or arr.dtype.kind in "iu":
            problem = None if arr.ndim <= 2 else "bad shape"
            if problem is None:
                if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                    return Clip(source, meta, None, check_pcm(arr.reshape(-1), sr))
                arr = to_mono_16k(arr, sr)
        arr = np.asarray(arr, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        return Clip(source, meta, None, f"the clip cannot be read as audio samples ({exc}); check its format.")
    err = check_pcm(arr)
    if err:
        return Clip(source, meta, None, err)
    peak = float(np.max(np.abs(arr)))
    if peak > 1.0:  # int-scaled floats or clipped renders: normalise rather than distort
        arr = arr / peak
        meta = {**meta, "rescaled_from_peak": round(peak, 4)}
    return Clip(source, meta, np.ascontiguousarray(arr, dtype=np.float32), None)


def plain_json(value: Any) -> Any:
    """Make metadata JSON-serialisable: numpy values as Python ones, every string valid UTF-8
    (:func:`utf8_text`)."""
    if isinstance(value, str):
        return utf8_text(value)
    if isinstance(value, np.ndarray):
        return [plain_json(v) for v in value.tolist()] if value.ndim else plain_json(value.item())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {utf8_text(str(k)): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8.

    A file name whose bytes are not UTF-8 (``café.wav`` from an old Latin-1 archive) comes from
    the filesystem with each such byte as a lone surrogate (``os.fsdecode``), which neither the
    database nor a JSON line can hold; they are written ``\\xe9`` instead, as ``ls -b`` shows them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def _sf_path(path: Path) -> bytes:
    """``path`` for soundfile, which encodes a str strictly: as bytes, a name that is not UTF-8 opens too."""
    return os.fsencode(path)


# --------------------------------------------------------------------------- sources


NPY_RATES = (44100, 48000, 22050, 24000, 32000, 11025, 8000)
"""Sample rates a .npy of clips is often written at (librosa loads at 22050 Hz by default)."""

WARNING_KEYS = ("decoder_warning", "rate_warning", "cut_warning")
"""Clip meta keys holding one sentence about a clip that was read but may be wrong; ingest records
each as a warning event, ``m2i analyze`` prints it."""


def rate_hint(path: Path, n_samples: int) -> str | None:
    """One sentence when clips of ``n_samples`` taken as 16 kHz are an odd length but a whole number
    of seconds at another common rate (``220500``: 13.78 s at 16 kHz, 10 s at 22.05 kHz), else None.
    A .npy carries no sample rate, and a wrong one shifts every pitch and tempo."""
    if n_samples % SR == 0:
        return None
    whole = [r for r in NPY_RATES if n_samples % r == 0 and 1 <= n_samples // r <= 600]
    if not whole:
        return None
    rate = min(whole, key=lambda r: abs(n_samples / r - 10.0))  # the likeliest: nearest m2i's 10 s clips
    return (f"{path.name} holds clips of {n_samples} samples, read as 16 kHz ({n_samples / SR:.2f} s), which is "
            f"exactly {n_samples // rate} s at {rate} Hz; if they were recorded at {rate} Hz, their pitches and "
            f"tempi are wrong: ingest them into a new run with --sr {rate}")


def _iter_npy(path: Path, sr: int | None = None, *, clip_s: float = 10.0, hop_s: float = 10.0) -> Iterator[Clip]:
    """The clips of a .npy file at ``sr`` Hz (None: 16 kHz, with :func:`rate_hint` on the first clip's
    meta as ``rate_warning`` when its length suggests another rate). Rows of ``[N, T]`` are clips as
    given; one long signal (``[T]`` or ``[T, channels]``) is cut into windows like an audio file."""
    for i, clip in enumerate(_npy_clips(path, sr or SR, clip_s=clip_s, hop_s=hop_s)):
        n_samples = int(clip.meta.pop("_n_samples", 0))  # the row's length as stored, before resampling
        if i == 0 and sr is None and (hint := rate_hint(path, n_samples)):
            clip.meta["rate_warning"] = hint
        yield clip


def _npy_clips(path: Path, sr: int, *, clip_s: float, hop_s: float) -> Iterator[Clip]:
    def signal(y: np.ndarray, meta: dict[str, Any]) -> Iterator[Clip]:
        # one clip named "x.npy" unless it is longer than one window (then "x.npy@0", "x.npy@10", ...)
        one = _one_window(len(y), sr, clip_s)
        yield from _slices(str(path), y, sr, meta, clip_s=None if one else clip_s, hop_s=hop_s)

    arr = safe_load_npy(path)
    if arr.dtype.hasobject:
        items = arr.reshape(-1) if arr.ndim else [arr.item()]
        if len(items) == 0:
            raise InputError(f"{path} holds no clips; supply a non-empty array.")
        if not any(isinstance(it, dict) or isinstance(it, np.ndarray) for it in items):
            raise InputError(
                f"{path} holds {type(items[0]).__name__} objects, not audio; supply an array of clips "
                "or of dicts with an 'audio' entry."
            )
        for i, item in enumerate(items):
            source = f"{path}#{i}"
            if isinstance(item, dict):
                meta = plain_json(item.get("audio_meta") or {})
                if not isinstance(meta, dict):
                    meta = {"audio_meta": meta}
                if "audio" not in item:
                    yield Clip(source, meta, None, "the entry has no 'audio' field; add the 16 kHz samples.")
                    continue
                yield _make_clip(source, item["audio"], {**meta, "_n_samples": np.size(item["audio"])}, sr)
            elif isinstance(item, np.ndarray):
                yield _make_clip(source, item, {"sr": sr, "_n_samples": item.size}, sr)
            else:
                kind = type(item).__name__
                yield Clip(source, {}, None, f"the entry is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not audio; drop it.")
        return
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{path} holds {kind_of_values(arr.dtype)} values, not audio samples; supply a numeric array.")
    if arr.ndim == 1:
        yield from signal(arr, {"sr": sr, "n_samples": int(arr.size)})
        return
    if arr.ndim != 2:
        raise InputError(f"{path} has shape {arr.shape}; supply [N, T] clips or one [T] signal.")
    if arr.shape[0] == 0:
        raise InputError(f"{path} holds no clips; supply a non-empty array.")
    if arr.shape[1] <= MAX_CHANNELS < arr.shape[0]:
        # [T, channels]: one multichannel signal (what np.save(soundfile.read(...)) writes), not T clips
        yield from signal(arr, {"sr": sr, "channels": int(arr.shape[1]), "n_samples": int(arr.shape[0])})
        return
    if arr.shape[1] < int(MIN_CLIP_S * sr):
        raise InputError(
            f"{path} has shape {arr.shape}: {arr.shape[0]} clips of {arr.shape[1]} samples "
            f"({arr.shape[1] / sr:.3f} s at {sr / 1000:g} kHz), all shorter than {MIN_CLIP_S:g} s; "
            "supply [N, T] clips of at least 1 s, [T, channels] or one [T] signal."
        )
    for i in range(arr.shape[0]):
        yield _make_clip(f"{path}#{i}", arr[i], {"sr": sr, "_n_samples": int(arr.shape[1])}, sr)


def _window_starts(start: int, n: int, win: int, hop: int, min_len: int) -> Iterator[int]:
    """Window starts from ``start`` on for a signal of ``n`` samples: every ``hop`` until a window
    reaches the end; a short tail (under ``min_len``) after full windows is dropped, not reported."""
    while start < n:
        if n - start < min_len and start > 0:
            return
        yield start
        if start + win >= n:
            return
        start += hop


def _one_window(n_samples: int, sr: int, clip_s: float | None) -> bool:
    """A signal this long is one clip, not cut into windows (up to half a second over ``clip_s``)."""
    return clip_s is None or n_samples <= int(round((clip_s + 0.5) * sr))


def _slices(
    source: str, y: np.ndarray, sr: int, meta: dict[str, Any], *, clip_s: float | None, hop_s: float = 10.0,
    total_s: float | None = None,
) -> Iterator[Clip]:
    """Cut a signal into windows (``clip_s`` None: the whole signal is one clip); ``total_s``, the
    recording's length as read before resampling (default: the signal's)."""
    n = y.shape[0]
    if _one_window(n, sr, clip_s):
        yield _make_clip(source if clip_s is None else f"{source}@0", y, meta, sr)
        return
    win = int(round(clip_s * sr))
    for start in _window_starts(0, n, win, max(1, int(round(hop_s * sr))), int(MIN_CLIP_S * sr)):
        yield _window_clip(source, y[start : start + win], start, sr, meta, total_s or n / sr)


def _window_clip(source: str, seg: np.ndarray, start: int, sr: int, meta: dict[str, Any],
                 total_s: float | None) -> Clip:
    """A window of a longer signal: its meta says where it starts (``start_s``) and how long the
    whole recording is (``file_duration_s``, when known), so :func:`ends_inside_recording` can tell."""
    where = {"start_s": round(start / sr, 3), **({"file_duration_s": round(total_s, 3)} if total_s else {})}
    return _make_clip(f"{source}@{start / sr:g}", seg, {**meta, **where}, sr)


def ends_inside_recording(meta: dict[str, Any], duration_s: float) -> bool:
    """Whether a clip stops at least :data:`MIN_CLIP_S` before the end of the recording it was cut
    from: a window of a longer file or signal whose ``start_s`` plus its length ``duration_s`` falls
    short of ``file_duration_s``, or a row of the annotation file (its ``slice_pos``: a slice of a
    track). A whole file, a clip of a plain .npy and a file's last window may end where their music
    ends; nothing is known of them. :func:`m2i.audio.analyze.clip_settings` reads such a clip's key
    without the final-bass cue, which assumes the clip ends on a cadence.

    >>> ends_inside_recording({"start_s": 10.0, "file_duration_s": 30.0}, 10.0)
    True
    >>> ends_inside_recording({"start_s": 20.0, "file_duration_s": 30.0}, 10.0)
    False
    """
    if "slice_pos" in meta:
        return True
    start, total = meta.get("start_s"), meta.get("file_duration_s")
    if start is None or total is None:
        return False
    return float(total) - float(start) - float(duration_s) >= MIN_CLIP_S


STREAM_ABOVE_S = 600.0
"""Audio files longer than this are read, mixed down and resampled block by block (a few MB at a
time instead of ~4 GB per hour of stereo audio read whole). soxr's stream gives the same samples as
its one-shot call, so the clips and their content hashes are the same either way."""

_BLOCK_FRAMES = 1 << 18


def _stream_audio_file(path: Path, info: Any, *, clip_s: float, hop_s: float, notes: list[str]) -> Iterator[Clip]:
    """The windows of a long file, as :func:`_slices` cuts the whole file read at once.

    A block that cannot be decoded, or holds NaN/inf, ends the file with one failed clip naming
    the time; the windows before it stay (float files are checked for NaN/inf before any window,
    as a file read whole would be). The decoder's messages go to ``notes`` (:func:`native_stderr`).
    """
    import soundfile as sf

    meta = _file_meta(path, info)
    sr = int(info.samplerate)
    win, hop, min_len = int(round(clip_s * SR)), max(1, int(round(hop_s * SR))), int(MIN_CLIP_S * SR)
    announced = info.frames / sr if info.frames else None  # the header's length, for the windows read so far

    def blocks() -> Iterator[np.ndarray]:
        it = sf.blocks(_sf_path(path), blocksize=_BLOCK_FRAMES, dtype="float64", always_2d=True)
        while True:
            with native_stderr(notes):
                block = next(it, None)
            if block is None:
                return
            yield block

    if str(info.subtype) in ("FLOAT", "DOUBLE"):
        for block in blocks():
            if not np.all(np.isfinite(block)):
                yield Clip(str(path), meta, None, check_pcm(block.reshape(-1), sr))
                return
    stream = None
    if sr != SR:
        import soxr

        stream = soxr.ResampleStream(sr, SR, 1, dtype="float64", quality="HQ")
    buf = np.zeros(0, dtype=np.float32)
    buf_start = nxt = read = 0  # output index of buf[0], next window start, input frames read
    try:
        for block in blocks():
            if not np.all(np.isfinite(block)):
                raise RuntimeError(f"NaN or infinite samples at {read / sr:.1f} s")
            read += block.shape[0]
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
            out = stream.resample_chunk(mono, last=False) if stream is not None else mono
            buf = np.concatenate([buf, out.astype(np.float32)])
            while nxt + win < buf_start + buf.shape[0]:  # more follows: not the last window
                yield _window_clip(str(path), buf[nxt - buf_start : nxt - buf_start + win], nxt, SR, meta, announced)
                nxt += hop
            drop = min(nxt - buf_start, buf.shape[0])
            buf, buf_start = buf[drop:], buf_start + drop
    except Exception as exc:  # libsndfile stops on a damaged block
        yield Clip(str(path), meta, None, f"{path.name} could not be decoded after {read / sr:.1f} s "
                   f"({str(exc).strip()[:160]}); the clips before that point were kept.")
        return
    if info.frames and read < info.frames * 0.98:
        yield Clip(str(path), meta, None, f"{path.name} ends after {read / sr:.1f} s of the {info.frames / sr:.1f} s "
                   "its header announces; the clips before that point were kept.")
        return
    if stream is not None:
        buf = np.concatenate([buf, stream.resample_chunk(np.zeros(0), last=True).astype(np.float32)])
    n = buf_start + buf.shape[0]
    for start in _window_starts(nxt, n, win, hop, min_len):
        yield _window_clip(str(path), buf[start - buf_start : start - buf_start + win], start, SR, meta, read / sr)


def _wav_shortfall(path: Path) -> int:
    """Bytes missing from a RIFF/WAVE file's data chunk (0 when complete or not a WAV, and when the
    size is 0xFFFFFFFF: "unknown", what ffmpeg writes to a pipe, `ffmpeg ... -f wav - | tee x.wav`;
    libsndfile then reads the data to the end of the file)."""
    chunk = _wav_data_chunk(path)
    if chunk is None or chunk[1] == 0xFFFFFFFF:
        return 0
    at, n = chunk
    return max(0, at + 8 + n - path.stat().st_size)


def _wav_data_chunk(path: Path) -> tuple[int, int] | None:
    """(offset, declared size) of a RIFF/WAVE file's ``data`` chunk; None for anything else."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            cid, clen = struct.unpack("<4sI", fh.read(8))
            if cid == b"data":
                return pos, clen
            pos += 8 + clen + (clen & 1)
    return None


def _file_meta(path: Path, info: Any) -> dict[str, Any]:
    return {
        "file": str(path),
        "sr": int(info.samplerate),
        "channels": int(info.channels),
        "subtype": str(info.subtype),
        "format": str(info.format),
    }


def _long_file(path: Path, clip_s: float | None, notes: list[str]) -> Any:
    """soundfile's info for a file to stream (:data:`STREAM_ABOVE_S`), else None (read it whole)."""
    if clip_s is None:
        return None
    import soundfile as sf

    try:
        if path.suffix.lower() == ".wav" and _wav_shortfall(path):
            return None  # reported by the whole-file reader
        with native_stderr(notes):
            info = sf.info(_sf_path(path))
    except Exception:  # not a format soundfile reads (mp3 on an old libsndfile): the whole-file path decides
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        return None
    return info if info.frames / info.samplerate > max(STREAM_ABOVE_S, clip_s + 1.0) else None


_EMPTY_FILE_BYTES = 4096
"""A file this large holds more than headers: if it decodes to no samples at all, it is damaged."""


def _read_audio(path: Path, notes: list[str]) -> tuple[np.ndarray, int, dict[str, Any]]:
    import soundfile as sf

    missing = _wav_shortfall(path) if path.suffix.lower() == ".wav" else 0
    if missing:
        raise RuntimeError(f"the file ends {missing} bytes before its data chunk does")
    try:
        with native_stderr(notes):
            info = sf.info(_sf_path(path))
            y, sr = sf.read(_sf_path(path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError; fall back to librosa
        if path.suffix.lower() not in (".mp3",):
            raise RuntimeError(str(exc)) from exc
        first = exc
    else:
        # a truncated or damaged MP3 decodes without an error, only shorter than its header says
        if info.frames and y.shape[0] < info.frames * 0.98:
            raise RuntimeError(f"only {y.shape[0] / sr:.1f} s of the {info.frames / sr:.1f} s its header announces "
                               "could be read")
        if y.shape[0] == 0 and (size := path.stat().st_size) > _EMPTY_FILE_BYTES:  # a cut Ogg Vorbis stream reads as 0 s
            raise RuntimeError(f"no audio could be read from its {size // 1024} KiB")
        return (y[:, 0] if y.shape[1] == 1 else y), int(sr), _file_meta(path, info)
    import warnings

    from m2i.audio.analyze import ensure_numba_cache

    ensure_numba_cache()
    import librosa

    try:
        with warnings.catch_warnings(), native_stderr(notes):
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as exc:  # audioread's NoBackendError says nothing; libsndfile's reason, if any, does
        why = str(first).strip().removesuffix(":").strip()
        raise RuntimeError(why if why and not why.startswith("Error opening") else
                           "no MP3 frame in it could be read") from exc
    y = np.asarray(y)
    meta = {"file": str(path), "sr": int(sr), "channels": 1 if y.ndim == 1 else int(y.shape[0])}
    return (y if y.ndim == 1 else y.T), int(sr), meta


MIN_FILE_SR = 4000
"""Files recorded below this rate hold nothing above 2 kHz: no melody, key or timbre to hear."""


def _too_low_rate(path: Path, sr: int) -> str | None:
    if sr >= MIN_FILE_SR:
        return None
    return (f"{path.name} is recorded at {sr} Hz, too low a sample rate for music (it holds nothing above "
            f"{sr // 2} Hz; m2i needs at least {MIN_FILE_SR} Hz); check what the file holds.")


_OGG_PAGE_MAX = 27 + 255 + 255 * 255
"""The largest Ogg page: header, 255 lacing values, 255 segments of 255 bytes."""


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _ogg_crc_table()


def _ogg_page_ok(page: bytes) -> bool:
    """Whether ``page`` (one whole page) carries the CRC its header states (Ogg's CRC-32, polynomial
    0x04C11DB7, computed with the CRC field zeroed): a real page, not "OggS" met inside audio data."""
    crc = 0
    for b in page[:22] + b"\0\0\0\0" + page[26:]:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[(crc >> 24) ^ b]
    return crc == int.from_bytes(page[22:26], "little")


def ogg_cut_short(path: Path) -> bool:
    """True for an Ogg file (Vorbis, Opus) whose stream breaks off: its last whole page does not end
    the stream (no end-of-stream flag), as in a download or copy cut short. libsndfile reads such a
    file without an error, to where it breaks off, and says nothing; every writer ends a stream it
    finishes with that flag. False when no whole page is found in the last 128 KiB (nothing to go by)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"OggS":
                return False
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 2 * _OGG_PAGE_MAX))
            tail = fh.read()
    except OSError:  # unreadable: the reader says why
        return False
    at = len(tail)
    while (at := tail.rfind(b"OggS", 0, at)) >= 0:
        head = tail[at:at + 27]
        if len(head) < 27 or head[4] != 0 or at + 27 + head[26] > len(tail):
            continue
        end = at + 27 + head[26] + sum(tail[at + 27:at + 27 + head[26]])
        if end <= len(tail) and _ogg_page_ok(tail[at:end]):
            return not head[5] & 0x04
    return False


_CUT_OGG = "the file is cut short (its Ogg stream breaks off without its end); the audio up to the break was read"


def _iter_audio_file(path: Path, *, clip_s: float, hop_s: float) -> Iterator[Clip]:
    notes: list[str] = []
    cut = ogg_cut_short(path)
    info = _long_file(path, clip_s, notes)
    if info is not None and (why := _too_low_rate(path, int(info.samplerate))):
        yield Clip(str(path), {"file": str(path), "sr": int(info.samplerate)}, None, why)
        return
    if info is not None:
        for clip in _stream_audio_file(path, info, clip_s=clip_s, hop_s=hop_s, notes=notes):
            yield _with_decoder_notes(clip, notes, cut=cut)
        return
    try:
        y, sr, meta = _read_audio(path, notes)
    except Exception as exc:
        if path.stat().st_size == 0:
            why = f"{path.name} is empty (0 bytes); copy it again."
        elif "Format not recognised" in str(exc):
            why = (f"{path.name} is not audio in a format m2i reads (wav, flac, ogg, opus, mp3, aiff), "
                   "whatever its name says; check what the file holds.")
        else:
            why = f"{path.name} could not be decoded ({str(exc).strip()[:160]}); it is corrupt or truncated."
        yield Clip(str(path), {"file": str(path)}, None, why)
        return
    if why := _too_low_rate(path, sr):
        yield Clip(str(path), meta, None, why)
        return
    if y.ndim == 2 and not np.all(np.isfinite(y)):
        yield Clip(str(path), meta, None, check_pcm(y.reshape(-1), sr))
        return
    if y.ndim == 2:
        y = y.mean(axis=1)
    if not np.all(np.isfinite(y)):
        yield Clip(str(path), meta, None, check_pcm(y, sr))
        return
    y16 = to_mono_16k(y, sr) if sr != SR else y.astype(np.float32)
    for clip in _slices(str(path), y16, SR, meta, clip_s=clip_s, hop_s=hop_s, total_s=y.shape[0] / sr):
        yield _with_decoder_notes(clip, notes, cut=cut)


def _with_decoder_notes(clip: Clip, notes: list[str], *, cut: bool) -> Clip:
    """A clip decoded from a file whose decoder met damaged data (libmpg123 resyncing past a bad
    frame header, or failing to dequantise a frame, which it then plays as silence) says so in its
    meta, ``decoder_warning``: one sentence, stored with the sample and printed by ``m2i analyze``.
    The file was read to its announced length (a short read fails it); a header whose byte count
    is off ("Xing stream size off") alone is not damage to the audio and is not reported. A clip of
    an Ogg file cut short (``cut``: :func:`ogg_cut_short`) says so in ``cut_warning``."""
    if clip.error is None and any(w in n for n in notes for w in ("error:", "Illegal", "resync", "Skipped")):
        clip.meta["decoder_warning"] = "the MP3 decoder met damaged data and skipped it; the audio may have gaps"
    if clip.error is None and cut:
        clip.meta["cut_warning"] = _CUT_OGG
    return clip


# what libmpg123 (inside libsndfile) writes to stderr about a damaged MP3, a line each
_DECODER_LINE = re.compile(rb"^(Note: |Warning: |\[src/libmpg123/)")
_FD2 = threading.RLock()  # re-entrant: a nested block borrows fd 2 from the outer one and gives it back


@contextmanager
def native_stderr(notes: list[str]) -> Iterator[None]:
    """Keep what native decoders write to file descriptor 2 off the terminal while a file is read.

    libmpg123 prints a line for every damaged frame ("Note: Trying to resync...") straight to fd 2,
    where the dashboard draws its screen (Textual writes to stderr) and where ``m2i analyze`` gives
    one sentence per bad file. Its lines are appended to ``notes``; anything else written to fd 2
    meanwhile (another thread's log line, a dashboard frame) is written back, in order, when the
    block ends. One block at a time per process (fd 2 is the process's).
    """
    with _FD2:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no fd 2 to borrow (a daemon started without one)
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                kept = []
                for line in tmp.read().splitlines(keepends=True):
                    if _DECODER_LINE.match(line):
                        notes.append(line.decode("utf-8", "replace").strip())
                    else:
                        kept.append(line)
                data = b"".join(kept)
                while data:
                    data = data[os.write(2, data):]


def demo_entries() -> list[dict[str, Any]]:
    """The bundled demo clips' index (``m2i/data/demo/clips.json``): per clip its ``file`` and what
    it is (title, composer, key, metre, ...)."""
    index = DEMO_DIR / "clips.json"
    if not index.exists():
        raise InputError(f"the demo clips are missing from {DEMO_DIR}; reinstall m2i.")
    return json.loads(index.read_text())


def _iter_demo() -> Iterator[Clip]:
    for entry in demo_entries():
        path = DEMO_DIR / entry["file"]
        for clip in _iter_audio_file(path, clip_s=10.0, hop_s=10.0):
            clip.source = f"demo:{entry['file']}"
            clip.meta = {**clip.meta, **{k: v for k, v in entry.items() if k != "file"}}
            clip.meta.pop("file", None)
            yield clip


def load_dataset(path: str | Path | Sequence[str | Path], *, clip_s: float = 10.0, hop_s: float = 10.0,
                 npy_sr: int | None = None) -> Iterator[Clip]:
    """Yield the clips of a dataset, 16 kHz mono float32, bad clips flagged not raised.

    Parameters
    ----------
    path : str or Path, or a sequence of them
        A ``.npy`` file, an audio file, a folder of audio files (recursive), or ``"demo"``; several
        (``m2i ingest clips/*.wav``) give their clips one after another, in the order given.
    clip_s : float > 0
        Window length for slicing long audio files, in seconds.
    hop_s : float > 0
        Hop between windows, in seconds (``hop_s < clip_s`` overlaps them).
    npy_sr : int > 0, optional
        Sample rate of the audio in ``.npy`` files, which carry none (audio files carry theirs).
        Default 16000, with a ``rate_warning`` on the first clip when its length is a whole
        number of seconds at another common rate but not at 16 kHz.

    Yields
    ------
    Clip
        In a stable order (files sorted by path).

    Raises
    ------
    InputError
        The path is missing, an empty folder, not audio at all, or a pickle that names code.

    Examples
    --------
    >>> clips = list(load_dataset("demo"))
    >>> clips[0].pcm.dtype
    dtype('float32')
    """
    if clip_s <= 0 or hop_s <= 0:
        raise InputError(f"clip_s={clip_s} and hop_s={hop_s} must both be positive seconds.")
    if npy_sr is not None and not 1000 <= npy_sr <= 384000:
        raise InputError(f"npy_sr={npy_sr} is not an audio sample rate; give the rate in Hz (e.g. 22050).")
    if not isinstance(path, (str, os.PathLike)):
        for one in path:
            try:
                yield from load_dataset(one, clip_s=clip_s, hop_s=hop_s, npy_sr=npy_sr)
            except InputError as exc:  # one of several, as a file in a folder: its clip fails, the others go on
                where = str(one) if str(one) == "demo" else os.path.abspath(Path(one).expanduser())
                yield Clip(utf8_text(where), {"file": utf8_text(where)}, None, utf8_text(str(exc)))
        return
    for clip in _dataset_clips(path, clip_s=clip_s, hop_s=hop_s, npy_sr=npy_sr):
        clip.source, clip.meta = utf8_text(clip.source), plain_json(clip.meta)
        clip.error = clip.error and utf8_text(clip.error)
        yield clip


def _dataset_clips(path: str | Path, *, clip_s: float, hop_s: float, npy_sr: int | None) -> Iterator[Clip]:
    if str(path) == "demo":
        yield from _iter_demo()
        return
    p = _checked_path(path)
    if p.is_dir():
        for f in folder_files(p):
            if not f.exists():
                yield Clip(str(f), {"file": str(f)}, None, _dangling(f) or f"{f.name} has gone.")
            elif f.suffix.lower() == ".npy":
                try:
                    yield from _iter_npy(f, npy_sr, clip_s=clip_s, hop_s=hop_s)
                except InputError as exc:
                    yield Clip(str(f), {"file": str(f)}, None, str(exc))
            elif f.suffix.lower() in UNREAD_AUDIO:  # a user's .m4a files are not passed over in silence
                yield Clip(str(f), {"file": str(f)}, None, _unread_audio(f))
            else:
                yield from _iter_audio_file(f, clip_s=clip_s, hop_s=hop_s)
        return
    if p.suffix.lower() == ".npy":
        yield from _iter_npy(p, npy_sr, clip_s=clip_s, hop_s=hop_s)
    else:
        yield from _iter_audio_file(p, clip_s=clip_s, hop_s=hop_s)


def _checked_path(path: str | Path) -> Path:
    """A dataset path made absolute (so a clip's source, by which a bad clip is recognised on the
    next ingest, does not depend on the folder the command ran in or on how the path was spelt),
    once it is known to be a folder, a .npy file or an audio file m2i reads; else one sentence."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    if str(path) == "-" and not p.exists():
        raise InputError("'-' (audio piped in) is read by m2i analyze only; m2i keeps where each clip of a run came "
                         "from, so save the audio to a file and give its path.")
    if not p.exists():
        raise InputError(_dangling(p) or f"{p} does not exist; give a .npy file, an audio file, a folder or 'demo'.")
    if is_stream(p):  # a pipe (<(ffmpeg ...), /dev/stdin) or a device
        raise InputError(f"{path} is a pipe or a device, not a file; m2i keeps where each clip of a run came from, "
                         "so save the audio to a file and give its path (m2i analyze reads a pipe).")
    if p.is_dir() or p.suffix.lower() == ".npy" or p.suffix.lower() in AUDIO_EXTENSIONS:
        return p
    if p.suffix.lower() in UNREAD_AUDIO:
        raise InputError(_unread_audio(p))
    raise InputError(
        f"{p} is not a .npy file, an audio file ({', '.join(AUDIO_EXTENSIONS)}) or a folder; "
        "convert it first."
    )


def _dangling(path: Path) -> str | None:
    """One sentence for a link to nothing (a dataset assembled from links to files since deleted)."""
    if not path.is_symlink():
        return None
    return f"{path.name} is a link to {os.readlink(path)}, which does not exist; fix the link or remove it."


def _unread_audio(path: Path) -> str:
    return (f"{path.name} is {UNREAD_AUDIO[path.suffix.lower()]} audio, which m2i does not decode; convert it to "
            f"FLAC or WAV first (ffmpeg -i {path.name} {path.stem}.flac).")


def folder_files(folder: Path) -> list[Path]:
    """The audio and .npy files under ``folder`` (recursively, hidden ones left out), in the order a
    folder is ingested; audio m2i does not decode (:data:`UNREAD_AUDIO`) is listed too, to be reported.

    Raises
    ------
    InputError
        The folder holds none.
    """
    wanted = (*AUDIO_EXTENSIONS, *UNREAD_AUDIO, ".npy")
    files, seen = [], set()
    # Linked folders are followed (a dataset assembled from links into /scratch is common on
    # clusters), each real folder once, and never one that holds the dataset (a link up the tree
    # would take in its neighbours); a link to nothing is listed, to be reported, not passed over.
    top = folder.resolve()
    for root, dirs, names in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        # hidden files and folders are not the user's music: macOS leaves a "._song.wav"
        # (AppleDouble metadata, not audio) beside every file copied from it
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and not (os.path.islink(os.path.join(root, d)) and top.is_relative_to(Path(root, d).resolve()))]
        for name in names:
            f = Path(root) / name
            if not name.startswith(".") and f.suffix.lower() in wanted and (f.is_file() or not f.exists()):
                files.append(f)
    files.sort()
    if not files:
        raise InputError(f"{folder} contains no audio files ({', '.join(AUDIO_EXTENSIONS)}) or .npy files.")
    return files


def open_dataset(path: str | Path | Sequence[str | Path], *, clip_s: float = 10.0, hop_s: float = 10.0,
                 npy_sr: int | None = None) -> Iterator[Clip]:
    """:func:`load_dataset`, with the path (each of several) checked now rather than at the first ``next()``.

    An unusable path (missing, an empty folder, a refused .npy) raises :class:`InputError` from
    this call, so a command can check its dataset before it creates a run or a database.
    """
    if not isinstance(path, (str, os.PathLike)):
        paths = list(path)  # several: each is checked now (nothing read), then read in turn
        for one in paths:
            if str(one) != "demo":
                _checked_path(one)
        return load_dataset(paths, clip_s=clip_s, hop_s=hop_s, npy_sr=npy_sr)
    clips = load_dataset(path, clip_s=clip_s, hop_s=hop_s, npy_sr=npy_sr)
    first = next(clips, None)
    return iter(()) if first is None else itertools.chain([first], clips)


__all__ = ["Clip", "SR", "WARNING_KEYS", "check_pcm", "folder_files", "load_dataset", "open_dataset", "pcm_sha256", "safe_load_npy", "to_mono_16k",
           "plain_json", "utf8_text"]
