"""Fixtures for the audio tests: real audio built here (pretty_midi synthesis) and the demo clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SR = 16000
DEMO = Path(__file__).resolve().parents[2] / "m2i" / "data" / "demo"


def synth_notes(notes, *, program: int = 0, sr: int = SR, duration: float | None = None, velocity: int = 90):
    """Render ``[(start_s, end_s, midi), ...]`` with pretty_midi's additive sine synthesis."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    for s, e, p in notes:
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=int(p), start=float(s), end=float(e)))
    pm.instruments.append(inst)
    y = pm.synthesize(fs=sr, wave=_harmonic_wave)
    if duration is not None:
        n = int(duration * sr)
        y = y[:n] if y.size >= n else np.pad(y, (0, n - y.size))
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def write_mp3(path: Path, y: np.ndarray, sr: int = SR, *, damaged: int = 0, keep: float = 1.0) -> None:
    """``y`` as an MP3 file, with the frame headers of ``damaged`` frames past the first third
    zeroed (a scratched copy), cut to its first ``keep`` share of bytes (a copy that stopped early)."""
    import soundfile as sf

    sf.write(path, y, sr, format="MP3", subtype="MPEG_LAYER_III")
    data = bytearray(path.read_bytes())
    heads = [i for i in range(len(data) // 3, len(data) - 1) if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0]
    for i in heads[:damaged]:
        data[i] = 0
    path.write_bytes(bytes(data[: int(len(data) * keep)]))


def _harmonic_wave(phase):
    """A reed-like tone: the first four harmonics with decaying weights."""
    return np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.3 * np.sin(3 * phase) + 0.15 * np.sin(4 * phase)


def drum_loop(bpm: float, *, duration: float = 10.0, sr: int = SR, hats: bool = True, seed: int = 0) -> np.ndarray:
    """A rock beat: kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(duration * sr))

    def hit(x: np.ndarray, t: float) -> None:
        i = int(t * sr)
        n = min(x.size, y.size - i)
        if n > 0:
            y[i : i + n] += x[:n]

    t_k, t_s, t_h = (np.arange(int(d * sr)) / sr for d in (0.15, 0.19, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(60 + 100 * np.exp(-t_k * 30)) / sr) * np.exp(-t_k * 12)
    beat = 60.0 / bpm
    for b in range(int(duration / beat) + 1):
        t = b * beat
        hit(kick if b % 2 == 0 else 0.5 * rng.standard_normal(t_s.size) * np.exp(-t_s * 25), t)
        if hats:
            for off in (0.0, beat / 2):
                hit(0.15 * np.diff(rng.standard_normal(t_h.size + 1)) * np.exp(-t_h * 60), t + off)
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def scale_notes(tonic_midi: int, steps, *, bpm: float, start: float = 0.25):
    beat = 60.0 / bpm
    out, t, pitch = [], start, tonic_midi
    for st in steps:
        pitch += st
        out.append((t, t + beat * 0.95, pitch))
        t += beat
    return out


@pytest.fixture(scope="session")
def demo_entries():
    return json.loads((DEMO / "clips.json").read_text())


@pytest.fixture(scope="session")
def demo_results(demo_entries):
    """analyze_clip on every demo clip, once per session."""
    import soundfile as sf

    from m2i.audio.analyze import analyze_clip

    out = {}
    for e in demo_entries:
        y, sr = sf.read(str(DEMO / e["file"]), dtype="float32")
        out[e["file"]] = (e, analyze_clip(y, sr))
    return out
