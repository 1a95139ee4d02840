"""Wall time of ``m2i analyze`` in one process and spread over worker processes.

    python benchmarks/evalset/render.py        # once: renders bench-data/evalset
    python benchmarks/bench_analyze.py [--data bench-data/evalset] [--files 100] [--workers 1 2]

Links the first ``--files`` clips of the evaluation set into a temporary folder, and writes the same
clips (cut or padded to 10 s) as one ``[N, T]`` .npy, the shape of the annotation file's audio, and
one after another as one long float WAV (100 clips: 16 min 40 s, past the 10 minutes from which a
file is read block by block). Then runs ``m2i analyze FOLDER --json --workers N``, ``m2i analyze
clips.npy --json --workers N`` and ``m2i analyze long.wav --windows --json --workers N`` in a new
process for each N (after one untimed run that fills the workers' numba caches, as after the first
analyses on a machine), timing the whole command, start-up included. Prints the seconds and clips
per second for each, whether every N printed the same lines, and whether the long file's windows got
the features the same clips got in the .npy (they are the same samples): all but those that rest on the
key, which a window with more of its file after it reads without the final-bass cue (a .npy's clip
keeps it; ``m2i.audio.analyze.clip_settings``), and how many windows that changed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


KEYLESS = ("tempo", "beats", "downbeats", "time_signature", "melody_contour", "dynamic_intensity", "melody_notes",
           "tuning_cents")
"""The features, and confidences, that do not rest on the key (the chords, numerals, mood and ABC do)."""


def keyless(f: dict | None) -> dict | None:
    """A clip's features without those that rest on its key (:data:`KEYLESS`)."""
    if f is None:
        return None
    return {k: v for k, v in f.items() if k in KEYLESS} | {
        "confidence": {k: v for k, v in f["confidence"].items() if k in KEYLESS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "evalset"))
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    files = sorted(Path(args.data).glob("*.flac"))[: args.files]
    if not files:
        sys.exit(f"no clips in {args.data}; run python benchmarks/evalset/render.py first")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, str(ROOT / "cli.py"), "analyze"]
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as tmp_npy:
        for f in files:
            (Path(tmp) / f.name).symlink_to(f.resolve())
        # warm every worker's numba cache slot (each process compiles into its own, once per machine)
        subprocess.run([*cli, tmp, "--json", "--workers", str(max(args.workers))], env=env, capture_output=True)
        clips = np.zeros((len(files), 10 * 16000), dtype=np.float32)
        for i, f in enumerate(files):
            y, sr = sf.read(f, dtype="float32")
            assert sr == 16000, f
            clips[i, : min(y.size, clips.shape[1])] = y[: clips.shape[1]]
        npy = Path(tmp_npy) / "clips.npy"  # beside the folder, not in it
        np.save(npy, clips)
        long = Path(tmp_npy) / "long.wav"
        sf.write(long, clips.reshape(-1), 16000, subtype="FLOAT")
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, {len(files)} clips of "
              f"{args.data}")
        features = {}
        for what, target, extra in (("a folder of files", Path(tmp), []), ("one .npy of clips", npy, []),
                                    ("one long file's windows", long, ["--windows"])):
            outputs = {}
            for n in args.workers:
                t = time.perf_counter()
                r = subprocess.run([*cli, str(target), *extra, "--json", "--workers", str(n)], env=env,
                                   capture_output=True, text=True)
                s = time.perf_counter() - t
                outputs[n] = r.stdout
                lines = r.stdout.count("\n")
                print(f"m2i analyze {what} --workers {n}: {s:.1f} s for {lines} lines ({lines / s:.1f} clips/s), "
                      f"exit {r.returncode}")
            print(f"  every --workers printed the same lines: {'yes' if len(set(outputs.values())) == 1 else 'NO'}")
            features[target] = [json.loads(line).get("features") for line in outputs[args.workers[0]].splitlines()]
        same = [keyless(a) == keyless(b) for a, b in zip(features[npy], features[long])]
        other_key = sum(a is not None and b is not None and (a["key"], a["tonality"]) != (b["key"], b["tonality"])
                        for a, b in zip(features[npy], features[long]))
        print(f"  the long file's windows got the features the .npy's clips got, the key and what rests on it "
              f"aside: {'yes' if len(same) == len(files) and all(same) else 'NO'}; {other_key} of "
              f"{len(files) - 1} windows with more of the file after them read another key than the same clip "
              f"alone (no final-bass cue)")


if __name__ == "__main__":
    main()
