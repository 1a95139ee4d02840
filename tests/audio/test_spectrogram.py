"""Mel-spectrogram text summary and PNG picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from m2i.audio.spectrogram import render_png, summarize
from m2i.errors import InputError

SR = 16000


def _tone(freq, seconds=3.0, amp=0.3):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_summary_names_where_the_energy_is():
    assert summarize(_tone(110.0), SR).startswith("energy mostly low")
    assert summarize(_tone(3000.0), SR).startswith("energy mostly high")
    rising = _tone(440.0) * np.linspace(0.01, 1, 3 * SR, dtype=np.float32)
    assert "level rising" in summarize(rising, SR)


def test_png_is_a_real_picture(tmp_path):
    y = np.concatenate([_tone(220.0, 1.0), _tone(1760.0, 1.0)])
    out = render_png(y, SR, tmp_path / "sub" / "mel.png", width=200, height=64)
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (200, 64)
    px = np.asarray(img.convert("L"), dtype=float)
    # the low tone lights the lower left, the high tone the upper right
    assert px[48:, :80].mean() > px[:16, :80].mean()
    assert px[:40, 120:].max() > px[:40, :80].max() - 1


def test_bad_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        summarize(np.full(SR, np.nan, np.float32), SR)
