"""Fit the melody model of ``melody_selector="learned"`` and write ``m2i/audio/melody_model.py``.

Usage (renders its training clips once, seeded; needs FluidSynth like ``render.py``)::

    python benchmarks/evalset/fit_melody.py [--evalset bench-data/evalset] [--out m2i/audio/melody_model.py]

No clip or piece of the evaluation set is used. Training clips:

- ``bench-data/key-corpus/``: the 772 renders of the 155 key-labelled chorales the evaluation set
  does not use (``bench_corpus.py``'s key set, rendered here the same way if missing): random-bar,
  opening and ending excerpts, ensembles and melody-led, truth the soprano's notes;
- ``bench-data/melody-train/``: 160 monophonic Essen folk songs from books neither the evaluation
  set nor ``bench_corpus.py``'s folk set draws from (``erk``, ``boehme``, ``dva0``, ``fink0``; no
  title the evaluation set has), rendered by ``render.render_folk`` (seed 779);
- the same 160 songs' notes played once more by additive synthesis (:func:`additive`, seed 780,
  made here, not written to disk): a pure sine, a sine with a faint octave, odd harmonics only, or
  harmonics rolling off as 1/h^0.7-2.5, with vibrato, a random attack and faint noise, moved an
  octave up or down at random within C3-C7. GM instruments all have strong harmonics; without
  these, a pure tone (a whistle, a sine lead) was read an octave or two low, at its sub-harmonic.
  One take rather than two (measured with the first model, which had no attention): the mean raw
  pitch accuracy of the dev clips' three kinds (ensemble, lead, folk) was 0.835 against 0.830
  (0.841 with no synthesis, which misreads pure tones).
- the same songs on low instruments (:func:`low_take`, seed 781, not written to disk): a cello, a
  bassoon, a trombone, a tuba, a baritone or tenor sax, a French horn, a low voice or choir, an
  octave or two down where the instrument reaches (``render.low_arrangement``, E2 and up; the
  melody range starts at C3, so the frames under it offer no right peak and are left out);
- the same songs twice more as a lead over a band (:func:`band_take`, seed 782): a bass line,
  comping and (half the time) drums on the key's triads, the lead above the comping.

  Before these two (twenty-fourth session), a lead in the tenor register, a cello or a bassoon was
  often read at its octave or its fifth partial: ``bench_features.py``'s low-register melodies
  0.779, now 0.880; the pop-style leads of ``bench_meter.py`` 0.905, now 0.935 (the four-part
  ensembles 0.698, now 0.682).

Each frame of each clip offers up to eight salience peaks (:func:`m2i.audio.features.melody_candidates`,
computed exactly as at analysis time); the right one is the peak within half a semitone of the
sounding truth note. Frames with no right peak (a rest, or a melody note no peak sits on) are left
out. The model is a conditional logit over the frame's peaks whose score is a small network
(:func:`candidate_module`, :func:`m2i.audio.features.melody_candidate_scores`): the peak's 28
inputs standardised, a tanh layer of 32 units, a second of 32 that also reads the frame's other
peaks through one attention head, a linear score; trained with Adam (lr 3e-3, weight decay 1e-4,
batches of 2048 frames, 10 epochs, seed 0, one thread). The jump cost of the Viterbi path
(``melody_jump_cost`` = 2 per semitone) was chosen among 1, 2 and 4 on the evaluation set's dev
clips (all three within 0.01).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FOLK_SEED, FOLK_SONGS, SYNTH_SEED, SYNTH_TAKES = 779, 160, 780, 1
LOW_SEED, BAND_SEED, BAND_TAKES = 781, 782, 2
FOLK_BOOKS = ("erk5", "erk10", "erk20", "erk30", "boehme10", "boehme20", "dva0", "fink0")
HIDDEN, EPOCHS, BATCH, LR, WEIGHT_DECAY, SEED = 32, 10, 2048, 3e-3, 1e-4, 0


def training_sets(ev_labels: list[dict]) -> list[tuple[Path, list[dict]]] | None:
    """The two training sets as (folder, labels), rendering what is missing; None without FluidSynth."""
    import render as R
    from fit_key import other_chorales

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_corpus import render_key_set, rendered

    key_dir = ROOT / "bench-data" / "key-corpus"
    paths = other_chorales(ev_labels)
    key = rendered(key_dir, lambda: render_key_set(key_dir, paths), False)
    titles = {r["source"].split(":", 1)[1] for r in ev_labels if r["subset"] == "folk"}
    folk_dir = ROOT / "bench-data" / "melody-train"
    folk = rendered(folk_dir, lambda: R.render_folk(folk_dir, FOLK_SONGS, random.Random(FOLK_SEED), books=FOLK_BOOKS,
                                                    skip_titles=titles), False)
    if key is None or folk is None:
        return None
    return [(key_dir, key), (folk_dir, folk)]


def additive(melody: list, rng: np.random.Generator, sr: int = 16000, duration: float = 10.0) -> tuple[np.ndarray, list]:
    """``melody`` (``[on_s, off_s, midi]``) played by a random additive timbre: (audio, the notes as played)."""
    kind = rng.choice(["sine", "sine+octave", "odd", "rolloff"])
    n_h = 10
    if kind == "sine":
        amps = np.r_[1.0, np.zeros(n_h - 1)]
    elif kind == "sine+octave":
        amps = np.r_[1.0, rng.uniform(0.02, 0.3), np.zeros(n_h - 2)]
    elif kind == "odd":
        amps = np.array([1.0 / h if h % 2 else 0.0 for h in range(1, n_h + 1)])
    else:
        amps = 1.0 / np.arange(1, n_h + 1) ** rng.uniform(0.7, 2.5)
    pitches = [p for _, _, p in melody]
    shifts = [k for k in (-12, 0, 12) if min(pitches) + k >= 48 and max(pitches) + k <= 96] or [0]
    shift = int(rng.choice(shifts))
    depth, attack = rng.uniform(0.0, 25.0), rng.uniform(0.005, 0.08)
    y = np.zeros(int(duration * sr))
    played = []
    for on, off, p in melody:
        i0, i1 = int(on * sr), min(int(off * sr), y.size)
        if i1 - i0 < 16:
            continue
        t = np.arange(i1 - i0) / sr
        f = 440.0 * 2 ** ((p + shift - 69 + depth / 100 * np.sin(2 * np.pi * 5.5 * t)) / 12)
        phase = 2 * np.pi * np.cumsum(f) / sr
        tone = sum(a * np.sin(h * phase) for h, a in enumerate(amps, 1) if a > 0 and h * f.max() < sr / 2)
        env = np.minimum(1.0, t / attack) * np.minimum(1.0, (t[-1] - t) / 0.03 + 1e-3)
        y[i0:i1] += tone * env
        played.append((on, off, p + shift))
    y = y / (np.abs(y).max() + 1e-9) * 0.5
    y += rng.standard_normal(y.size) * 0.5 * 10 ** (-45 / 20)
    return y.astype(np.float32), played


# the band takes: lead, bass and comping programs
BAND_LEADS = [53, 52, 54, 65, 66, 56, 57, 73, 40, 42, 71, 80, 81, 22, 70, 60]
BAND_BASSES = [32, 33, 34, 35, 38, 43]
BAND_COMPS = [0, 4, 5, 16, 19, 24, 25, 48, 88]
MAJOR_CHORDS = [(0, "maj"), (2, "min"), (5, "maj"), (7, "maj"), (9, "min")]  # I ii IV V vi
MINOR_CHORDS = [(0, "min"), (5, "min"), (7, "maj"), (8, "maj"), (3, "maj")]  # i iv V VI III


def low_take(melody: list, rng: random.Random) -> tuple[np.ndarray, list]:
    """``melody`` played alone by a low instrument (a cello, a bassoon, a low voice, ...), an
    octave or two lower where it reaches (:func:`render.play_low`, as the benchmark's low-register
    set is): (audio, the notes as played)."""
    import render as R

    _, y, played = R.play_low(melody, rng)
    return y, played


def band_take(song: dict, rng: random.Random) -> tuple[np.ndarray, list]:
    """``song`` (a ``melody-train`` label: notes, tempo, metre, key signature) as a lead over a
    bass line, comping and sometimes drums: each bar (half bar in 4/4) gets the triad of the key
    (I ii IV V vi, or i iv V VI III when the clip's last note is the relative minor's tonic) that
    holds most of its melody; the bass plays its root in C2-B2 (held, on every beat, or root and
    fifth), the comping block chords or a pad around G3-G4; the lead (a voice, a sax, a brass,
    strings, a synth lead, ...) goes up an octave when its lowest note is under G4 and its highest
    stays under G6, so that it sits above the comping as a lead in a band does: (audio, the lead's
    notes as played)."""
    import render as R

    melody = song["melody"]
    beat = 60.0 / float(song["tempo"])
    span = beat * (3 if song["meter"] == "3/4" else 2)  # a bar (half a bar in 4/4; 6/8's beat is the dotted quarter)
    tonic = (7 * int(song["fifths"])) % 12
    table = MAJOR_CHORDS
    if melody[-1][2] % 12 == (tonic + 9) % 12:
        tonic, table = (tonic + 9) % 12, MINOR_CHORDS
    end = max(off for _, off, _ in melody)
    bass, comp, drums = [], [], []
    bass_style = rng.choice(["held", "beats", "root-fifth"])
    comp_style = rng.choice(["block", "pad", "none"])
    with_drums = rng.random() < 0.5
    t0 = 0.0
    while t0 < end:
        t1 = t0 + span
        weight = np.zeros(12)
        for on, off, p in melody:
            weight[p % 12] += max(0.0, min(off, t1) - max(on, t0))
        best, root, quality = -1.0, 0, "maj"
        for k, (deg, q) in enumerate(table):
            r = (tonic + deg) % 12
            tones = [r, (r + (4 if q == "maj" else 3)) % 12, (r + 7) % 12]
            sc = weight[tones].sum() + (0.05 if k in (0, 3) else 0.0)
            if sc > best:
                best, root, quality = sc, r, q
        third = 4 if quality == "maj" else 3
        low = 36 + root
        beats = np.arange(t0, t1 - 1e-6, beat)
        if bass_style == "held":
            bass.append((t0, t1 - 0.03, low, 95))
        else:
            bass += [(t, t + beat * 0.85, low + (7 if bass_style == "root-fifth" and j % 2 else 0), 92)
                     for j, t in enumerate(beats)]
        voicing = sorted(55 + (pc - 55) % 12 for pc in (root, root + third, root + 7))
        if comp_style == "block":
            comp += [(t, t + beat * 0.8, p, 62) for t in beats for p in voicing]
        elif comp_style == "pad":
            comp += [(t0, t1 - 0.03, p, 60) for p in voicing]
        if with_drums:
            for j, t in enumerate(beats):
                drums += [(t, t + 0.1, 36 if j % 2 == 0 else 38, 105), (t, t + 0.1, 42, 60),
                          (t + beat / 2, t + beat / 2 + 0.1, 42, 55)]
        t0 = t1
    lo, hi = min(p for _, _, p in melody), max(p for _, _, p in melody)
    shift = 12 if lo < 67 and hi + 12 <= 91 else 0  # the lead above the comping, as in a band
    played = [(on, off, p + shift) for on, off, p in melody]
    lead = [(on, off - 0.02, p, 92 + rng.uniform(-6, 6)) for on, off, p in played]
    tracks = [(rng.choice(BAND_LEADS), lead), (rng.choice(BAND_BASSES), bass)]
    if comp:
        tracks.append((rng.choice(BAND_COMPS), comp))
    if drums:
        tracks.append((-1, drums))
    return R.render_midi(tracks, rng.choice(R.SOUNDFONTS)), played


def clip_arrays(y: np.ndarray, melody: list) -> dict[str, np.ndarray]:
    """One clip's candidates as :func:`m2i.audio.features.melody_track` sees them, over the frames
    where one of them is the truth (within half a semitone of the sounding note): ``X`` ``[frames,
    K, 28]``, ``right`` and ``valid`` ``[frames, K]``."""
    from m2i.audio import features as F

    a = F.prepare(y)
    C, full, sal, lo = F.melody_salience(a)
    rows, X = F.melody_candidates(C, full, sal, lo, float(a.settings["melody_top_ratio"]))
    pitch = F._peak_midi(sal, np.maximum(rows, 0), lo)
    T = sal.shape[1]
    times = np.arange(T) / F.FPS
    truth = np.zeros(T)
    for on, off, p in melody:
        truth[(times >= on) & (times < off)] = p
    right = (rows >= 0) & (truth[None, :] > 0) & (np.abs(pitch - truth[None, :]) <= 0.5)
    keep = right.any(0)
    return {"X": X[:, keep].transpose(1, 0, 2), "right": right[:, keep].T, "valid": (rows >= 0)[:, keep].T}


def candidate_module(d: int):
    """The torch twin of :func:`m2i.audio.features.melody_candidate_scores` for ``d`` inputs per
    candidate (torch is imported here: only fitting needs it). Called with ``(x, valid)``, ``x``
    ``[B, K, d]`` standardised and zero where ``valid`` is False, it returns ``[B, K]`` scores."""
    import torch

    class CandidateNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.l2 = torch.nn.Linear(d, HIDDEN), torch.nn.Linear(HIDDEN, HIDDEN)
            self.q, self.k, self.v = (torch.nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
            self.out = torch.nn.Linear(HIDDEN, 1)

        def forward(self, x, valid):
            h1 = torch.tanh(self.l1(x))
            att = self.q(h1) @ self.k(h1).transpose(1, 2) / HIDDEN**0.5
            att = att.masked_fill(~valid.unsqueeze(1), -1e9).softmax(-1)
            return self.out(torch.tanh(self.l2(h1) + att @ self.v(h1))).squeeze(-1)

    return CandidateNetwork()


def export(net, mean: np.ndarray, scale: np.ndarray) -> dict[str, list]:
    """A :func:`candidate_module` and its input standardisation as ``melody_model.NETWORK``."""

    def w(m) -> list:
        return m.weight.detach().numpy().T.tolist()

    def b(m) -> list:
        return m.bias.detach().numpy().tolist()

    return {"MEAN": mean.tolist(), "SCALE": scale.tolist(), "W1": w(net.l1), "B1": b(net.l1),
            "W2": w(net.l2), "B2": b(net.l2), "WQ": w(net.q), "BQ": b(net.q), "WK": w(net.k),
            "BK": b(net.k), "WV": w(net.v), "BV": b(net.v), "WO": w(net.out), "BO": b(net.out)}


def fit(clips: list[dict[str, np.ndarray]]) -> dict[str, list]:
    """A :func:`candidate_module` fitted on ``clips`` (from :func:`clip_arrays`) as a conditional
    logit over each frame's candidates (the right one's log-probability maximised), as
    :func:`export` gives it."""
    import torch

    X, right, valid = (np.concatenate([c[name] for c in clips]) for name in ("X", "right", "valid"))
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    mean = X[valid].mean(0)
    scale = X[valid].std(0) + 1e-6
    Xt = torch.tensor((X - mean) / scale, dtype=torch.float32) * torch.tensor(valid).unsqueeze(-1)
    okt, vt = torch.tensor(right), torch.tensor(valid)
    net = candidate_module(X.shape[-1])
    opt = torch.optim.Adam(net.parameters(), LR, weight_decay=WEIGHT_DECAY)
    n = Xt.shape[0]
    for epoch in range(EPOCHS):
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, BATCH):
            j = perm[i:i + BATCH]
            logp = torch.log_softmax(net(Xt[j], vt[j]).masked_fill(~vt[j], -1e9), 1)
            loss = -torch.logsumexp(logp.masked_fill(~okt[j], -1e9), 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(j)
        print(f"  epoch {epoch + 1}/{EPOCHS}: log-loss {total / n:.4f} ({n} frames)", flush=True)

    return export(net, mean, scale)


def write(out: Path, network: dict[str, list], summary: str) -> None:
    def fmt(x) -> str:
        if isinstance(x, list):
            return "[" + ", ".join(fmt(v) for v in x) + "]"
        return f"{x:.6g}"

    text = [
        '"""Fitted constants of the ``melody_selector="learned"`` melody model (generated; do not edit).',
        "",
        "Written by ``python benchmarks/evalset/fit_melody.py`` (see its docstring): " + summary,
        '"""',
        "",
        "# m2i.audio.features.melody_candidate_scores: x = (melody_candidates' 28 inputs - MEAN) / SCALE,",
        "# h1 = tanh(x @ W1 + B1), attention over the frame's candidates (WQ, BQ, WK, BK, WV, BV),",
        "# h2 = tanh(h1 @ W2 + B2 + attention), score = h2 @ WO + BO.",
        "NETWORK = {",
    ]
    for name, value in network.items():
        if value and isinstance(value[0], list):
            text.append(f'    "{name}": [')
            text += [f"        {fmt(row)}," for row in value]
            text.append("    ],")
        else:
            text.append(f'    "{name}": {fmt(value)},')
    text.append("}")
    out.write_text("\n".join(text) + "\n")


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    from m2i.audio.analyze import ensure_numba_cache

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evalset", default=str(ROOT / "bench-data" / "evalset"),
                    help="the evaluation set whose pieces and songs are left out (its labels.json)")
    ap.add_argument("--out", default=str(ROOT / "m2i" / "audio" / "melody_model.py"))
    args = ap.parse_args(argv)
    from fitting import evalset_labels

    ev_labels = evalset_labels(Path(args.evalset))
    if ev_labels is None:
        return 1
    sets = training_sets(ev_labels)
    if sets is None:
        return 1
    ensure_numba_cache()
    clips, counts = [], []
    for folder, labels in sets:
        n = 0
        for r in labels:
            if not r.get("melody"):
                continue
            y, _ = sf.read(str(folder / r["file"]), dtype="float32")
            clips.append(clip_arrays(y, r["melody"]))
            n += 1
        counts.append(f"{n} clips of {folder.relative_to(ROOT)}")
    rng = np.random.default_rng(SYNTH_SEED)
    n = 0
    for r in sets[1][1]:  # the folk songs again, by additive synthesis
        for _ in range(SYNTH_TAKES):
            y, played = additive(r["melody"], rng)
            clips.append(clip_arrays(y, played))
            n += 1
    counts.append(f"{n} additive-synthesis takes of those songs")
    low_rng = random.Random(LOW_SEED)
    for r in sets[1][1]:  # the folk songs again, on low instruments
        y, played = low_take(r["melody"], low_rng)
        clips.append(clip_arrays(y, played))
    counts.append(f"{len(sets[1][1])} low takes")
    band_rng = random.Random(BAND_SEED)
    for _ in range(BAND_TAKES):  # and as leads over a band
        for r in sets[1][1]:
            y, played = band_take(r, band_rng)
            clips.append(clip_arrays(y, played))
    counts.append(f"{BAND_TAKES * len(sets[1][1])} band takes")
    frames = sum(len(c["X"]) for c in clips)
    print(f"training on {', '.join(counts)}: {frames} frames with a right peak", flush=True)
    network = fit(clips)
    summary = (f"{', '.join(counts)} ({frames} frames with a right peak), none from the evaluation set; "
               f"{HIDDEN}x{HIDDEN} tanh units with attention over the frame's candidates, {EPOCHS} epochs.")
    write(Path(args.out), network, summary)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
