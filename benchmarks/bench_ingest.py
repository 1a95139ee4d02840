"""Peak memory and time of reading one long recording into 10 s clips.

    python benchmarks/bench_ingest.py [--minutes 60] [--keep DIR]

Writes an N-minute stereo 44.1 kHz 16-bit WAV (tones that change every half second, written
block by block), then, each in a fresh process, cuts it into clips with ``load_dataset`` the way
``m2i ingest`` does, once streamed (the default for files over ``STREAM_ABOVE_S``) and once read
whole (``STREAM_ABOVE_S`` set past the file's length). Prints the clip count, the seconds and the
process's peak resident memory for each, and whether both gave the same content hashes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, resource, sys, time
import m2i.audio.datasets as D
if sys.argv[2] == "whole":
    D.STREAM_ABOVE_S = float("inf")
t = time.perf_counter()
h, n = hashlib.sha256(), 0
for c in D.load_dataset(sys.argv[1]):
    assert c.error is None, c.error
    h.update(D.pcm_sha256(c.pcm).encode())
    n += 1
print(n, round(time.perf_counter() - t, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, h.hexdigest())
"""


def write_recording(path: Path, minutes: float, sr: int = 44100) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    block = sr * 30
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=2, subtype="PCM_16") as fh:
        for start in range(0, int(minutes * 60 * sr), block):
            t = (start + np.arange(block)) / sr
            f = 220.0 * 2 ** (rng.integers(0, 24, size=61) / 12.0)[((t - start / sr) * 2).astype(int)]
            fh.write(np.stack([0.3 * np.sin(2 * np.pi * f * t), 0.3 * np.sin(2 * np.pi * f * 1.001 * t)], axis=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="m2i ingest of one long recording: streamed vs read whole")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--keep", help="folder for the WAV (default: a temporary one, removed after)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        wav = folder / f"recording_{args.minutes:g}min.wav"
        if not wav.exists():
            write_recording(wav, args.minutes)
        print(f"file: {wav.name}, {wav.stat().st_size / 2**20:.0f} MiB, stereo 44.1 kHz PCM_16")
        digests = {}
        for mode in ("streamed", "whole"):
            r = subprocess.run([sys.executable, "-c", CHILD, str(wav), mode], capture_output=True, text=True,
                               cwd=ROOT)
            if r.returncode != 0:
                print(f"{mode}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
                continue
            n, secs, mib, digest = r.stdout.split()
            digests[mode] = digest
            print(f"ingest_{mode}: {n} clips in {secs} s, peak RSS {mib} MiB")
        if len(digests) == 2:
            print(f"same_content_hashes: {digests['streamed'] == digests['whole']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
