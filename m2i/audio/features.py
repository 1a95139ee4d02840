"""The eight musical features of a clip, each with a confidence in [0, 1].

Everything is computed from one constant-Q transform (36 bins per octave, C2..C8, hop 256 at
16 kHz, i.e. 62.5 frames per second), so a 10 s clip costs about a tenth of a second:

- **key / tonality**: log-compressed chroma (plus the bass of the last 15 % of the clip)
  correlated with the 24 rotations of a key profile spread over the partials of each degree
  (:func:`audio_profile`; Temperley-Kostka-Payne by default, Albrecht & Shanahan 2013
  selectable), plus the log-likelihood of the clip's chord observations under each key's
  chord statistics (:func:`key_chord_loglik`, counted on chorale scores outside the evaluation
  set, :mod:`m2i.audio.key_model`): the key whose progressions explain the chords wins, not
  only the key whose pitch classes match. Krumhansl-Kessler is deliberately not used: on audio
  it systematically prefers the dominant. The runner-up key is reported too.
- **tempo / beats**: autocorrelation tempo candidates (:func:`_choose_tempo`) of an attack-count
  envelope (how many semitones start a note in each frame, :func:`attack_envelope`), then an
  explicit double/half-tempo decision (:func:`_octave_decision`: a logistic model of "the
  half-beats are beats too" that looks at the grid's subdivisions two levels down); beats from
  librosa's dynamic programming tracker at the chosen tempo on the spectral-flux onset envelope.
- **time signature**: per beat (the first tracked beat left out: a clip's start always reads as
  an onset), the accent, the bass energy starting there and the loudness, scored for bar lengths
  of 2, 3 and 4 beats at their best phase (downbeats minus the rest); triple or duple from a
  logistic model over those contrasts (:data:`_METER_W`, fitted on clips that start on a bar line
  and clips that do not), 4/4 unless 2 beats clearly group better than 4, compound (6/8) when
  the beats subdivide in three. The confidence is the model's probability, so it varies clip to clip.
- **mood**: valence and arousal from a documented linear mapping (see :func:`mood`).
- **melody contour**: predominant-melody pitch track by harmonic summation on the CQT with a
  voicing gate; which salience peak is the melody is a Viterbi path through each frame's strongest
  peaks scored by a small network (:mod:`m2i.audio.melody_model`, fitted on renders of chorales and
  folk songs the evaluation set does not use). Reduced to a shape and a range in semitones.
- **harmonic progression**: half-beat segments scored by a rotation-shared logistic classifier
  over the 24 triads and decoded by Viterbi with key-relative, beat-position-dependent
  transitions (:mod:`m2i.audio.chord_model`); the earlier template matching (mean chroma of
  labelled segments, :data:`_LEARNED_TRIADS`) stays selectable. Roman numerals in the detected key.
- **dynamic intensity**: RMS loudness in dBFS, dynamic range (95th - 10th percentile), trend from
  a linear fit, and a pp..ff label.

The note list of the melody is returned too, for :mod:`m2i.audio.abc`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SR = 16000
HOP = 256
FPS = SR / HOP
BPO = 36  # CQT bins per octave
N_OCT = 6
FMIN_MIDI = 36  # C2
CQT_FMIN_MIDI = FMIN_MIDI - 1.0 / 3.0  # bin 3k+1 sits exactly on semitone k above C2
N_BINS = BPO * N_OCT

PITCH_NAMES_SHARP = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
PITCH_NAMES_FLAT = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
# Tonic spelling with the fewest accidentals in the key signature (F# over Gb, Db over C#...).
MAJOR_TONIC = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MINOR_TONIC = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]

PROFILES: dict[str, tuple[list[float], list[float]]] = {
    # Albrecht & Shanahan (2013), "The use of large corpora to train a new type of key-finding
    # algorithm", Music Perception 31(1).
    "albrecht": (
        [0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081],
        [0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052],
    ),
    # Temperley (2001) / Kostka-Payne corpus weights, as in music21 and humdrum keycor.
    "temperley": (
        [0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400],
        [0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330],
    ),
}

DEFAULTS: dict[str, Any] = {
    "key_profile": "temperley",
    "key_profile_harmonics": 0.6,  # partial k of each degree weighs 0.6**(k-1) (audio_profile)
    "key_bass_weight": 0.0,
    "key_final_weight": 0.3,
    # weight of the chord-sequence log-likelihood (key_chord_loglik) beside the profile
    # correlation; 0 = profile only (chosen on dev: 0.03-0.05 all within 0.01)
    "key_chord_weight": 0.03,
    "chroma_log_gamma": 10.0,
    "tempo_min": 45.0,
    "tempo_max": 200.0,
    "tempo_double_p": 0.5,
    # attack envelope: a semitone starts a note when it rises > 10 dB within 4 frames (64 ms) to
    # above -45 dB of the clip's loudest semitone
    "attack_rise_db": 10.0,
    "attack_floor_db": -45.0,
    "chord_self_prob": 0.3,
    "chord_bass_weight": 0.0,
    "chord_template_harmonics": 1.0,
    # "logistic": rotation-shared logistic classifier + key-relative transitions (chord_model.py);
    # "learned": mean-chroma templates (_LEARNED_TRIADS); "binary": chord tones plus partials
    # (chord_template_harmonics). chord_self_prob, chord_bass_weight, chord_obs_scale and
    # chord_key_bonus apply to the two template kinds only.
    "chord_templates": "logistic",
    "chord_split_frames": 16,
    "chord_obs_scale": 50.0,
    "chord_key_bonus": 0.03,
    "chord_logistic_temp": 1.5,  # scale of the classifier's scores before the Viterbi (chosen on dev)
    "melody_fmin_midi": 48,  # C3
    "melody_fmax_midi": 96,  # C7
    "melody_voicing": 0.25,
    "melody_top_ratio": 0.9,
    # "learned": a path through each frame's salience peaks scored by melody_model.py; "highest":
    # the highest peak within melody_top_ratio of the strongest (the rule before the learned one)
    "melody_selector": "learned",
    "melody_jump_cost": 2.0,  # Viterbi cost per semitone moved between frames (learned selector)
    "melody_f0_power": 0.0,
    "melody_min_contrast": 1.5,
    "melody_bass_partials": 0.8,
    "melody_onset_snap": 0,
    "melody_snap_thr": 0.1,
    "melody_min_note_s": 0.07,
    # pitch-track notes start late (the CQT's long low-frequency windows, soft attacks): the
    # median lag of the raw note onsets behind the score on the dev folk clips was 34 ms
    "melody_latency_s": 0.032,
    # "auto": estimate the tuning (estimate_tuning) and, when it is 10 cents or more off A440,
    # compute the CQT on the recording's own pitch; a number: that many cents; 0: A440
    "tuning": "auto",
    "tuning_min_cents": 10.0,
}


@dataclass
class Analysis:
    """Intermediate results shared by the feature functions (frames at :data:`FPS`)."""

    y: np.ndarray
    duration_s: float
    cqt: np.ndarray  # magnitude [N_BINS, n_frames]
    chroma: np.ndarray  # [12, n_frames], treble+all
    bass_chroma: np.ndarray  # [12, n_frames]
    onset_env: np.ndarray
    rms_db: np.ndarray
    settings: dict[str, Any]
    semi: np.ndarray  # semitone magnitudes [72, n_frames], C2..B7
    attack_env: np.ndarray  # semitones starting a note per frame (attack_envelope)
    extra: dict[str, Any] = field(default_factory=dict)
    tuning_cents: float = 0.0  # the CQT's bins sit this far from A440 (estimate_tuning)

    @property
    def n_frames(self) -> int:
        return int(self.cqt.shape[1])

    @functools.cached_property
    def pooled_attack(self) -> np.ndarray:
        return _pooled(self.attack_env)

    @functools.cached_property
    def note_onsets(self) -> int:
        """How many note onsets the clip has: runs of frames in which some semitone starts a note."""
        starts = self.attack_env > 0
        return int(starts[0]) + int(np.sum(starts[1:] & ~starts[:-1]))

    @functools.cached_property
    def pooled_onset(self) -> np.ndarray:
        return _pooled(self.onset_env)

    @functools.cached_property
    def unit_chroma(self) -> np.ndarray:
        """The chroma with every frame scaled to unit length."""
        return self.chroma / (np.linalg.norm(self.chroma, axis=0, keepdims=True) + 1e-9)


# --------------------------------------------------------------------------- helpers


def _softmax_margin(best: float, second: float, scale: float) -> float:
    """Map a score margin to a confidence in [0, 1] (logistic, 0.5 at equality)."""
    return float(1.0 / (1.0 + math.exp(-(best - second) / max(scale, 1e-9))))


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def key_name(tonic_pc: int, mode: str) -> str:
    """Spelled tonic for a pitch class in a mode (``"F#"``, ``"Bb"``, ``"Eb"``)."""
    return (MAJOR_TONIC if mode == "major" else MINOR_TONIC)[tonic_pc % 12]


def prepare(y: np.ndarray, settings: dict[str, Any] | None = None) -> Analysis:
    """Compute the CQT, chroma, onset envelope and loudness of a 16 kHz clip."""
    import warnings

    from m2i.audio.analyze import ensure_numba_cache

    ensure_numba_cache()
    import librosa

    s = {**DEFAULTS, **(settings or {})}
    y = np.ascontiguousarray(y, dtype=np.float32)
    y = y - np.float32(y.mean())  # a DC offset is not sound: at +0.3 it had read ff at -10 dB for mp music

    def cqt(tuning_cents: float) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # short clips: librosa warns about its low octaves
            C = librosa.cqt(
                y,
                sr=SR,
                hop_length=HOP,
                fmin=librosa.midi_to_hz(CQT_FMIN_MIDI + tuning_cents / 100.0),
                n_bins=N_BINS,
                bins_per_octave=BPO,
                res_type="polyphase",
            )
        return np.abs(C).astype(np.float32)

    C = cqt(0.0)
    tuning = 0.0
    if s["tuning"] == "auto":
        est, concentration = estimate_tuning(C)
        if abs(est) >= float(s["tuning_min_cents"]) and concentration >= 0.3:
            tuning = est
            C = cqt(tuning)  # every semitone bin on the recording's own pitch
    elif s["tuning"]:
        tuning = float(s["tuning"])
        C = cqt(tuning)
    # chroma: centre bin of each semitone carries the most weight, neighbours less
    gamma = float(s["chroma_log_gamma"])
    semis = C.reshape(N_OCT * 12, 3, -1)
    semi = semis[:, 1, :] + 0.5 * (semis[:, 0, :] + semis[:, 2, :])  # [72, T]
    ref = float(semi.max()) + 1e-9
    semi_log = np.log1p(gamma * semi / ref)
    chroma = semi_log.reshape(N_OCT, 12, -1).sum(axis=0)
    bass = semi_log[: 24 + 4].copy()  # C2..E3 region
    bass_chroma = np.zeros((12, semi_log.shape[1]), dtype=np.float32)
    for i in range(bass.shape[0]):
        bass_chroma[i % 12] += bass[i] * (1.0 if i < 19 else 0.5)
    # onset envelope: half-wave rectified flux of the log CQT
    logC = librosa.amplitude_to_db(C, ref=np.max, top_db=80.0)
    flux = np.maximum(0.0, np.diff(logC, axis=1, prepend=logC[:, :1]))
    onset = flux.mean(axis=0)
    onset = onset - np.convolve(onset, np.ones(31) / 31.0, mode="same")  # local mean removal
    onset = np.maximum(onset, 0.0).astype(np.float32)
    frame = 1024
    pad = np.pad(y, (frame // 2, frame // 2))
    n = 1 + (pad.size - frame) // HOP
    idx = np.arange(frame)[None, :] + HOP * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(pad[idx].astype(np.float64) ** 2, axis=1))
    rms_db = 20 * np.log10(np.maximum(rms, 1e-7))
    n_frames = C.shape[1]
    rms_db = rms_db[:n_frames] if rms_db.size >= n_frames else np.pad(rms_db, (0, n_frames - rms_db.size), mode="edge")
    analysis = Analysis(
        y=y,
        duration_s=y.size / SR,
        cqt=C,
        chroma=chroma.astype(np.float32),
        bass_chroma=bass_chroma,
        onset_env=onset,
        rms_db=rms_db.astype(np.float32),
        settings=s,
        semi=semi,
        attack_env=attack_envelope(semi, float(s["attack_rise_db"]), float(s["attack_floor_db"])),
        tuning_cents=round(float(tuning), 1),
    )
    return analysis


def estimate_tuning(C: np.ndarray, *, floor_db: float = 30.0) -> tuple[float, float]:
    """The clip's tuning in cents from A440 (-50..50) and how concentrated the evidence is (0..1).

    Every spectral peak within ``floor_db`` of its frame's loudest bin is located between CQT
    bins by a parabola through the log magnitudes; its distance from the nearest equal-tempered
    semitone (bin 3k+1) is an angle on a 100-cent circle, and the magnitude-weighted circular mean
    of those angles is the tuning (the resultant's length is the concentration: ~0.85 on tonal
    music, low on noise and drums). On evaluation clips resampled by -32 / +15 / +40 cents the
    median estimate was -31 / +16 / +41 (p10-p90 within 7 cents). A recording at A432 is -32
    cents; one a quarter-tone off (+-50) is ambiguous by nature.
    """
    logC = np.log(C + 1e-6)
    lo, mid, hi = C[:-2], C[1:-1], C[2:]
    peak = (mid > lo) & (mid >= hi) & (mid > C.max(axis=0, keepdims=True) * 10 ** (-floor_db / 20))
    a, b, c = logC[:-2], logC[1:-1], logC[2:]
    den = a - 2 * b + c
    safe = np.abs(den) > 1e-9
    delta = np.clip(np.where(safe, 0.5 * (a - c) / np.where(safe, den, 1.0), 0.0), -0.5, 0.5)
    pos = np.arange(1, C.shape[0] - 1)[:, None] + delta  # fractional bin
    cents = (((pos - 1) + 1.5) % 3 - 1.5) * (1200.0 / BPO)  # from the nearest semitone centre
    w = np.where(peak, mid, 0.0)
    total = float(w.sum())
    if total <= 0:
        return 0.0, 0.0
    z = (w * np.exp(2j * np.pi * cents / 100.0)).sum() / total
    return float(np.angle(z) * 100.0 / (2 * np.pi)), float(abs(z))


_ATTACK_FRAMES = 4  # rise measured over 4 frames (64 ms): slow string and choir attacks count too


def attack_envelope(semi: np.ndarray, rise_db: float = 10.0, floor_db: float = -45.0) -> np.ndarray:
    """Number of semitones that start a note in each frame.

    ``semi`` is the semitone magnitude spectrogram [72, T]. A semitone starts a note at frame t when
    its level rose by more than ``rise_db`` over the previous :data:`_ATTACK_FRAMES` frames and is
    above ``floor_db`` relative to the loudest semitone of the clip. Unlike the spectral flux, a
    chord struck by four voices counts four (and their partials), a passing note in one voice
    counts one, whatever their loudness: that is what tells the beat from its subdivisions in
    homophonic music.
    """
    w = _ATTACK_FRAMES
    db = 20.0 * np.log10(semi / (float(semi.max()) + 1e-12) + 1e-6)
    starts = ((db[:, w:] - db[:, :-w]) > rise_db) & (db[:, w:] > floor_db)
    return np.concatenate([np.zeros(w), starts.sum(axis=0)]).astype(np.float32)


# --------------------------------------------------------------------------- key


# pitch class of partials 1..4 of a tone relative to it: unison, octave, twelfth (fifth), 2 octaves
_PARTIAL_PC = (0, 0, 7, 0)


def audio_profile(profile: list[float], harmonics: float) -> np.ndarray:
    """A symbolic key profile as a chroma would see it: each degree adds its partials 2-4.

    Partial ``k`` of every scale degree gets ``harmonics ** (k - 1)`` of the degree's weight (Gomez
    2006, "Tonal description of music audio signals", ch. 4: the profile is spread over the
    harmonics the way the HPCP spreads each note). ``harmonics=0`` gives the profile unchanged.
    """
    p = np.asarray(profile, dtype=float)
    out = p.copy()
    for k, off in enumerate(_PARTIAL_PC[1:], start=1):
        out = out + harmonics**k * np.roll(p, off)
    return out


def key_scores(profile_chroma: np.ndarray, profile: str = "albrecht", *, harmonics: float = 0.0) -> np.ndarray:
    """Pearson correlation of a 12-bin chroma with the 24 keys: rows major C..B, minor C..B.

    ``harmonics`` > 0 compares with :func:`audio_profile` of the profile (for audio chroma).
    """
    major, minor = PROFILES[profile]
    x = profile_chroma - profile_chroma.mean()
    out = np.zeros((2, 12))
    for m, prof in enumerate((major, minor)):
        p = audio_profile(prof, harmonics) if harmonics > 0 else np.asarray(prof, dtype=float)
        for t in range(12):
            r = np.roll(p, t)
            r = r - r.mean()
            out[m, t] = float(x @ r / (np.linalg.norm(x) * np.linalg.norm(r) + 1e-12))
    return out


def key_chord_loglik(obs: ChordObservations, tables: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Log-likelihood [2, 12] (major C..B, minor C..B) of a clip's chord observations under each key.

    An HMM per key whose states are the 24 triads: the first segment's prior and the transitions
    (into an on-beat or a mid-beat segment) are the key-relative chorale statistics of
    :mod:`m2i.audio.key_model`, rotated to the key's tonic (+1 smoothing); the emissions are the
    classifier's log-probabilities ``obs.logp`` (a hybrid HMM: the classifier's prior over the
    24 triads is flat). The forward algorithm sums over every chord path, so a key is favoured
    by the progressions it makes likely (V-I, IV-V, ii-V) and not only by its pitch classes.
    ``tables``: :func:`key_model_tables` of other counts (default: the shipped ones).
    """
    init, trans = tables if tables is not None else _key_model_tables()
    logp = obs.logp
    alpha = init + logp[:, 0][None, :]  # [24 keys, 24 states]
    for t in range(1, logp.shape[1]):
        m = alpha[:, :, None] + trans[:, int(obs.mid[t])]  # [keys, from, to]
        top = m.max(axis=1)
        alpha = top + np.log(np.exp(m - top[:, None, :]).sum(axis=1)) + logp[:, t][None, :]
    top = alpha.max(axis=1)
    return (top + np.log(np.exp(alpha - top[:, None]).sum(axis=1))).reshape(2, 12)


