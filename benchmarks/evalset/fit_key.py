"""Count the key-relative chord statistics of the key model and write ``m2i/audio/key_model.py``.

Usage (deterministic: same music21 corpus and evaluation set, same file)::

    python benchmarks/evalset/fit_key.py [--data bench-data/evalset] [--out m2i/audio/key_model.py]

No audio and no clip of the evaluation set is used: the counts come from the **scores** of the
Bach chorales in the music21 corpus that the evaluation set does not use (every ``source`` in its
``labels.json`` is left out), four voices, key from the key signature plus the final bass note
(modal endings left out, exactly as ``render.py`` labels the evaluation clips).

Each piece is cut into eighth-note segments (half a quarter-note beat, as the analysis splits
each beat) and each segment gets the triad its sounding notes support best
(:func:`fit_chords.score_labels`: the triad whose tones cover most of the duration, minus half the
non-chord-tone duration, plus 0.2 x the bass voice's share on the root). Counted per mode of the
piece, in key-relative states (root 0-11 semitones above the tonic; 0-11 major, 12-23 minor):

- ``TRANSITION_COUNTS[mode][0 = into an on-beat segment, 1 = into a mid-beat one][from][to]``;
- ``CHORD_COUNTS[mode][state]``: how often each state occurs (the first segment's prior).

:func:`m2i.audio.features.estimate_key` scores each of the 24 keys by the likelihood of the clip's
chord observations under these statistics (forward algorithm) on top of the profile correlation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fit_chords import LABELS, score_labels, transition_table  # noqa: E402
from fitting import evalset_labels  # noqa: E402


def piece_states(score) -> tuple[str, list[int], np.ndarray] | None:
    """(mode, key-relative state per eighth-note segment (-1: silence), 1 for mid-beat segments)."""
    import render as R

    key = R.score_key(score)
    if key is None or len(score.parts) < 4:
        return None
    tonic, mode = R.PC[key[0]], key[1]
    notes = [(on, on + d, m, v) for v, part in enumerate(score.parts[:4]) for on, d, m in R.part_notes(part)]
    if not notes:
        return None
    end = max(b for _, b, _, _ in notes)
    bounds = np.arange(0, int(np.ceil(end * 2)) + 1, dtype=float)  # eighth notes; fps 2 -> seconds == quarters
    lab = score_labels(notes, bounds, end, 2.0)
    rel = [-1 if k < 0 else (LABELS[k][0] - tonic) % 12 + 12 * (LABELS[k][1] == "min") for k in lab]
    return mode, rel, (bounds[:-1] % 2 == 1).astype(int)


def other_chorales(labels: list[dict]) -> list[str]:
    """Corpus paths of the chorales that no clip of an evaluation set (its labels) comes from."""
    import render as R

    used = {r["source"] for r in labels}
    return [p for p in R.chorale_paths() if p.rsplit("/", 1)[1] not in used]


def count_key_statistics(paths: list[str]) -> tuple[dict[str, int], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(pieces per mode, ``CHORD_COUNTS``, ``TRANSITION_COUNTS``) counted on the scores at ``paths``."""
    from music21 import corpus

    trans = {m: np.zeros((2, 24, 24), dtype=np.int64) for m in ("major", "minor")}
    uni = {m: np.zeros(24, dtype=np.int64) for m in ("major", "minor")}
    n_pieces = {"major": 0, "minor": 0}
    for p in paths:
        got = piece_states(corpus.parse(p))
        if got is None:
            continue
        mode, rel, mid = got
        n_pieces[mode] += 1
        for t, s in enumerate(rel):
            if s >= 0:
                uni[mode][s] += 1
                if t and rel[t - 1] >= 0:
                    trans[mode][mid[t], rel[t - 1], s] += 1
    return n_pieces, uni, trans


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "evalset"),
                    help="evaluation set whose pieces are left out (its labels.json)")
    ap.add_argument("--out", default=str(ROOT / "m2i" / "audio" / "key_model.py"))
    args = ap.parse_args(argv)
    labels = evalset_labels(Path(args.data))
    if labels is None:
        return 1
    paths = other_chorales(labels)
    n_pieces, uni, trans = count_key_statistics(paths)
    print(f"{n_pieces['major']} major + {n_pieces['minor']} minor chorales of {len(paths)} not in the evaluation set",
          file=sys.stderr)

    text = [
        '"""Key-relative chord statistics of the key model (generated; do not edit).',
        "",
        "Written by ``python benchmarks/evalset/fit_key.py`` (see its docstring): counted on the scores",
        f"of {n_pieces['major']} major and {n_pieces['minor']} minor Bach chorales of the music21 corpus that the",
        "evaluation set does not use, in eighth-note segments. No audio and no evaluation clip is used.",
        "States: the triad's root 0-11 semitones above the tonic, 0-11 major, 12-23 minor.",
        '"""',
        "",
        "# CHORD_COUNTS[mode][state]: segments labelled with each state.",
        "CHORD_COUNTS = {",
    ]
    text += [f'    "{m}": [' + ", ".join(str(int(v)) for v in uni[m]) + "]," for m in ("major", "minor")]
    text += ["}", "", "# TRANSITION_COUNTS[mode][0 = into an on-beat segment, 1 = into a mid-beat one][from][to]."]
    text += transition_table(trans)
    Path(args.out).write_text("\n".join(text) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
