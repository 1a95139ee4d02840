"""Optional mel-spectrogram views of a clip: a short text for the LLM and a PNG picture.

The text names where the energy sits (low < 250 Hz, mid 250-2000 Hz, high > 2 kHz), the spectral
centroid, how the level moves between the first and the second half, and how dense the onsets
are. The picture is a 64-band mel spectrogram in dB (80 dB range), low frequencies at the
bottom, coloured with a dark-to-bright ramp; it needs only numpy and Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m2i.errors import InputError

N_MELS = 64
_RAMP = np.array(  # black -> purple -> orange -> pale yellow
    [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]], dtype=float
)


def _mel_db(pcm: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    from m2i.audio.analyze import ensure_numba_cache

    ensure_numba_cache()
    import librosa

    y = np.asarray(pcm, dtype=np.float32)
    if y.ndim != 1 or y.size < sr // 10 or not np.all(np.isfinite(y)):
        raise InputError("the clip must be a finite mono signal of at least 0.1 s to draw its spectrogram.")
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=256, n_mels=N_MELS, fmax=sr / 2)
    freqs = librosa.mel_frequencies(n_mels=N_MELS, fmax=sr / 2)
    return librosa.power_to_db(S, ref=np.max(S) if S.max() > 0 else 1.0, top_db=80.0), freqs


def summarize(pcm: np.ndarray, sr: int = 16000) -> str:
    """One-sentence description of a clip's mel spectrogram.

    Parameters
    ----------
    pcm : np.ndarray [shape=(n,)]
        Mono samples.
    sr : int > 0
        Sample rate in Hz.

    Returns
    -------
    str
        e.g. ``"energy mostly mid (62 % mid, 30 % low, 8 % high); centroid 830 Hz; level
        steady (+1 dB second half); 3.1 onsets/s"``.

    Raises
    ------
    InputError
        The clip is not a finite mono signal of at least 0.1 s.
    """
    db, freqs = _mel_db(pcm, sr)
    power = 10 ** (db / 10.0)
    per_band = power.sum(axis=1)
    total = per_band.sum() + 1e-12
    low = float(per_band[freqs < 250].sum() / total)
    high = float(per_band[freqs > 2000].sum() / total)
    mid = max(0.0, 1.0 - low - high)
    shares = {"low": low, "mid": mid, "high": high}
    top = max(shares, key=shares.get)
    centroid = float((freqs[:, None] * power).sum() / (power.sum() + 1e-12))
    frame_db = 10 * np.log10(power.mean(axis=0) + 1e-12)
    half = frame_db.size // 2
    delta = float(frame_db[half:].mean() - frame_db[:half].mean()) if half else 0.0
    move = "rising" if delta > 3 else "falling" if delta < -3 else "steady"
    flux = np.maximum(0.0, np.diff(db, axis=1)).mean(axis=0)
    thr = max(float(np.percentile(flux, 85)), 1.0)
    onsets = int(np.sum((flux[1:-1] > flux[:-2]) & (flux[1:-1] >= flux[2:]) & (flux[1:-1] > thr)))
    rate = onsets / (np.asarray(pcm).size / sr)
    order = sorted(shares, key=shares.get, reverse=True)
    parts = ", ".join(f"{shares[k] * 100:.0f} % {k}" for k in order)
    return (
        f"energy mostly {top} ({parts}); centroid {centroid:.0f} Hz; "
        f"level {move} ({delta:+.0f} dB second half); {rate:.1f} onsets/s"
    )


def render_png(pcm: np.ndarray, sr: int, path: str | Path, *, width: int = 640, height: int = 256) -> Path:
    """Draw the clip's mel spectrogram as a PNG.

    Parameters
    ----------
    pcm : np.ndarray [shape=(n,)]
    sr : int > 0
    path : str or Path
        Output file; parent folders are created.
    width, height : int
        Picture size in pixels.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InputError
        The clip is unusable, or the path cannot be written.
    """
    from PIL import Image

    db, _ = _mel_db(pcm, sr)
    x = np.clip((db + 80.0) / 80.0, 0.0, 1.0)[::-1]  # low bands at the bottom
    pos = x * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(_RAMP) - 1)
    frac = (pos - lo)[..., None]
    rgb = (_RAMP[lo] * (1 - frac) + _RAMP[hi] * frac).astype(np.uint8)
    img = Image.fromarray(rgb, mode="RGB").resize((int(width), int(height)), Image.BILINEAR)
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, format="PNG")
    except OSError as exc:
        raise InputError(f"cannot write the spectrogram to {out} ({exc.strerror}); choose a writable path.") from exc
    return out