def _relative_states(tonic_pc: int) -> np.ndarray:
    """Key-relative state (root above the tonic, +12 for minor) of each of the 24 absolute triads."""
    return np.array([(r - tonic_pc) % 12 + 12 * (q == "min") for r, q in TRIAD_LABELS])


def _log_probs_in_key(counts: Any, tonic_pc: int) -> np.ndarray:
    """Key-relative counts (last axis, and the one before it for transitions, over the 24
    relative states) as log-probabilities over the 24 absolute triads of the key on ``tonic_pc``:
    +1 smoothing, normalised over the last axis, both state axes rotated to the tonic."""
    c = np.asarray(counts, dtype=float) + 1.0
    logp = np.log(c / c.sum(axis=-1, keepdims=True))
    rel = _relative_states(tonic_pc)
    logp = logp[..., rel]
    return logp[..., rel, :] if logp.ndim >= 2 else logp


def key_model_tables(chord_counts: Any, transition_counts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Log prior [24 keys, 24 triads] and log transitions [24 keys, 2, 24, 24] of the key model
    from key-relative counts shaped like :mod:`m2i.audio.key_model`'s, keys ordered major C..B
    then minor C..B."""
    keys = [(tonic, mode) for mode in ("major", "minor") for tonic in range(12)]
    init = np.stack([_log_probs_in_key(chord_counts[mode], tonic) for tonic, mode in keys])
    trans = np.stack([_log_probs_in_key(transition_counts[mode], tonic) for tonic, mode in keys])
    return init, trans


@functools.cache
def _key_model_tables() -> tuple[np.ndarray, np.ndarray]:
    """:func:`key_model_tables` of the shipped counts. Cached; callers only read them."""
    from m2i.audio.key_model import CHORD_COUNTS, TRANSITION_COUNTS

    return key_model_tables(CHORD_COUNTS, TRANSITION_COUNTS)


_KEY_CONF_TEMP = 0.2


def tonal_clarity(best_correlation: float) -> float:
    """How clearly a clip is in some key, from its best key-profile correlation (of the chroma
    alone, without the bass cues): 0 at 0.5 or below, 1 at 0.75 or above. Synthesised drum loops
    reach 0.25-0.29, white noise 0.35-0.46, a gliding harmonic voice (speech-like) 0.23-0.40; of
    the evaluation set's 263 key clips 98.5 % are above 0.75, of the 320 synthetic pop-style clips
    of ``benchmarks/bench_meter.py`` 83 % (a one-pitch clip, such as a sine, fits no key either)."""
    return _clip01((best_correlation - 0.5) / 0.25)


def estimate_key(a: Analysis, obs: ChordObservations | None = None, *,
                 tables: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Key, tonality, runner-up and confidence from the clip's chroma and, given ``obs``, its chords.

    Each of the 24 keys scores the Pearson correlation of the profile chroma with the key's
    profile, plus ``key_chord_weight`` x the log-likelihood of the chord observations under the
    key (:func:`key_chord_loglik`; relative to the best key). Without ``obs`` (or with the weight
    at 0) the profile alone decides. ``tables``: the key model's (:func:`key_model_tables`), for
    benchmarks that count the chord statistics on other pieces; default the shipped ones.
    """
    s = a.settings
    energy = a.chroma.sum(axis=0)
    w = energy / (energy.max() + 1e-9)
    chroma = (a.chroma * w).sum(axis=1)
    bass = (a.bass_chroma * w).sum(axis=1)
    tail = max(1, int(a.n_frames * 0.15))
    final_bass = a.bass_chroma[:, -tail:].sum(axis=1)
    vec = chroma / (chroma.sum() + 1e-9)
    fit = functools.partial(key_scores, profile=str(s["key_profile"]), harmonics=float(s["key_profile_harmonics"]))
    clarity = tonal_clarity(float(fit(vec).max()))
    vec = vec + float(s["key_bass_weight"]) * bass / (bass.sum() + 1e-9)
    vec = vec + float(s["key_final_weight"]) * final_bass / (final_bass.sum() + 1e-9)
    profile = fit(vec)
    sc = profile
    weight = float(s["key_chord_weight"])
    if obs is not None and weight > 0 and obs.logp.shape[1] > 0:
        ll = key_chord_loglik(obs, tables)
        sc = profile + weight * (ll - ll.max())
    order = np.argsort(sc.ravel())[::-1]
    best, second = order[0], order[1]
    mode = "major" if best < 12 else "minor"
    tonic = int(best % 12)
    r_mode = "major" if second < 12 else "minor"
    r_tonic = int(second % 12)
    # confidence: the best key's share of softmax(score / 0.2) over the 24 keys; 0.2 minimises the
    # log-loss of the true key on the dev clips (0.15-0.3 within 0.1 nats); times the clip's tonal
    # clarity, so that drums, noise or speech, whose chroma fits no key profile, get no key. The
    # clarity reads the chroma alone: with the bass cues in, a pop loop that ends on IV fitted every
    # key badly (best correlation 0.43) although its key was right
    post = np.exp((sc.ravel() - sc.ravel()[best]) / _KEY_CONF_TEMP)
    conf = float(1.0 / post.sum()) * clarity
    return {
        "tonic_pc": tonic,
        "mode": mode,
        "key": key_name(tonic, mode),
        "runner_up": f"{key_name(r_tonic, r_mode)} {r_mode}",
        "confidence": round(conf, 3),
        "scores": sc,
    }


# --------------------------------------------------------------------------- tempo and beats


def _autocorr(x: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation along the last axis (lag 0 = 1), of each row of a 2-D array."""
    n = x.shape[-1]
    f = np.fft.rfft(x - x.mean(axis=-1, keepdims=True), 2 * n, axis=-1)
    ac = np.fft.irfft(np.abs(f) ** 2, axis=-1)[..., :n]
    return ac / (ac[..., :1] + 1e-12)


def _beat_lags(s: dict[str, Any], n: int) -> tuple[int, int]:
    """The first and last autocorrelation lag (frames) of a beat in the tempo range of settings
    ``s``, for an envelope of ``n`` frames."""
    return (int(math.floor(60.0 * FPS / float(s["tempo_max"]))),
            min(n - 1, int(math.ceil(60.0 * FPS / float(s["tempo_min"])))))


def _choose_tempo(onset: np.ndarray, s: dict[str, Any]) -> tuple[float, float, dict[str, float]]:
    """Pick the beat tempo, resolving double/half ambiguity explicitly.

    The autocorrelation of the onset envelope gives a periodicity strength for every lag.
    For each candidate tempo T in range we score the strength at the beat lag *plus* the
    strength at 2 and 4 beats (bar-level support) and a mild log-normal prior centred at
    100 BPM. The doubling/halving decision compares T with 2T and T/2 explicitly: the faster
    tempo wins only if its own beat lag is clearly periodic on its own (most eighth-note
    motion in chorales is not).
    """
    ac = _autocorr(onset)
    lag_min, lag_max = _beat_lags(s, ac.size)

    def strength(lag: float) -> float:
        if lag >= ac.size - 1 or lag < 1:
            return 0.0
        lo = int(math.floor(lag))
        frac = lag - lo
        # tolerant peak pick around the lag (+-3 %)
        w = max(1, int(round(lag * 0.03)))
        seg = ac[max(1, lo - w) : min(ac.size, lo + w + 2)]
        return float(seg.max()) if seg.size else float(ac[lo] * (1 - frac) + ac[lo + 1] * frac)

    cands = []
    for lag in range(max(2, lag_min), lag_max + 1):
        if not (ac[lag] >= ac[lag - 1] and ac[lag] >= ac[min(lag + 1, ac.size - 1)]):
            continue
        # parabolic refinement
        y0, y1, y2 = ac[lag - 1], ac[lag], ac[min(lag + 1, ac.size - 1)]
        den = y0 - 2 * y1 + y2
        d = 0.5 * (y0 - y2) / den if abs(den) > 1e-12 else 0.0
        L = lag + float(np.clip(d, -0.5, 0.5))
        bpm = 60.0 * FPS / L
        prior = math.exp(-0.5 * (math.log2(bpm / 100.0) / 1.0) ** 2)
        score = (strength(L) + 0.5 * strength(2 * L) + 0.25 * strength(4 * L)) * (0.5 + prior)
        cands.append((score, bpm, L))
    if not cands:
        return 100.0, 0.0, {}
    cands.sort(reverse=True)
    score, bpm, L = cands[0]
    info = {"ac_beat": strength(L), "ac_half_lag": strength(L / 2), "ac_double_lag": strength(2 * L)}
    second = cands[1][0] if len(cands) > 1 else 0.0
    conf = _clip01((score - second) / (score + 1e-9) * 2.0 + 0.3 * strength(L))
    return float(bpm), conf, info


# Logistic model of "the tempo should be doubled" (:func:`_octave_decision`), fitted by
# benchmarks/evalset/fit_tempo.py on the even-numbered chorale clips of the evaluation set only
# (an L2 logistic regression, C=10: benchmarks/evalset/fitting.py, scikit-learn's objective).
# Order: bias; at the candidate tempo t the alternation of attacks, onset strength and chroma
# change between a (t x 2)-grid's positions, log2(t / 90); the same three alternations at 2t
# and at 4t (the grid's subdivisions one and two levels down).
_DOUBLE_W = np.array([-11.492, 4.670, 2.128, 4.802, -6.355, 3.416, 0.871, 2.997, 1.744, -5.213, 0.682])


def _pooled(x: np.ndarray, k: int = 2) -> np.ndarray:
    """Running maximum over +-k frames (onsets a frame or two off the grid still count)."""
    return np.maximum.reduce([np.roll(x, j) for j in range(-k, k + 1)])


def _best_grid(x: np.ndarray, step: float) -> np.ndarray:
    """Frames of a grid every ``step`` frames, at the phase where ``x`` is largest on average."""
    best, grid = -1.0, np.zeros(0, dtype=int)
    for phase in np.arange(0.0, step, 1.0):
        pos = np.round(np.arange(phase, x.size - 2, step)).astype(int)
        if pos.size >= 2 and float(x[pos].mean()) > best:
            best, grid = float(x[pos].mean()), pos
    return grid


def _alternation(x: np.ndarray, period: float) -> tuple[float, np.ndarray]:
    """How alike the alternate positions of a grid of ``period / 2`` frames are.

    The grid's phase is the one with the largest mean of ``x`` on it; the result is the mean of
    ``x`` on the weaker half of the positions over the stronger half (1: every position alike, the
    half-period is a beat too; near 0: only every other position carries anything), and the grid.
    """
    grid = _best_grid(x, period / 2.0)
    if grid.size < 2:
        return 1.0, grid
    even, odd = float(x[grid[0::2]].mean()), float(x[grid[1::2]].mean())
    return min(even, odd) / (max(even, odd) + 1e-9), grid


def _level_features(a: Analysis, bpm: float) -> np.ndarray:
    """Alternation of attacks, onset strength and chroma change on the half-beats of ``bpm``."""
    period = 60.0 * FPS / bpm
    r_att, grid = _alternation(a.pooled_attack, period)
    r_onset, _ = _alternation(a.pooled_onset, period)
    if grid.size < 2:
        return np.array([r_att, r_onset, 1.0])
    n, cn = a.n_frames, a.unit_chroma

    def change(p: np.ndarray) -> float:
        lo, hi = np.clip(p - 4, 0, n - 1), np.clip(p + 4, 0, n - 1)
        return float(np.mean(1.0 - np.sum(cn[:, lo] * cn[:, hi], axis=0)))

    ce, co = change(grid[0::2]), change(grid[1::2])
    return np.array([r_att, r_onset, min(ce, co) / (max(ce, co) + 1e-9)])


def tempo_decision_features(a: Analysis, bpm: float) -> np.ndarray:
    """The inputs of the double-the-tempo model at ``bpm`` (see :data:`_DOUBLE_W`)."""
    return np.concatenate([[1.0], _level_features(a, bpm), [math.log2(bpm / 90.0)],
                           _level_features(a, 2.0 * bpm), _level_features(a, 4.0 * bpm)])


def _subdivision_ratios(env: np.ndarray, beat_frames: np.ndarray) -> tuple[float, float]:
    """(onsets at 1/3 and 2/3 of the beats over onsets at 1/2, the same over onsets on the beats)."""
    sub3 = sub2 = on = 0.0
    bf = np.asarray(beat_frames, dtype=int)
    for i in range(bf.size - 1):
        L = bf[i + 1] - bf[i]
        if L < 9:
            continue
        sub3 += env[bf[i] + L // 3 - 1 : bf[i] + L // 3 + 2].max() + env[bf[i] + 2 * L // 3 - 1 : bf[i] + 2 * L // 3 + 2].max()
        sub2 += 2 * env[bf[i] + L // 2 - 1 : bf[i] + L // 2 + 2].max()
        on += 2 * env[max(0, bf[i] - 1) : bf[i] + 2].max()
    return sub3 / max(sub2, 1e-9), sub3 / max(on, 1e-9)


def compound_probability(env: np.ndarray, beat_frames: np.ndarray) -> float:
    """How likely the beats divide in three (> 0.5: they do): onsets at 1/3 and 2/3 of a beat
    stronger than at 1/2 (1.3 x at even odds), and themselves more than a trace beside the
    onsets on the beats (0.1 x at even odds; without this, two near-zero subdivisions decided
    it, and straight pop eighths or sustained chords came out 6/8)."""
    r32, r3on = _subdivision_ratios(env, beat_frames)
    if r32 <= 0:
        return 0.0
    return _softmax_margin(math.log(r32), math.log(1.3), 0.15) * _softmax_margin(r3on, 0.1, 0.02)


def subdivides_in_three(env: np.ndarray, beat_frames: np.ndarray) -> bool:
    """True when the beats divide in three (:func:`compound_probability` > 0.5)."""
    return compound_probability(env, beat_frames) > 0.5


def _octave_decision(a: Analysis, bpm: float) -> tuple[float, list[tuple[float, float]]]:
    """Resolve double/half tempo explicitly.

    Start at the slowest octave of ``bpm`` inside the tempo range and double it while a small
    logistic model says the half-beat positions are beats too. At the beat level of homophonic
    music the half-beats hold only passing notes (few attacks, little change of harmony) and the
    quarter-beats hardly anything; one level too slow, the half-beats are chords like the beats.
    A beat that divides in three (compound metre, :func:`subdivides_in_three`) is never doubled:
    its next level down is the third, not the half. Returns the tempo and the (tempo, P(double))
    trail.
    """
    s = a.settings
    tmin, tmax = float(s["tempo_min"]), float(s["tempo_max"])
    t = bpm
    while t / 2.0 >= tmin:
        t /= 2.0
    trail = []
    while True:
        z = float(np.clip(_DOUBLE_W @ tempo_decision_features(a, t), -50.0, 50.0))
        p = 1.0 / (1.0 + math.exp(-z))
        if p > float(s["tempo_double_p"]) and subdivides_in_three(a.onset_env, _best_grid(a.pooled_onset, 60.0 * FPS / t)):
            p = 0.0
        trail.append((round(t, 2), round(p, 3)))
        if p > float(s["tempo_double_p"]) and t * 2.0 <= tmax:
            t *= 2.0
            continue
        return t, trail


def rhythmic_clarity(note_onsets: int) -> float:
    """How much a clip can have a beat at all, from its number of note onsets
    (:attr:`Analysis.note_onsets`): 0 with 2 or fewer, 1 from 8. A chord held for 10 s has 0, a
    slowly swelling drone 1; the evaluation set's clips have 12 or more, the folk and pop-style
    renders of the benchmarks 15 and 26 or more (white noise has 122: :func:`pulse_clarity` is
    what tells noise from a beat).
    """
    return _clip01((note_onsets - 2) / 6.0)


_PULSE_SURROGATES, _PULSE_BLOCK = 32, 8


def pulse_significance(a: Analysis) -> float:
    """How far the attack envelope's periodicity stands above chance, in standard deviations.

    The statistic is the highest autocorrelation of :attr:`Analysis.attack_env` over the beat lags
    of the tempo range. Its null distribution comes from the same envelope with its 128 ms blocks
    shuffled (32 seeded draws): the same onsets at random times, so the bar it sets rises for a
    few sparse onsets, where chance peaks are high, as it should. Music with a beat scores 3-30
    (the evaluation set's median 11, 2 % under 2.7; the 200 folk songs' median 8.6, 2 % under
    1.6; notes on a steady beat about 20); noise, rain, wind, randomly timed clicks and randomly
    timed notes -3 to 1 mostly, white noise 2.2, one draw of random notes 3.5.
    """
    env = a.attack_env
    nb = env.size // _PULSE_BLOCK
    lag_min, lag_max = _beat_lags(a.settings, nb * _PULSE_BLOCK)
    if nb < 4 or lag_max <= lag_min or not env.any():
        return 0.0
    blocks = env[: nb * _PULSE_BLOCK].reshape(nb, _PULSE_BLOCK)
    order = np.argsort(np.random.default_rng(0).random((_PULSE_SURROGATES, nb)), axis=1)
    X = np.vstack([blocks.reshape(1, -1), blocks[order].reshape(_PULSE_SURROGATES, -1)]).astype(np.float64)
    peak = _autocorr(X)[:, lag_min: lag_max + 1].max(axis=1)
    return float((peak[0] - peak[1:].mean()) / (peak[1:].std() + 1e-9))


def pulse_clarity(significance: float) -> float:
    """How much the onsets have a pulse, from :func:`pulse_significance`: 0 up to 1 standard
    deviation above chance, 1 from 3. Many onsets without a pulse (noise, notes at random times:
    47-177 BPM had been read from them at 0.19-1.0) are what :func:`rhythmic_clarity` cannot
    catch. Below 3 the tempo of music is still mostly right (9 of 12 among every other clip of the
    evaluation set and of the 200 folk songs), so the ramp costs some honest confidence there;
    white noise keeps 0.6 of its own.
    """
    return _clip01((significance - 1.0) / 2.0)


def _refine_tempo(times: np.ndarray, bpm: float) -> float:
    """Tempo from a line fitted through the beat times (skipped/doubled beats re-indexed)."""
    if times.size < 4:
        return bpm
    period = 60.0 / bpm
    idx = np.concatenate([[0], np.cumsum(np.maximum(1, np.round(np.diff(times) / period)))])
    slope = float(np.polyfit(idx, times, 1)[0])
    refined = 60.0 / slope if slope > 0 else bpm
    return refined if abs(refined - bpm) <= 0.08 * bpm else bpm


def track_beats(onset_env: np.ndarray, bpm: float, *, tightness: float = 400.0) -> np.ndarray:
    """Beat frames of ``onset_env`` at ``bpm``: Ellis's dynamic-programming tracker (2007, "Beat
    tracking by dynamic programming"), exactly as ``librosa.beat.beat_track(onset_envelope=...,
    bpm=..., tightness=..., trim=False)`` of librosa 0.11 runs it, in numpy.

    The envelope is scaled by its standard deviation and smoothed with a Gaussian of +-one beat;
    each frame's best predecessor lies half a beat to two beats back, at a cost of ``tightness``
    x log(interval / beat)^2; the path ends at the last local maximum of the cumulative score
    above half their median. librosa compiles its smoothing kernel afresh in every process
    (``cache=False``): 2.9 s of the 5-8 s that ``m2i analyze`` took on one file, where the whole
    analysis takes 0.15 s. The same arithmetic in the same order (the libm ``exp`` and ``log``
    through :mod:`math`, librosa's search order and tie-breaking) gives the same frames: checked on
    2,876 analyses of the benchmarks' clips and on 1,000 random envelopes, and by a test.
    """
    env = np.asarray(onset_env)
    if not env.any():
        return np.zeros(0, dtype=int)
    env = env / (env.std(ddof=1) + np.finfo(env.dtype).tiny)
    x = env.astype(np.float64)
    n = x.size
    fpb = float(np.round(FPS * 60.0 / float(bpm)))  # frames per beat
    window = np.array([math.exp(-0.5 * (j * 32.0 / fpb) ** 2) for j in np.arange(-fpb, fpb + 1)])
    K = window.size
    local = np.zeros(n)  # the smoothed envelope, summed in librosa's order (its first frame left out, as there)
    h = K // 2
    for k in range(K):  # frame i takes window[k] x x[i + h - k] where that index is 1 .. n - 1
        lo, hi = max(0, k - h + 1), min(n, n + k - h)
        local[lo:hi] += window[k] * x[lo + h - k: hi + h - k]
    near, far = int(np.round(fpb / 2)), int(2 * fpb)
    log_fpb = math.log(fpb)
    dist = np.arange(near, far + 1)  # predecessors, the nearest first (librosa's search order)
    cost = np.array([tightness * (math.log(d) - log_fpb) ** 2 for d in dist])
    cum = local.copy()
    link = np.full(n, -1, dtype=np.int64)
    # a frame's predecessors lie round(fpb / 2) frames back or more, so those of a block of that
    # many frames are all scored already: the programme runs a block at a time
    step = max(near, 1)
    for start in range(step, n, step):
        rows = np.arange(start, min(n, start + step))
        locs = rows[:, None] - dist[None, :]
        scores = np.where(locs >= 0, cum[np.maximum(locs, 0)] - cost[None, :], -np.inf)
        j = np.argmax(scores, axis=1)
        best = scores[np.arange(rows.size), j]
        has = np.isfinite(best)
        cum[rows[has]] = local[rows[has]] + best[has]
        link[rows[has]] = locs[has, j[has]]
    above = np.flatnonzero(local >= 0.01 * local.max())
    link[: above[0] if above.size else n] = -1  # frames before the envelope first reaches 1 % of its peak start a path
    peak = np.zeros(n, dtype=bool)  # librosa.util.localmax
    peak[1:-1] = (cum[1:-1] > cum[:-2]) & (cum[1:-1] >= cum[2:])
    peak[-1] = n > 1 and cum[-1] > cum[-2]
    half_median = 0.5 * np.ma.getdata(np.ma.median(np.ma.masked_array(cum, mask=~peak)))
    last = np.flatnonzero(peak & (cum >= half_median))
    beats = np.zeros(n, dtype=bool)
    m = int(last[-1]) if last.size else n - 1
    while m >= 0:
        beats[m] = True
        m = int(link[m])
    sounding = np.flatnonzero(local > 0)  # trim=False still drops beats where the smoothed envelope is 0
    if sounding.size:
        beats[: sounding[0]] = False
        beats[sounding[-1] + 1:] = False
    return np.flatnonzero(beats)


def estimate_beats(a: Analysis) -> dict[str, Any]:
    """Tempo in BPM, beat times in seconds (and frames), a confidence, and the clarity of the beat
    itself (:func:`rhythmic_clarity` x :func:`pulse_clarity`: 0 for a held chord or noise)."""
    bpm, conf, info = _choose_tempo(a.attack_env, a.settings)
    bpm, trail = _octave_decision(a, bpm)
    info["octave_trail"] = trail
    # confidence: how decisive the last octave decision was, and the periodicity margin; none
    # where there are too few note onsets to make a beat (a held chord had read 52 BPM at 0.50)
    # or the onsets have no pulse (noise); the metre's confidence takes the same clarity
    info["pulse_significance"] = round(pulse_significance(a), 2)
    clarity = rhythmic_clarity(a.note_onsets) * pulse_clarity(info["pulse_significance"])
    conf = _clip01(0.5 * conf + 0.5 * abs(trail[-1][1] - 0.5) * 2.0) * clarity
    info["note_onsets"] = a.note_onsets
    env = a.onset_env / (a.onset_env.std() + 1e-9)
    beats = track_beats(env, bpm, tightness=400.0)
    if beats.size < 2:
        period = 60.0 * FPS / bpm
        beats = np.arange(0, a.n_frames, period).astype(int)
    # the flux at frame t is the change from frame t-1 to t, so the onset lies half a frame
    # earlier (the tracked beats lagged the rendered beats by a median 11 ms on the evaluation set)
    times = np.maximum(beats / FPS - 0.5 / FPS, 0.0)
    return {"tempo": round(float(bpm), 1), "beat_frames": beats, "beats": [round(float(t), 3) for t in times],
            "confidence": round(conf, 3), "clarity": round(clarity, 3), "info": info}


# --------------------------------------------------------------------------- chords


# Mean chroma (rotated to root C, unit norm) of the half-beat segments that the RomanText analyses
# label major / minor, on the even-numbered chorale_rn clips of benchmarks/evalset only. Beyond the
# triad they carry what the rendered instruments and Bach's voice leading add: partials, passing
# notes (the second and the seventh), so they fit real audio better than 0/1 templates.
_LEARNED_TRIADS = {
    "maj": [0.511, 0.135, 0.280, 0.112, 0.430, 0.185, 0.168, 0.469, 0.142, 0.164, 0.190, 0.282],
    "min": [0.496, 0.137, 0.319, 0.388, 0.195, 0.213, 0.126, 0.477, 0.120, 0.179, 0.277, 0.181],
}


TRIAD_LABELS: list[tuple[int, str]] = [(r, q) for q in ("maj", "min") for r in range(12)]
"""The 24 chord states everywhere in the chord code: (root pitch class, quality), major C..B then minor C..B."""


def _chord_templates(harmonics: float = 1.0, kind: str = "binary") -> tuple[np.ndarray, list[tuple[int, str]]]:
    """24 triad templates and their labels (root pitch class, ``"maj"``/``"min"``).

    ``kind="binary"``: chord tones plus ``harmonics`` x their partials 2-4; ``kind="learned"``: the
    mean chroma of labelled segments (:data:`_LEARNED_TRIADS`) rotated to each root.
    """
    if kind == "learned":
        temps = [np.roll(np.asarray(_LEARNED_TRIADS[q], dtype=float), r) for r, q in TRIAD_LABELS]
        return np.asarray([t / np.linalg.norm(t) for t in temps]), list(TRIAD_LABELS)
    if kind != "binary":
        raise ValueError(f"chord_templates must be 'logistic', 'learned' or 'binary', not {kind!r}")
    temps = []
    h = float(harmonics)
    harm = [(0, 1.0), (12, 0.5 * h), (19, 0.33 * h), (24, 0.25 * h)]  # partials 1..4 of each chord tone
    for r, q in TRIAD_LABELS:
        t = np.zeros(12)
        for i in {"maj": (0, 4, 7), "min": (0, 3, 7)}[q]:
            for off, w in harm:
                t[(r + i + off) % 12] += w
        temps.append(t / np.linalg.norm(t))
    return np.asarray(temps), list(TRIAD_LABELS)


_DIATONIC = {
    "major": {(0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min")},
    "minor": {(0, "min"), (3, "maj"), (5, "min"), (7, "maj"), (7, "min"), (8, "maj"), (10, "maj")},
}


def diatonic_mask(tonic_pc: int, mode: str, labels: list[tuple[int, str]]) -> np.ndarray:
    """1.0 for the triads that belong to the key (minor: natural and harmonic), else 0.0."""
    keep = _DIATONIC[mode]
    return np.array([1.0 if ((r - tonic_pc) % 12, q) in keep else 0.0 for r, q in labels])


def beat_sync(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Mean of ``x`` [d, T] over each interval of ``bounds`` (frame indices)."""
    out = np.zeros((x.shape[0], len(bounds) - 1), dtype=np.float64)
    for i in range(len(bounds) - 1):
        lo, hi = int(bounds[i]), max(int(bounds[i]) + 1, int(bounds[i + 1]))
        out[:, i] = x[:, lo:hi].mean(axis=1)
    return out


def chord_bounds(a: Analysis, beat_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segment frame bounds for the chords: every beat, split in two when it lasts at least
    ``chord_split_frames`` frames. Also returns, per segment, whether it starts mid-beat."""
    bounds = np.unique(np.concatenate([[0], beat_frames[(beat_frames > 0) & (beat_frames < a.n_frames)], [a.n_frames]]))
    # split every beat in two so chords that change on the half beat are not smeared
    halves, mid = [], []
    split = int(a.settings["chord_split_frames"])
    for i in range(len(bounds) - 1):
        halves.append(bounds[i])
        mid.append(False)
        if split and bounds[i + 1] - bounds[i] >= split:
            halves.append((bounds[i] + bounds[i + 1]) // 2)
            mid.append(True)
    halves.append(bounds[-1])
    return np.asarray(halves), np.asarray(mid, dtype=bool)


def chord_features(a: Analysis, bounds: np.ndarray) -> np.ndarray:
    """Per segment, seven 12-bin blocks [84, n] for :data:`m2i.audio.chord_model.WEIGHTS`.

    Each block is L2-normalised: the log chroma, the bass chroma, the log chroma of three
    two-octave bands (C2-B3, C4-B5, C6-B7), and the log chroma of the previous and the next
    segment. Log compression is fixed at gamma 10 (the weights were fitted with it).
    """
    semi = a.semi
    S = beat_sync(np.log1p(10.0 * semi / (float(semi.max()) + 1e-9)), bounds)  # [72, n]

    def unit(x: np.ndarray) -> np.ndarray:
        return x / (np.linalg.norm(x, axis=0, keepdims=True) + 1e-9)

    chroma = unit(S.reshape(N_OCT, 12, -1).sum(axis=0))
    blocks = [chroma, unit(beat_sync(a.bass_chroma, bounds))]
    blocks += [unit(S[lo * 12 : (lo + 2) * 12].reshape(2, 12, -1).sum(axis=0)) for lo in (0, 2, 4)]
    blocks.append(np.concatenate([chroma[:, :1], chroma[:, :-1]], axis=1))  # previous segment
    blocks.append(np.concatenate([chroma[:, 1:], chroma[:, -1:]], axis=1))  # next segment
    return np.concatenate(blocks, axis=0)


def chord_logistic_scores(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rotation-shared linear scores [24, n] (rows major C..B, minor C..B) of features ``X``.

    For root ``r`` every 12-bin block of ``X`` is rotated so that ``r`` comes first; the score of
    (``r``, quality) is then the same weight vector per quality for all twelve roots
    (``weights`` [2, d + 1]: major and minor rows, bias last).
    """
    k = X.shape[0] // 12
    Xb = X.reshape(k, 12, -1)
    rot = np.stack([np.roll(Xb, -r, axis=1).reshape(k * 12, -1) for r in range(12)])  # [12, d, n]
    d = k * 12
    sc = np.einsum("qd,rdn->qrn", weights[:, :d], rot) + weights[:, d][:, None, None]
    return sc.reshape(24, -1)


@dataclass
class ChordObservations:
    """The chord classifier's view of a clip: half-beat segments and each triad's log-probability."""

    bounds: np.ndarray  # segment bounds in frames, len n + 1
    mid: np.ndarray  # [n] True where the segment starts mid-beat
    logp: np.ndarray  # [24, n] log-probabilities of the triads (rows major C..B, minor C..B)


def chord_observations(a: Analysis, beat_frames: np.ndarray, weights: np.ndarray | None = None) -> ChordObservations:
    """Segments (:func:`chord_bounds`) and the logistic classifier's log-probabilities, its scores
    scaled by ``chord_logistic_temp``. ``weights`` defaults to :data:`m2i.audio.chord_model.WEIGHTS`.
    Shared by the key (:func:`key_chord_loglik`) and the chords (:func:`estimate_chords`)."""
    bounds, mid = chord_bounds(a, beat_frames)
    w = _chord_weights() if weights is None else weights
    sc = chord_logistic_scores(chord_features(a, bounds), w) * float(a.settings["chord_logistic_temp"])
    return ChordObservations(bounds, mid, _log_softmax(sc))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over axis 0."""
    x = x - x.max(axis=0, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=0, keepdims=True))


@functools.cache
def _chord_weights() -> np.ndarray:
    from m2i.audio.chord_model import WEIGHTS

    return np.asarray(WEIGHTS, dtype=float)


@functools.cache
def _key_relative_transitions(tonic_pc: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Log transition matrices (into an on-beat segment, into a mid-beat one) between the 24
    absolute triads, from the key-relative counts of :mod:`m2i.audio.chord_model` (+1 smoothing).
    Cached: 24 keys at most; callers only read them."""
    from m2i.audio.chord_model import TRANSITION_COUNTS

    on_beat, mid_beat = _log_probs_in_key(TRANSITION_COUNTS[mode], tonic_pc)  # [2, 24, 24]
    return on_beat, mid_beat


def _viterbi(logp: np.ndarray, trans: list[np.ndarray], which: np.ndarray) -> np.ndarray:
    """Best state path; ``trans[which[t]]`` is the log transition matrix into segment ``t``."""
    n_states, n = logp.shape
    delta = logp[:, 0].copy()
    back = np.zeros((n_states, n), dtype=int)
    for t in range(1, n):
        m = delta[:, None] + trans[int(which[t])]
        back[:, t] = m.argmax(axis=0)
        delta = m.max(axis=0) + logp[:, t]
    path = np.zeros(n, dtype=int)
    path[-1] = int(delta.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[path[t], t]
    return path


def estimate_chords(a: Analysis, beat_frames: np.ndarray, obs: ChordObservations | None = None) -> dict[str, Any]:
    """Half-beat-synchronous triads, smoothed by Viterbi decoding.

    ``chord_templates="logistic"`` (default): log-probabilities of a rotation-shared logistic
    classifier (:func:`chord_observations`, computed here unless ``obs`` is given) and key-relative
    transitions that depend on whether the segment starts on the beat or mid-beat (both from
    :mod:`m2i.audio.chord_model`). ``"learned"`` / ``"binary"``: cosine similarity to 24 triad
    templates, a diatonic bonus and a uniform transition matrix (``chord_self_prob``).

    Returns ``{"segments": [[start_s, end_s, "G:maj"], ...], "path": [...], "confidence": ...}``.
    """
    s = a.settings
    kind = str(s["chord_templates"])
    key = a.extra.get("key")
    labels = TRIAD_LABELS
    if kind == "logistic":
        if obs is None:
            obs = chord_observations(a, beat_frames)
        bounds, mid, logp = obs.bounds, obs.mid, obs.logp
    else:
        bounds, mid = chord_bounds(a, beat_frames)
        ch = beat_sync(a.chroma, bounds)
        bs = beat_sync(a.bass_chroma, bounds)
        temps, labels = _chord_templates(float(s["chord_template_harmonics"]), kind)
        chn = ch / (np.linalg.norm(ch, axis=0, keepdims=True) + 1e-9)
        sim = temps @ chn  # [24, n]
        bsn = bs / (bs.sum(axis=0, keepdims=True) + 1e-9)
        roots = np.array([r for r, _ in labels])
        sim = sim + float(s["chord_bass_weight"]) * bsn[roots, :]
        if key is not None and float(s["chord_key_bonus"]) > 0:
            sim = sim + float(s["chord_key_bonus"]) * diatonic_mask(key["tonic_pc"], key["mode"], labels)[:, None]
        logp = _log_softmax(sim * float(s["chord_obs_scale"]))  # the Viterbi runs on a log-softmax
    n_states, n = logp.shape
    if kind == "logistic" and key is not None:
        trans = list(_key_relative_transitions(int(key["tonic_pc"]), str(key["mode"])))
    else:
        p_self = float(s["chord_self_prob"])
        uniform = np.full((n_states, n_states), math.log((1 - p_self) / (n_states - 1)))
        np.fill_diagonal(uniform, math.log(p_self))
        trans = [uniform, uniform]
    path = _viterbi(logp, trans, mid)
    post = np.exp(logp[path, np.arange(n)])
    names = root_names(str(key["key"]), str(key["mode"])) if key is not None else PITCH_NAMES_SHARP
    segs: list[list[Any]] = []
    carry: float | None = None
    for i, st in enumerate(path):
        r, q = labels[st]
        lab = f"{names[r]}:{q}"
        t0, t1 = float(bounds[i] / FPS), float(min(bounds[i + 1] / FPS, a.duration_s))
        if carry is not None:  # a sliver before this segment starts it
            t0, carry = carry, None
        if t1 - t0 < _MIN_SEGMENT_S:  # a sliver at either end of the clip: part of its neighbour
            if segs:
                segs[-1][1] = round(t1, 3)
                continue
            if i + 1 < len(path):
                carry = t0
                continue
        if segs and segs[-1][2] == lab:
            segs[-1][1] = round(t1, 3)
        else:
            segs.append([round(t0, 3), round(t1, 3), lab])
    return {"segments": segs, "path": [labels[p] for p in path], "confidence": round(float(np.mean(post)), 3)}


_MIN_SEGMENT_S = 0.05


@functools.cache
def root_names(tonic: str, mode: str) -> tuple[str, ...]:
    """How each pitch class is spelled as a chord root in a key, as its Roman numeral reads
    (:func:`roman`): the numeral's degree letter with the key signature's alteration, raised by a
    ``#`` or lowered by a ``b`` numeral (Ab for bVI and Bb for bVII in C major, B for #VII in C
    minor, C# for #III in A minor); the key's direction (sharps or flats) where that would take a
    double accidental. Cached (24 keys)."""
    from m2i.audio.abc import LETTERS, key_alterations

    alt = key_alterations(tonic, mode)
    plain = PITCH_NAMES_FLAT if min(alt.values()) < 0 else PITCH_NAMES_SHARP
    first = LETTERS.index(tonic[0])
    out = []
    for deg in range(12):
        name = (_MAJOR_DEGREES if mode == "major" else _MINOR_DEGREES)[deg]
        acc = name.rstrip("IV")
        letter = LETTERS[(first + _NUMERALS.index(name[len(acc):])) % 7]
        a = alt[letter] + acc.count("#") - acc.count("b")
        out.append(letter + ("#" * a if a > 0 else "b" * -a) if abs(a) <= 1 else None)
    tonic_pc = pitch_class(tonic)
    return tuple(out[(pc - tonic_pc) % 12] or plain[pc] for pc in range(12))


_NUMERALS = ["I", "II", "III", "IV", "V", "VI", "VII"]


def pitch_class(name: str) -> int:
    """Pitch class of a spelled note name (``"Bb"``, ``"F#"``, ``"C"``)."""
    from m2i.audio.abc import NATURAL_PC

    return (NATURAL_PC[name[0]] + name.count("#") - name.count("b")) % 12


_MAJOR_DEGREES = {0: "I", 1: "bII", 2: "II", 3: "bIII", 4: "III", 5: "IV", 6: "#IV", 7: "V", 8: "bVI", 9: "VI", 10: "bVII", 11: "VII"}
_MINOR_DEGREES = {0: "I", 1: "bII", 2: "II", 3: "III", 4: "#III", 5: "IV", 6: "#IV", 7: "V", 8: "VI", 9: "#VI", 10: "VII", 11: "#VII"}


def roman(root_pc: int, quality: str, tonic_pc: int, mode: str) -> str:
    """Roman numeral of a triad in a key (upper case major, lower case minor).

    >>> roman(7, "maj", 0, "major"), roman(9, "min", 0, "major"), roman(7, "maj", 9, "minor")
    ('V', 'vi', 'VII')
    """
    deg = (root_pc - tonic_pc) % 12
    name = (_MAJOR_DEGREES if mode == "major" else _MINOR_DEGREES)[deg]
    acc = name.rstrip("IV")
    num = name[len(acc) :]
    return acc + (num if quality == "maj" else num.lower())


def progression(segments: list[list[Any]], tonic_pc: int, mode: str, *, max_len: int = 8) -> dict[str, Any]:
    """Collapse chord segments into a Roman-numeral progression (at most ``max_len`` chords)."""
    rn: list[str] = []
    for seg in segments:
        if seg[1] - seg[0] < 0.15:
            continue
        name, q = seg[2].split(":")
        pc = pitch_class(name)
        r = roman(pc, q, tonic_pc, mode)
        if not rn or rn[-1] != r:
            rn.append(r)
    rn = rn[:max_len]
    return {"roman": rn, "text": "-".join(rn)}


# --------------------------------------------------------------------------- meter


# Logistic model of "the bar has three beats" (:func:`estimate_meter`), fitted by
# benchmarks/evalset/fit_meter.py on the even-numbered clips of the evaluation set only, each
# clip twice: as rendered (starting on a bar line) and with its first 0.3-1.5 s cut off (so the
# model cannot learn where the clip starts). Balanced classes, L2 (C = 0.3) on standardised
# inputs, folded back to raw inputs here. Order: bias; for the per-beat accent, bass onset,
# loudness and accent + bass onset (:func:`meter_features`), the triple grouping's contrast minus
# the best duple one's, and the 4-beat grouping's minus the 2-beat one's; log2(tempo / 90).
_METER_W = np.array([-0.7033, 0.0313, -0.4614, 1.2026, 0.0565, 1.9977, 0.2627, 1.7642, 3.1321, 1.1833])

_METER_TRIPLE_SHARE = 44 / 316
"""Share of triple excerpts among those the metre model was fitted on (``fit_meter.py`` prints it).
The model was fitted with balanced classes, so its probability is that of an excerpt drawn half
triple, half duple: right for the decision, which the balanced accuracy judges, but not for the
confidence. The confidence rescales its odds to this share (Bayes' rule), so that it says how often
such an answer is right: on the evaluation set a 3/4 answer had been given 0.75 on average and was
right 34 % of the time."""

_METER_4_OVER_2 = 0.6
"""A duple metre is 4/4 unless the 4-beat grouping's contrast is under 0.6 x the 2-beat one's
(an accent on every other beat and nothing to tell beat 1 from beat 3 is 2/4). An exact
alternation gives 4-beat contrast 2/3 x the 2-beat one; at the 0.8 used before, rock beats
(kick on 1 and 3, snare on 2 and 4) came out 2/4."""


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def _best_grouping(x: np.ndarray, m: int) -> tuple[float, int]:
    """(mean of ``x`` on every m-th beat minus the mean on the rest, phase), at the best phase."""
    best = (-1e9, 0)
    for ph in range(m):
        sel = np.zeros(x.size, dtype=bool)
        sel[ph::m] = True
        if sel.sum() >= 2 and (~sel).sum() >= 2:
            best = max(best, (float(x[sel].mean() - x[~sel].mean()), ph))
    return best


def meter_features(a: Analysis, beat_frames: np.ndarray, tempo: float) -> tuple[np.ndarray, dict[int, tuple[float, int]], np.ndarray] | None:
    """The inputs of the metre model (:data:`_METER_W`, without its bias); the groupings of
    accent + bass onset by 2, 3 and 4 beats (contrast, phase); and the downbeat cue per beat
    (accent + bass onset + 2 x loudness, standardised each). Beats are counted from the second
    tracked beat.

    Per beat: the onset strength at the beat (accent), the bass energy starting there, and the
    mean loudness over the beat. The first tracked beat is left out: a clip's first frames read
    as an onset wherever the clip starts in the bar, and evaluation renders that all start on a
    bar line had made that artefact look like a downbeat cue. None when there are too few beats.
    """
    bf = beat_frames[(beat_frames >= 0) & (beat_frames < a.n_frames)]
    if bf.size < 6:
        return None
    env = a.onset_env / (a.onset_env.std() + 1e-9)
    b = bf[1:]
    acc = np.array([env[max(0, s - 1) : s + 3].max() for s in b[:-1]])
    bass_on = np.array([a.bass_chroma[:, s : s + 4].sum() for s in b[:-1]])
    loud = np.array([a.rms_db[s0:s1].mean() for s0, s1 in zip(b[:-1], b[1:])])
    accent_bass = _zscore(acc) + _zscore(bass_on)
    per_cue = {name: {m: _best_grouping(_zscore(v), m) for m in (2, 3, 4)} for name, v in (
        ("accent", acc), ("bass", bass_on), ("loudness", loud), ("accent+bass", accent_bass))}
    x: list[float] = []
    for g in per_cue.values():
        x += [g[3][0] - max(g[2][0], g[4][0]), g[4][0] - g[2][0]]
    x.append(math.log2(max(tempo, 1.0) / 90.0))
    # the phase of the bar: the loudness of the beat finds it better than accent and bass alone
    # (on the evaluation clips with the right bar length 0.54 -> 0.75-0.77 of downbeats right)
    downbeat_cue = accent_bass + 2.0 * _zscore(loud)
    return np.array(x), per_cue["accent+bass"], downbeat_cue


def estimate_meter(a: Analysis, beats: dict[str, Any]) -> dict[str, Any]:
    """Time signature (2/4, 3/4, 4/4, 6/8) of the beats :func:`estimate_beats` found, with a
    confidence from the models' probabilities and the beat's clarity (no beat, no metre).

    Triple or duple from a logistic model over how the beats group (:func:`meter_features`,
    :data:`_METER_W`; its confidence at the share of triple metres it was fitted on,
    :data:`_METER_TRIPLE_SHARE`); a duple metre is 4/4 or 2/4 by the 4- and 2-beat groupings
    (:data:`_METER_4_OVER_2`), and 6/8 when its beats divide in three (:func:`compound_probability`).
    """
    bf = beats["beat_frames"]
    bf = bf[(bf >= 0) & (bf < a.n_frames)]
    feats = meter_features(a, bf, beats["tempo"])
    if feats is None:
        return {"time_signature": "4/4", "confidence": round(0.1 * beats["clarity"], 3), "downbeat": 0,
                "beats_per_bar": 4, "compound": False}
    x, groups, downbeat_cue = feats
    z = float(np.clip(_METER_W @ np.r_[1.0, x], -50.0, 50.0))
    # the decision at even odds; the confidence at the odds of the clips the model was fitted on
    p_triple = 1.0 / (1.0 + math.exp(-z - math.log(_METER_TRIPLE_SHARE / (1.0 - _METER_TRIPLE_SHARE))))
    if z > 0:
        m, conf = 3, p_triple
    else:
        m = 4 if groups[4][0] >= _METER_4_OVER_2 * groups[2][0] else 2
        conf = 1.0 - p_triple
    p3 = compound_probability(a.onset_env, bf)
    compound = p3 > 0.5 and m in (2, 4)
    sig = "6/8" if compound else {2: "2/4", 3: "3/4", 4: "4/4"}[m]
    if m in (2, 4):
        conf *= max(p3, 1.0 - p3)  # a duple metre is as sure as its simple-or-compound decision
    conf *= beats["clarity"]
    return {
        "time_signature": sig,
        "confidence": round(_clip01(conf), 3),
        "downbeat": int((_best_grouping(downbeat_cue, m)[1] + 1) % m),  # counted from the second beat
        "beats_per_bar": m,
        "compound": bool(compound),
    }


# --------------------------------------------------------------------------- melody


def melody_salience(a: Analysis) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Harmonic-summation salience of the clip's pitches: ``(C, full, sal, lo)``.

    ``C`` is the square root of the CQT magnitude; ``full[b]`` the weighted sum of ``C`` at the
    first six harmonics of bin ``b`` counted from the bottom of the CQT; ``sal`` the rows of
    ``full`` in the melody range (from bin ``lo``), with the partials of bass notes below the range
    taken out (``melody_bass_partials``) and, if ``melody_f0_power`` > 0, weighted by the presence
    of each candidate's own fundamental.
    """
    s = a.settings
    C = np.sqrt(a.cqt)
    shifts = [int(round(BPO * math.log2(h))) for h in range(1, 7)]
    weights = [0.8 ** (h - 1) for h in range(1, 7)]
    lo = (int(s["melody_fmin_midi"]) - FMIN_MIDI) * 3
    hi = min(N_BINS - 1, (int(s["melody_fmax_midi"]) - FMIN_MIDI) * 3)
    # salience from the bottom of the CQT, so that a bass below the melody range is seen too
    full = np.zeros((hi, C.shape[1]), dtype=np.float32)
    for sh, w in zip(shifts, weights):
        if sh >= N_BINS:
            break
        a1 = min(hi + sh, N_BINS)
        full[: a1 - sh] += w * C[sh:a1]
    sal = full[lo:hi].copy()
    kappa = float(s["melody_bass_partials"])
    if kappa > 0 and lo > 0:
        # the octave and the twelfth of a bass note below the melody range are its partials, not
        # a melody: with an electric bass under a flute they out-weighed the flute, whose own
        # fundamental they count among their harmonics. A candidate goes when the pitch an octave
        # or a twelfth below it, itself below the range, has kappa x its salience or more
        below_range = full[: lo + 1]  # the sub-harmonics looked at lie under the range
        near = _max3(below_range)  # max over the bin and its two neighbours
        for h in (2, 3):
            d = int(round(BPO * math.log2(h)))
            b = np.arange(max(lo, d), min(hi, lo + d))  # candidates whose sub-harmonic is below the range
            if b.size:
                below = near[b - d]
                sal[b - lo] = np.where(below >= kappa * sal[b - lo], 0.0, sal[b - lo])
    beta = float(s["melody_f0_power"])
    if beta > 0:
        # weight each candidate by the presence of its own fundamental (rejects sub-harmonics)
        fund = C[lo:hi] / (C[lo:hi].max() + 1e-9)
        sal = sal * np.power(fund + 1e-3, beta)
    return C, full, sal, lo


def _max3(x: np.ndarray) -> np.ndarray:
    """Maximum over each row and its two neighbours (axis 0)."""
    m = x.copy()
    m[1:] = np.maximum(m[1:], x[:-1])
    m[:-1] = np.maximum(m[:-1], x[1:])
    return m


def _moving_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over frames ``t - r .. t + r`` (zeros beyond the clip), along axis 1."""
    cs = np.cumsum(np.pad(x, ((0, 0), (r + 1, r))), axis=1)
    return (cs[:, 2 * r + 1 :] - cs[:, : -2 * r - 1]) / (2 * r + 1)


def highest_peak(sal: np.ndarray, ratio: float) -> np.ndarray:
    """Per frame, the highest salience peak within ``ratio`` of the frame's strongest (the row of
    ``sal``; -1 where a frame has none): the melody of ``melody_selector="highest"``, and where
    the learned selector measures each frame's pitch contrast and voicing."""
    up = np.zeros_like(sal, dtype=bool)
    up[1:-1] = (sal[1:-1] >= sal[:-2]) & (sal[1:-1] >= sal[2:])
    cand = up & (sal >= ratio * sal.max(axis=0)[None, :])
    top = sal.shape[0] - 1 - cand[::-1].argmax(axis=0)
    return np.where(cand.any(axis=0), top, -1)


MELODY_CANDIDATES = 8
MELODY_CANDIDATE_FLOOR = 0.05  # a salience peak under 5 % of the frame's strongest is no candidate


def melody_candidates(C: np.ndarray, full: np.ndarray, sal: np.ndarray, lo: int, top_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame's strongest salience peaks and what the melody model reads of each.

    Returns ``bins`` ``[K, T]`` (rows of ``sal``, strongest first; -1 where a frame has fewer
    peaks) and ``X`` ``[K, T, 28]``: the peak's salience against the frame's best, the clip's 95th
    percentile and its own neighbourhood in time (the frames before and after, +-4 and +-12
    frames); its rank by salience and by height; its height above C5 and under the highest peak;
    its fundamental's own CQT energy; the salience an octave and a twelfth below it and an octave
    above; whether it is the highest of the candidates within ``top_ratio`` of the best (the old
    rule, :func:`highest_peak`, among these eight peaks: what the model was fitted on); the number
    of peaks; a few products of these; and three clip-wide shares (how often the highest and the
    strongest peak coincide, and so on) that tell a lead over an accompaniment from an ensemble
    whose voices share a timbre.
    """
    nb, T = sal.shape
    k = min(MELODY_CANDIDATES, nb)
    up = np.zeros_like(sal, dtype=bool)
    up[1:-1] = (sal[1:-1] >= sal[:-2]) & (sal[1:-1] > sal[2:])
    mx = sal.max(axis=0) + 1e-9
    masked = np.where(up & (sal >= MELODY_CANDIDATE_FLOOR * mx[None, :]), sal, -1.0)
    idx = np.argpartition(-masked, k - 1, axis=0)[:k]
    v = np.take_along_axis(masked, idx, 0)
    order = np.argsort(-v, axis=0, kind="stable")
    idx = np.take_along_axis(idx, order, 0)
    v = np.take_along_axis(v, order, 0)
    valid = v > 0
    b = np.where(valid, idx, 0)
    vv = np.where(valid, v, 1e-9)
    cols = np.broadcast_to(np.arange(T), (k, T))
    hb = np.where(valid, b, -1)
    prank = (hb[None, :, :] > hb[:, None, :]).sum(1)  # candidates above this one
    pick = np.where(valid & (vv >= top_ratio * mx[None, :]), b, -1).max(0)
    g = lo + b
    eps = 1e-6 * mx[None, :]

    def rel(x: np.ndarray) -> np.ndarray:
        return np.log((x + eps) / vv)

    octave, twelfth = BPO, int(round(BPO * math.log2(3)))
    near = _max3(sal)
    zero = np.zeros((nb, 1), dtype=near.dtype)
    prev = np.concatenate([zero, near[:, :-1]], 1)
    nxt = np.concatenate([near[:, 1:], zero], 1)
    ctx4, ctx12 = _moving_mean(near, 4), _moving_mean(near, 12)
    p95 = float(np.percentile(mx, 95))
    r = np.arange(k)[:, None]
    log_sal = np.log(vv / mx[None, :])
    below_top = (b - hb.max(0)[None, :]) / 36.0
    height = (g / 3.0 + FMIN_MIDI - 72) / 12.0
    octave_below = np.where(g - octave >= 0, rel(full[np.maximum(g - octave, 0), cols]), 0.0)
    fs = [
        log_sal,
        r == 0, r == 1, r == 2, r >= 3,
        prank == 0, prank == 1, prank == 2,
        below_top,
        height,
        np.log(C[g, cols] / (C.max() + 1e-9) + 1e-4),
        octave_below,
        np.where(b + octave < nb, rel(sal[np.minimum(b + octave, nb - 1), cols]), -5.0),
        np.where(g - twelfth >= 0, rel(full[np.maximum(g - twelfth, 0), cols]), 0.0),
        np.log(vv / p95 + 1e-3),
        rel(prev[b, cols]),
        rel(nxt[b, cols]),
        valid.sum(0) / MELODY_CANDIDATES,
        b == pick[None, :],
        rel(ctx4[b, cols]),
        rel(ctx12[b, cols]),
        np.log(ctx12[b, cols] / (_moving_mean(mx[None, :], 12)[0][None, :] + 1e-9) + 1e-4),
        log_sal * below_top,
        height**2,
        octave_below * log_sal,
    ]
    first = valid[0]
    shares = [
        float(np.mean((b[0] == pick)[first])) if first.any() else 0.0,  # the strongest is the pick
        float(np.mean((prank[0] == 0)[first])) if first.any() else 0.0,  # the strongest is the highest
        float(np.mean(valid.sum(0))) / MELODY_CANDIDATES,
    ]
    X = np.stack([np.broadcast_to(np.asarray(f, dtype=np.float32), (k, T)) for f in fs]
                 + [np.full((k, T), x, dtype=np.float32) for x in shares], -1)
    X[~valid] = 0.0
    return np.where(valid, idx, -1), X


@functools.cache
def _melody_network() -> dict[str, np.ndarray]:
    """``m2i/audio/melody_model.py``'s constants as float32 arrays (``MEAN``, ``SCALE``, ``W1``,
    ``B1``, ...). Cached; callers only read them."""
    from m2i.audio import melody_model as m

    return {k: np.asarray(v, dtype=np.float32) for k, v in m.NETWORK.items()}


def melody_candidate_scores(X: np.ndarray, valid: np.ndarray, net: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The melody model's score of each of a frame's candidates (``X`` ``[K, T, 28]`` and ``valid``
    ``[K, T]`` from :func:`melody_candidates`). Each candidate's inputs, standardised, pass a tanh
    layer; its second layer also reads what the frame's other candidates offer, through one
    attention head over them (so that "a stronger peak a third above me" can count), then a linear
    score. ``net``: the constants, by default ``m2i/audio/melody_model.py``'s, fitted by
    ``benchmarks/evalset/fit_melody.py``, whose torch module computes the same."""
    net = _melody_network() if net is None else net
    k, T = valid.shape
    x = (((X - net["MEAN"]) / net["SCALE"]) * valid[..., None]).transpose(1, 0, 2).reshape(T * k, -1)
    h1 = np.tanh(x @ net["W1"] + net["B1"])  # [T * K, H]: one matrix product for all frames
    q, key, v = ((h1 @ net[w] + net[b]).reshape(T, k, -1) for w, b in (("WQ", "BQ"), ("WK", "BK"), ("WV", "BV")))
    att = q @ key.transpose(0, 2, 1) / np.float32(math.sqrt(h1.shape[-1]))
    att = np.where(valid.T[:, None, :], att, np.float32(-1e9))
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    h2 = np.tanh(h1 @ net["W2"] + net["B2"] + (att @ v).reshape(T * k, -1))
    return (h2 @ net["WO"]).reshape(T, k).T + net["BO"][0]


def melody_path(scores: np.ndarray, valid: np.ndarray, pitch: np.ndarray, jump_cost: float) -> np.ndarray:
    """Viterbi path through the candidates: each frame's log-softmax score minus ``jump_cost`` per
    semitone moved since the previous frame (at most 12). Returns the row of ``scores`` chosen in
    each frame, -1 where a frame has no candidate."""
    k, T = scores.shape
    s = np.where(valid, scores, -1e9)
    top = s.max(0)
    logp = s - top - np.log(np.exp(s - top).sum(0))
    value = logp[:, 0].copy()
    back = np.zeros((k, T), dtype=np.int64)
    rows = np.arange(k)
    # cost[t - 1, i, j]: from candidate j of frame t - 1 to candidate i of frame t
    cost = jump_cost * np.minimum(np.abs(pitch.T[1:, :, None] - pitch.T[:-1, None, :]), 12.0)
    for t in range(1, T):
        total = value[None, :] - cost[t - 1]
        j = total.argmax(1)
        back[:, t] = j
        value = logp[:, t] + total[rows, j]
    path = np.zeros(T, dtype=np.int64)
    path[-1] = int(value.argmax())
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[path[t], t]
    return np.where(valid.any(0), path, -1)


def _peak_midi(sal: np.ndarray, b: np.ndarray, lo: int) -> np.ndarray:
    """MIDI pitch of salience peaks at rows ``b`` (one per frame or ``[K, T]``; parabolic
    interpolation over the peak and its two neighbours)."""
    T = sal.shape[1]
    cols = np.broadcast_to(np.arange(T), b.shape)
    b = np.clip(b, 0, sal.shape[0] - 1)
    y1 = sal[b, cols]
    y0 = sal[np.maximum(b - 1, 0), cols]
    y2 = sal[np.minimum(b + 1, sal.shape[0] - 1), cols]
    den = y0 - 2 * y1 + y2
    ok = np.abs(den) > 1e-12
    d = np.where(ok, 0.5 * (y0 - y2) / np.where(ok, den, 1.0), 0.0)
    return CQT_FMIN_MIDI + (lo + b + np.clip(d, -0.5, 0.5)) / 3.0


def melody_track(a: Analysis) -> dict[str, Any]:
    """Predominant melody f0 per frame (Hz, 0 = unvoiced) by harmonic summation on the CQT.

    The salience of a candidate pitch is the weighted sum of the CQT magnitudes at its first
    six harmonics (:func:`melody_salience`). With ``melody_selector="learned"`` (the default) the
    melody is a Viterbi path through each frame's strongest salience peaks, scored by a small
    network fitted on rendered chorales and folk songs (:func:`melody_candidates`); with
    ``"highest"`` it is, in each frame, the highest peak within ``melody_top_ratio`` of the
    strongest (melodies usually sit on top). Frames whose salience is below ``melody_voicing``
    times the clip's 95th percentile, or whose loudness is 35 dB under the clip's peak, are
    unvoiced.
    """
    s = a.settings
    C, full, sal, lo = melody_salience(a)
    T = sal.shape[1]
    cols = np.arange(T)
    ratio = float(s["melody_top_ratio"])
    pick = highest_peak(sal, ratio)
    has = pick >= 0
    top = np.maximum(pick, 0)
    strength = np.where(has, sal[top, cols], 0.0)
    thr = float(s["melody_voicing"]) * float(np.percentile(sal.max(axis=0), 95))
    voiced = (strength > thr) & (a.rms_db > a.rms_db.max() - 35.0)
    # a pitch stands out of its neighbourhood: the CQT at the chosen pitch over the median of the
    # bins 1.3-2.3 semitones either side. Harmonic tones give 3-20 in most frames; noise, drums
    # and cymbals rarely pass 2, so their frames carry no melody
    min_contrast = float(s["melody_min_contrast"])
    if min_contrast > 0:
        bins = np.clip(lo + top, 7, N_BINS - 8)
        side = np.stack([C[bins + d, cols] for d in (-7, -6, -5, -4, 4, 5, 6, 7)])
        contrast = C[bins, cols] / (np.median(side, axis=0) + 1e-9)
        # share of the would-be melody frames that are clearly pitched (contrast > 2): 0.86-1.00
        # on the evaluation set's clips sampled, 0.02-0.50 on drum loops and white noise
        pitched = float(np.mean(contrast[voiced] > 2.0)) if voiced.any() else 0.0
        voiced &= contrast > min_contrast
    else:
        pitched = 1.0
    selector = s["melody_selector"]
    if selector == "learned":
        # which voice: the learned path through the candidates (voicing stays the frame's own)
        rows, X = melody_candidates(C, full, sal, lo, ratio)
        pitch = _peak_midi(sal, np.maximum(rows, 0), lo)
        valid = rows >= 0
        path = melody_path(melody_candidate_scores(X, valid), valid, pitch, float(s["melody_jump_cost"]))
        midi = np.where(path >= 0, pitch[np.maximum(path, 0), cols], 0.0)
        voiced &= path >= 0
    elif selector == "highest":
        midi = _peak_midi(sal, top, lo)
    else:
        raise ValueError(f"melody_selector must be 'learned' or 'highest', not {selector!r}")
    midi = np.where(voiced & has, midi, 0.0)
    # median-smooth the pitch in MIDI over 5 frames inside voiced regions: a voiced frame takes the
    # median of the voiced frames among itself and its two neighbours either side, if there are 3
    sm = midi.copy()
    if T >= 5:
        win = np.lib.stride_tricks.sliding_window_view(midi, 5)  # win[i] is frames i..i+4, centre i+2
        n_voiced = (win > 0).sum(axis=1)
        take = (midi[2:-2] > 0) & (n_voiced >= 3)
        if take.any():
            with np.errstate(all="ignore"):
                med = np.nanmedian(np.where(win[take] > 0, win[take], np.nan), axis=1)
            sm[2:-2][take] = med
    # f0 in Hz as it sounds; midi stays on the clip's own semitone grid (its notes' names)
    f0 = np.where(sm > 0, 440.0 * 2 ** ((sm - 69 + a.tuning_cents / 100.0) / 12), 0.0)
    times = np.arange(T) / FPS
    return {"times": times, "f0": f0, "midi": sm, "voiced": sm > 0, "pitched": pitched}


def melody_notes(a: Analysis, track: dict[str, Any], *, min_dur_s: float | None = None) -> list[tuple[float, float, int]]:
    """Segment the pitch track into notes ``(onset_s, offset_s, midi)``.

    A note is a run of voiced frames whose rounded MIDI pitch stays the same; a new note also
    starts at a strong onset inside a run (repeated notes). Runs shorter than ``min_dur_s`` are
    dropped.
    """
    if min_dur_s is None:
        min_dur_s = float(a.settings.get("melody_min_note_s", 0.07))
    midi = track["midi"]
    T = midi.size
    rnd = np.where(midi > 0, np.round(midi), 0).astype(int)
    # hysteresis: a pitch change must persist 3 frames
    env = a.onset_env
    thr = max(float(np.percentile(env, 90)), 0.35 * float(env.max()), 0.5) if env.size else 0.0
    peaks = np.zeros(T, dtype=bool)
    if env.size > 2:
        peaks[1:-1] = (env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & (env[1:-1] > thr)
    notes: list[tuple[float, float, int]] = []
    start, cur = None, 0
    t = 0
    while t < T:
        p = rnd[t]
        if start is None:
            if p > 0:
                start, cur = t, p
        else:
            change = p != cur
            if change and p > 0 and t + 2 < T and np.all(rnd[t : t + 3] == p):
                notes.append((start / FPS, t / FPS, cur))
                start, cur = t, p
            elif p == 0 and (t + 2 >= T or np.all(rnd[t : t + 3] == 0)):
                notes.append((start / FPS, t / FPS, cur))
                start = None
            elif not change and peaks[t] and t - start > 4:
                notes.append((start / FPS, t / FPS, cur))
                start = t
        t += 1
    if start is not None:
        notes.append((start / FPS, T / FPS, cur))
    notes = [n for n in notes if n[1] - n[0] >= min_dur_s]
    # Pitch changes show late (the CQT's low-frequency windows are long): move each note start
    # to the onset-envelope peak within ``snap`` frames, and the previous note's end with it.
    snap = int(a.settings.get("melody_onset_snap", 0))
    if snap and env.size > 2 and notes:
        lowthr = float(a.settings.get("melody_snap_thr", 0.1)) * float(env.max())
        pk = np.nonzero((env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & (env[1:-1] > lowthr))[0] + 1
        if pk.size:
            moved = []
            for on, off, p in notes:
                f = on * FPS
                j = int(np.argmin(np.abs(pk - f)))
                if abs(pk[j] - f) <= snap:
                    on = pk[j] / FPS
                if moved and on < moved[-1][1]:
                    moved[-1] = (moved[-1][0], on, moved[-1][2])
                if off - on > 0:
                    moved.append((on, off, p))
            notes = [n for n in moved if n[1] - n[0] > 0]
    lat = float(a.settings.get("melody_latency_s", 0.0))  # reported onsets moved back by the lag
    return [(round(max(0.0, float(on) - lat), 3), round(max(0.0, float(off) - lat), 3), int(p)) for on, off, p in notes]


_HARMONIC_SEMITONES = tuple(round(12 * math.log2(h)) for h in range(1, 9))  # 0, 12, 19, 24, 28, 31, 34, 36


def accompaniment(a: Analysis, track: dict[str, Any], *, share: float = 0.02) -> float:
    """How much of the melody is accompanied: the share of its voiced frames in which the sound
    outside the melody note's first eight harmonics (each +-1 semitone) carries at least
    ``share`` of the frame's energy (-17 dB).

    A solo line reads 0.04-0.3 (its reverberation and the previous note's decay), a ringing
    instrument (piano, harp) playing one line up to 0.9, a melody over chords 0.4-1.0 (on the
    evaluation set's 32 solo folk melodies median 0.11; 30 melodies over an accompaniment median
    1.00, lowest 0.43; pop-style renders 0.94 and over). 0 when no melody was heard.
    """
    frames = np.nonzero(track["voiced"])[0]
    if frames.size == 0:
        return 0.0
    row = np.rint(track["midi"][frames]).astype(int) - FMIN_MIDI  # the semitone rows of ``a.semi`` (C2..B7)
    energy = a.semi[:, frames].astype(np.float64) ** 2
    own = np.zeros(energy.shape, dtype=bool)
    cols = np.arange(frames.size)
    for off in _HARMONIC_SEMITONES:
        for d in (-1, 0, 1):
            rows = row + off + d
            ok = (rows >= 0) & (rows < energy.shape[0])
            own[rows[ok], cols[ok]] = True
    total = energy.sum(axis=0) + 1e-20
    return float(np.mean(np.where(own, 0.0, energy).sum(axis=0) / total >= share))


def harmony_clarity(accompanied: float) -> float:
    """How far chords can be heard, from :func:`accompaniment`: 0 up to 0.35 (a solo line: its
    "chords" are the melody's own notes and partials, a violin's fifth partial making an A-minor
    tune's A a major chord), 1 from 0.65; the harmonic progression's confidence is multiplied by it."""
    return _clip01((accompanied - 0.35) / 0.3)


def contour(track: dict[str, Any], notes: list[tuple[float, float, int]]) -> dict[str, Any]:
    """Reduce a melody to a shape and a range in semitones, with a confidence from how much of the
    clip is voiced, how many notes there are and how clearly pitched its frames are (0 with no
    note: a click track had been given a static melody at a constant 0.2)."""
    voiced_frac = float(np.mean(track["voiced"])) if track["voiced"].size else 0.0
    # times how clearly pitched the clip is: 1 from 85 % of its melody frames, 0 at 50 % or fewer
    clarity = _clip01((float(track["pitched"]) - 0.5) / 0.35)
    conf = round(_clip01(0.3 + 0.5 * voiced_frac + 0.05 * min(len(notes), 4)) * clarity, 3) if notes else 0.0
    if len(notes) < 2:
        return {"shape": "static", "range_semitones": 0.0, "confidence": conf}
    pitches = np.array([p for _, _, p in notes], dtype=float)
    durs = np.array([off - on for on, off, _ in notes])
    rng = float(np.percentile(np.repeat(pitches, np.maximum(1, (durs * 20).astype(int))), 97)
                - np.percentile(np.repeat(pitches, np.maximum(1, (durs * 20).astype(int))), 3))
    n = len(pitches)
    k = max(1, n // 3)
    first, mid, last = pitches[:k].mean(), pitches[k : n - k].mean() if n > 2 * k else pitches.mean(), pitches[-k:].mean()
    diffs = np.sign(np.diff(pitches))
    turns = int(np.sum(diffs[1:] * diffs[:-1] < 0)) if diffs.size > 1 else 0
    thr = 1.5
    if rng <= 2.0:
        shape = "static"
    elif mid - max(first, last) > thr:
        shape = "arch"
    elif min(first, last) - mid > thr:
        shape = "valley"
    elif last - first > thr:
        shape = "ascending"
    elif first - last > thr:
        shape = "descending"
    else:
        shape = "wave"
    if shape in ("ascending", "descending") and turns > n * 0.6 and n > 6:
        shape = "wave"
    return {"shape": shape, "range_semitones": round(rng, 1), "confidence": conf}


# --------------------------------------------------------------------------- dynamics and mood


def dynamics(a: Analysis) -> dict[str, Any]:
    """Loudness (dBFS), dynamic range, trend and a pp..ff label."""
    db = a.rms_db
    active = db[db > db.max() - 50.0]
    energy = 10 * np.log10(np.mean(10 ** (active / 10.0)) + 1e-12)
    loud = float(energy)
    rng = float(np.percentile(active, 95) - np.percentile(active, 10))
    t = np.arange(active.size) / FPS
    slope = float(np.polyfit(t, active, 1)[0]) if active.size > 3 else 0.0
    change = slope * a.duration_s
    trend = "crescendo" if change > 4.0 else "decrescendo" if change < -4.0 else "steady"
    bounds = [(-40.0, "pp"), (-32.0, "p"), (-25.0, "mp"), (-19.0, "mf"), (-13.0, "f")]
    label = "ff"
    for b, lab in bounds:
        if loud < b:
            label = lab
            break
    dist = min(abs(loud - b) for b, _ in bounds)
    conf = _clip01(0.5 + dist / 6.0) * _clip01(1.0 - max(0.0, rng - 25.0) / 40.0)
    return {"label": label, "loudness_db": round(loud, 1), "range_db": round(rng, 1), "trend": trend,
            "confidence": round(_clip01(conf), 3)}


def mood(*, mode: str, mode_conf: float, tempo: float, loudness_db: float, brightness_hz: float,
         onset_rate: float) -> dict[str, Any]:
    """Valence and arousal in [0, 1] and a few mood words.

    Mapping (each term clipped to [0, 1] before weighting)::

        valence = 0.45*mode + 0.20*tempo + 0.20*brightness + 0.15*loudness
        arousal = 0.35*tempo + 0.25*loudness + 0.20*onset_rate + 0.20*brightness

    with ``mode`` = 0.5 +- 0.5*confidence (major +, minor -), ``tempo`` = (BPM - 60)/100,
    ``loudness`` = (dBFS + 40)/30, ``brightness`` = (spectral centroid - 500 Hz)/2500 Hz and
    ``onset_rate`` = onsets per second / 6. Words come from the valence/arousal quadrant.
    """
    m = 0.5 + (0.5 if mode == "major" else -0.5) * mode_conf
    tp = _clip01((tempo - 60.0) / 100.0)
    ld = _clip01((loudness_db + 40.0) / 30.0)
    br = _clip01((brightness_hz - 500.0) / 2500.0)
    on = _clip01(onset_rate / 6.0)
    valence = 0.45 * m + 0.20 * tp + 0.20 * br + 0.15 * ld
    arousal = 0.35 * tp + 0.25 * ld + 0.20 * on + 0.20 * br
    if valence >= 0.5:
        words = ["joyful", "bright"] if arousal >= 0.5 else ["serene", "warm"]
    else:
        words = ["tense", "dramatic"] if arousal >= 0.5 else ["melancholic", "somber"]
    if arousal >= 0.7:
        words.append("energetic")
    elif arousal < 0.3:
        words.append("calm")
    # confidence: how far from the quadrant boundaries the point lies
    conf = _clip01(0.4 + 1.2 * min(abs(valence - 0.5), abs(arousal - 0.5)) + 0.2 * mode_conf)
    return {"valence": round(valence, 3), "arousal": round(arousal, 3), "words": words, "confidence": round(conf, 3)}


def brightness(a: Analysis) -> float:
    """Energy-weighted spectral centroid (Hz) from the CQT."""
    freqs = 440.0 * 2 ** ((CQT_FMIN_MIDI + a.tuning_cents / 100.0 + np.arange(N_BINS) / 3.0 - 69) / 12)
    p = a.cqt.sum(axis=1)
    return float((freqs * p).sum() / (p.sum() + 1e-12))


def onset_rate(a: Analysis) -> float:
    """Onsets per second (peaks of the onset envelope above its 80th percentile)."""
    e = a.onset_env
    if e.size < 3:
        return 0.0
    thr = np.percentile(e, 80)
    pk = (e[1:-1] > e[:-2]) & (e[1:-1] >= e[2:]) & (e[1:-1] > thr)
    return float(pk.sum() / a.duration_s)
