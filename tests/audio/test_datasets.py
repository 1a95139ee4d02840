"""Ingest: every kind of input becomes 16 kHz mono clips; bad clips are flagged, never raised."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import soundfile as sf

from m2i.audio.datasets import SR, load_dataset, pcm_sha256, safe_load_npy
from m2i.errors import InputError

from .conftest import write_mp3


def _tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _annotation_file(path, n=3):
    rows = []
    for i in range(n):
        rows.append({
            "audio": _tone(10.0, freq=220.0 * (i + 1)),
            "style": np.random.default_rng(i).normal(size=16).astype(np.float32),
            "audio_meta": {"artist_name": [f"Artist {i}"], "album_name": "Album", "track_name": f"Track {i}",
                           "slice_pos": np.int64(i * 10), "youtube_link": "https://youtu.be/x"},
        })
    arr = np.empty(n, dtype=object)
    arr[:] = rows
    np.save(path, arr, allow_pickle=True)


def test_annotation_npy_keeps_audio_meta(tmp_path):
    f = tmp_path / "label_data_with_16kHz_audio.npy"
    _annotation_file(f)
    clips = list(load_dataset(f))
    assert [c.source for c in clips] == [f"{f}#0", f"{f}#1", f"{f}#2"]
    assert all(c.error is None and c.pcm.dtype == np.float32 and c.pcm.shape == (160000,) for c in clips)
    assert clips[1].meta == {"artist_name": ["Artist 1"], "album_name": "Album", "track_name": "Track 1",
                             "slice_pos": 10, "youtube_link": "https://youtu.be/x"}


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = {"audio": _Exploit(marker), "audio_meta": {}}
    f = tmp_path / "evil.npy"
    np.save(f, arr, allow_pickle=True)
    with pytest.raises(InputError, match="refusing to load"):
        list(load_dataset(f))
    assert not marker.exists()


def test_restricted_unpickler_rejects_other_classes(tmp_path):
    import collections

    f = tmp_path / "odd.npy"
    arr = np.empty(1, dtype=object)
    arr[0] = collections.Counter("abc")
    np.save(f, arr, allow_pickle=True)
    with pytest.raises(InputError, match="Counter"):
        safe_load_npy(f)


def test_plain_numeric_arrays(tmp_path):
    two_d = tmp_path / "clips.npy"
    np.save(two_d, np.stack([_tone(10), _tone(10, freq=330)]))
    clips = list(load_dataset(two_d))
    assert len(clips) == 2 and all(c.pcm.shape == (160000,) for c in clips)
    one_d = tmp_path / "one.npy"
    np.save(one_d, _tone(3).astype(np.float64))
    (clip,) = list(load_dataset(one_d))
    assert clip.error is None and clip.pcm.dtype == np.float32 and clip.pcm.size == 48000
    assert clip.source == str(one_d)


def test_a_long_signal_in_a_npy_is_cut_into_windows_like_an_audio_file(tmp_path):
    """A whole piece saved as one [T] (or [T, channels]) array used to become one clip of its full
    length: minutes of audio analysed, and described to the LLM, as a single 10 s clip would be."""
    rng = np.random.default_rng(3)
    song = (0.2 * rng.standard_normal(25 * SR)).astype(np.float32)
    np.save(tmp_path / "song.npy", song)
    np.save(tmp_path / "stereo.npy", np.stack([song, song[::-1]], axis=1))
    for name in ("song.npy", "stereo.npy"):
        clips = list(load_dataset(tmp_path / name, hop_s=10.0))
        assert [c.source for c in clips] == [f"{tmp_path / name}@{s}" for s in (0, 10, 20)]
        assert [c.pcm.size for c in clips] == [160000, 160000, 80000] and clips[2].meta["start_s"] == 20.0
    assert [c.meta["start_s"] for c in load_dataset(tmp_path / "song.npy", hop_s=5.0)] == [0, 5, 10, 15], "--hop too"
    np.save(tmp_path / "rows.npy", np.stack([song, song]))
    assert [c.pcm.size for c in load_dataset(tmp_path / "rows.npy")] == [25 * SR] * 2, "[N, T] rows are clips as given"


def _dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.argmax(spectrum) * SR / pcm.size)


def test_npy_clips_at_another_rate_are_resampled_with_sr_and_otherwise_flagged(tmp_path):
    """librosa loads at 22050 Hz by default, and a .npy carries no rate: read as 16 kHz, a 440 Hz
    tone comes out near 319 Hz (every pitch and tempo scaled by 0.73). --sr reads it right; without
    it, a length that is a whole number of seconds at 22050 Hz but not at 16 kHz is said."""
    t = np.arange(10 * 22050) / 22050
    f = tmp_path / "librosa.npy"
    np.save(f, np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32))
    first, second = load_dataset(f)
    assert abs(_dominant_hz(first.pcm) - 440 * 16000 / 22050) < 1
    assert "exactly 10 s at 22050 Hz" in first.meta["rate_warning"] and "--sr 22050" in first.meta["rate_warning"]
    assert "rate_warning" not in second.meta, "said once per file"
    clips = list(load_dataset(f, npy_sr=22050))
    assert all(c.pcm.size == 160000 and abs(_dominant_hz(c.pcm) - 440) < 1 for c in clips)
    assert all("rate_warning" not in c.meta and c.meta["sr"] == 22050 for c in clips)
    # 16 kHz clips, and the annotation file's dicts at 16 kHz, say nothing
    np.save(f, np.stack([_tone(10)] * 2))
    assert all("rate_warning" not in c.meta for c in load_dataset(f))
    arr = np.empty(1, dtype=object)
    arr[0] = {"audio": _tone(10, sr=22050), "audio_meta": {"track_name": "x"}}
    np.save(f, arr, allow_pickle=True)
    (clip,) = load_dataset(f)
    assert "--sr 22050" in clip.meta["rate_warning"]


def test_a_file_recorded_below_4_khz_is_refused_and_8_khz_telephone_audio_is_read(tmp_path):
    """Sensor data saved as WAV at 100 Hz holds nothing above 50 Hz; it used to come out with a
    key, a tempo and an ABC of aliased noise."""
    sf.write(tmp_path / "sensor.wav", _tone(12, sr=100, freq=20), 100)
    sf.write(tmp_path / "phone.wav", _tone(12, sr=8000), 8000)
    sensor, phone = load_dataset(tmp_path / "sensor.wav"), load_dataset(tmp_path / "phone.wav")
    (clip,) = sensor
    assert clip.pcm is None and clip.error == ("sensor.wav is recorded at 100 Hz, too low a sample rate for music "
                                               "(it holds nothing above 50 Hz; m2i needs at least 4000 Hz); check "
                                               "what the file holds.")
    first, rest = phone
    assert first.error is None and rest.error is None and abs(_dominant_hz(first.pcm) - 440) < 1


def test_stereo_npy_of_shape_t_by_channels_is_one_clip(tmp_path):
    """np.save of soundfile.read's stereo array is [T, 2]: one clip mixed to mono, not T failed rows."""
    f = tmp_path / "stereo.npy"
    np.save(f, np.stack([_tone(10), _tone(10, freq=330)], axis=1))
    (clip,) = list(load_dataset(f))
    assert clip.error is None and clip.pcm.shape == (160000,) and clip.meta["channels"] == 2


def test_npy_whose_rows_are_all_under_a_second_is_one_error(tmp_path):
    f = tmp_path / "frames.npy"
    np.save(f, np.zeros((5000, 400), np.float32))
    with pytest.raises(InputError, match=r"5000 clips of 400 samples \(0.025 s at 16 kHz\), all shorter than 1 s"):
        list(load_dataset(f))


def test_npy_of_strings_is_refused(tmp_path):
    f = tmp_path / "names.npy"
    np.save(f, np.array(["a", "b"]))
    with pytest.raises(InputError, match=r"holds text \(<U1\) values, not audio samples"):
        list(load_dataset(f))


def test_a_cut_short_npy_says_so(tmp_path):
    """A .npy copied only in part was refused with numpy's "could only read 36 elements. (file
    seems not fully written?)" inside the sentence; an annotation file cut short, with "Ran out of input"."""
    whole = tmp_path / "whole.npy"
    np.save(whole, np.zeros((3, 16000), np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(whole.read_bytes()[:128 + 4 * 20000])
    with pytest.raises(InputError) as err:
        list(load_dataset(cut))
    assert str(err.value) == f"{cut} is cut short: its header announces 48000 values and it holds 20000; copy it again."
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = {"audio": _tone(10)}, {"audio": _tone(10)}
    np.save(whole, arr, allow_pickle=True)
    cut.write_bytes(whole.read_bytes()[:200_000])
    with pytest.raises(InputError, match=r"is cut short: its pickled contents end early; copy it again\.$"):
        list(load_dataset(cut))
    cut.write_bytes(b"")
    with pytest.raises(InputError, match=r"cut.npy is empty \(0 bytes\); copy it again\.$"):
        list(load_dataset(cut))


def test_an_entry_of_text_says_text(tmp_path):
    """An annotation entry whose 'audio' is a string said "holds <U4 values", numpy's code for it."""
    arr = np.empty(4, dtype=object)
    arr[:] = [{"audio": "none"}, {"audio": np.array([True, False] * 16000)}, {"audio": None}, 7]
    f = tmp_path / "label.npy"
    np.save(f, arr, allow_pickle=True)
    text, flags, none, number = load_dataset(f)
    assert text.error == "the clip holds text (<U4) values, not audio samples; supply numeric PCM."
    assert flags.error.startswith("the clip holds true/false (bool) values")
    assert none.error.startswith("the clip holds Python object values")
    assert number.error == "the entry is an int, not audio; drop it."


def test_bad_clips_in_npy_become_failed_clips(tmp_path):
    bad = np.stack([_tone(10), np.full(160000, np.nan, np.float32), np.zeros(160000, np.float32)])
    f = tmp_path / "mixed.npy"
    np.save(f, bad)
    ok, nan, silent = load_dataset(f)
    assert ok.error is None
    assert nan.pcm is None and "NaN" in nan.error
    assert silent.pcm is None and "silent" in silent.error


def test_folder_of_awkward_files(tmp_path):
    sf.write(tmp_path / "a_stereo44k.wav", np.stack([_tone(4, 44100), _tone(4, 44100, 550)], axis=1), 44100)
    sf.write(tmp_path / "b_96k.flac", _tone(3, 96000), 96000, subtype="PCM_24")
    sf.write(tmp_path / "c_8bit.wav", _tone(2, 8000), 8000, subtype="PCM_U8")
    sf.write(tmp_path / "d.ogg", _tone(2), SR, format="OGG", subtype="VORBIS")
    sf.write(tmp_path / "e_short.wav", _tone(0.4), SR)
    sf.write(tmp_path / "f_silence.wav", np.zeros(SR * 2, np.float32), SR)
    sf.write(tmp_path / "f_offset.wav", np.full(SR * 2, 0.25, np.float32), SR, subtype="FLOAT")
    hum = 0.25 + 1e-5 * np.random.default_rng(0).standard_normal(SR * 2)  # silence on a DC offset
    sf.write(tmp_path / "f_offset_hiss.wav", hum.astype(np.float32), SR, subtype="FLOAT")
    sf.write(tmp_path / "g_full.wav", _tone(5), SR)
    data = (tmp_path / "g_full.wav").read_bytes()
    (tmp_path / "h_truncated.wav").write_bytes(data[: len(data) // 3])
    (tmp_path / "i_corrupt.flac").write_bytes(b"fLaC" + os.urandom(2000))
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "j_text.wav").write_text("a text file with an audio name\n" * 20)
    (tmp_path / "k_empty.flac").write_bytes(b"")
    sf.write(tmp_path / "l.opus", _tone(2, 48000), 48000, format="OGG", subtype="OPUS")
    (tmp_path / "m_song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + os.urandom(2000))  # read only by ffmpeg
    sf.write(tmp_path / "n_long.ogg", _tone(12), SR, format="OGG", subtype="VORBIS")
    data = (tmp_path / "n_long.ogg").read_bytes()
    (tmp_path / "n_long.ogg").write_bytes(data[: len(data) // 2])  # libsndfile reads a cut Vorbis stream as 0 s
    (tmp_path / "._g_full.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))  # macOS metadata, not audio
    (tmp_path / ".trash").mkdir()
    sf.write(tmp_path / ".trash" / "old.wav", _tone(2), SR)
    clips = {c.source.split("/")[-1]: c for c in load_dataset(tmp_path)}
    good = ["a_stereo44k.wav@0", "b_96k.flac@0", "c_8bit.wav@0", "d.ogg@0", "g_full.wav@0", "l.opus@0"]
    for name in good:
        c = clips[name]
        assert c.error is None, (name, c.error)
        assert c.pcm.dtype == np.float32 and c.pcm.ndim == 1 and np.abs(c.pcm).max() <= 1.0
    assert clips["a_stereo44k.wav@0"].meta["channels"] == 2 and clips["a_stereo44k.wav@0"].pcm.size == 4 * SR
    assert clips["b_96k.flac@0"].meta["sr"] == 96000 and abs(clips["b_96k.flac@0"].pcm.size - 3 * SR) <= 2
    assert "shorter than 1 s" in clips["e_short.wav@0"].error
    assert clips["f_silence.wav@0"].error == "the clip is silent (every sample is 0); drop it."
    assert clips["f_offset.wav@0"].error == "the clip is silent (every sample has the same value); drop it."
    assert clips["f_offset_hiss.wav@0"].error.startswith("the clip is silent (RMS -100 dBFS")
    assert clips["j_text.wav"].error == ("j_text.wav is not audio in a format m2i reads (wav, flac, ogg, opus, mp3, aiff), "
                                         "whatever its name says; check what the file holds.")
    assert clips["k_empty.flac"].error == "k_empty.flac is empty (0 bytes); copy it again."
    assert "corrupt or truncated" in clips["h_truncated.wav"].error
    assert "corrupt or truncated" in clips["i_corrupt.flac"].error
    assert not any("notes.txt" in k or "._g_full" in k or "old.wav" in k for k in clips)
    assert clips["m_song.m4a"].error == ("m_song.m4a is AAC audio, which m2i does not decode; convert it to FLAC or WAV "
                                         "first (ffmpeg -i m_song.m4a m_song.flac).")
    assert clips["n_long.ogg"].error.startswith("n_long.ogg could not be decoded (no audio could be read from its ")
    assert clips["n_long.ogg"].error.endswith(" KiB); it is corrupt or truncated.")


def test_long_file_is_sliced_with_hop(tmp_path):
    sf.write(tmp_path / "long.wav", _tone(25), SR)
    clips = list(load_dataset(tmp_path / "long.wav", clip_s=10.0, hop_s=5.0))
    assert [c.source.split("@")[1] for c in clips] == ["0", "5", "10", "15"]
    assert [c.pcm.size for c in clips] == [160000, 160000, 160000, 160000]
    assert clips[2].meta["start_s"] == 10.0


def test_run_takes_hop_like_ingest(tmp_path):
    """README: --dataset (or m2i ingest PATH) cuts long files into 10 s windows, --hop."""
    import json
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    (tmp_path / "music").mkdir()
    rng = np.random.default_rng(0)  # not a steady tone: its windows would be the same clip (one content hash)
    sf.write(tmp_path / "music" / "long.wav", (0.2 * rng.standard_normal(25 * SR)).astype(np.float32), SR)
    for cmd in (["run", "--dataset", str(tmp_path / "music"), "--stages", "render", "--images", "preview"],
                ["ingest", str(tmp_path / "music")]):
        db = tmp_path / f"{cmd[0]}.db"
        r = subprocess.run([sys.executable, str(cli), *cmd, "--hop", "5", "--db", str(db)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        con = sqlite3.connect(db)
        metas = [json.loads(m) for (m,) in con.execute("SELECT meta FROM sample ORDER BY idx")]
        con.close()
        assert [m["start_s"] for m in metas] == [0.0, 5.0, 10.0, 15.0], cmd[0]
        # the recording's length is kept with each window: the analysis knows which ones end inside it
        assert [m["file_duration_s"] for m in metas] == [25.0] * 4, cmd[0]


def test_several_datasets_are_read_in_turn_as_the_shell_gives_them(tmp_path):
    """`m2i ingest clips/*.wav` and `m2i run --dataset clips/*.wav`: the shell hands over one path per
    file, and both commands stopped at "Got unexpected extra argument(s)"."""
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"

    def m2i(*args):
        return subprocess.run([sys.executable, str(cli), *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    music = tmp_path / "music"
    music.mkdir()
    rng = np.random.default_rng(2)
    for name in ("b.wav", "a.wav", "c.flac"):
        sf.write(music / name, (0.2 * rng.standard_normal(3 * SR)).astype(np.float32), SR)
    (music / "notes.txt").write_text("not audio")
    np.save(music / "words.npy", np.array(["not", "audio"]))
    files = [str(music / n) for n in ("a.wav", "b.wav", "c.flac")]  # as the shell expands music/*.wav music/*.flac
    for cmd in (["ingest", *files], ["run", "--dataset", *files, "--stages", "render", "--images", "preview"]):
        db = tmp_path / f"{cmd[0]}.db"
        r = m2i(*cmd, "--db", str(db))
        assert r.returncode == 0, r.stderr
        with sqlite3.connect(db) as con:
            assert [s for (s,) in con.execute("SELECT source FROM sample ORDER BY idx")] == [f"{f}@0" for f in files]
    # a path that is not there, or not audio, stops the command before anything is added
    for bad, says in (("missing.wav", "missing.wav does not exist"), (str(music / "notes.txt"), "is not a .npy file")):
        r = m2i("ingest", files[0], bad, "--db", "bad.db")
        assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "bad.db").exists()
    # one that turns out unusable when read fails as a clip of a folder does, and the others go on
    r = m2i("ingest", files[0], str(music / "words.npy"), files[1], "--db", "mixed.db")
    assert r.returncode == 0 and "2 clip(s) added, 1 bad clip(s) recorded as failed" in r.stdout, r.stderr
    with sqlite3.connect(tmp_path / "mixed.db") as con:
        [(source, error)] = con.execute("SELECT source, error FROM sample WHERE status = 'failed'").fetchall()
    assert source == str(music / "words.npy") and "words.npy" in error, error


def test_sr_reaches_ingest_and_run_and_a_doubtful_rate_is_said(tmp_path):
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    rng = np.random.default_rng(1)
    np.save(tmp_path / "clips.npy", (0.2 * rng.standard_normal((2, 10 * 22050))).astype(np.float32))
    for cmd in (["run", "--dataset", "clips.npy", "--stages", "render", "--images", "preview"], ["ingest", "clips.npy"]):
        db = tmp_path / f"{cmd[0]}.db"
        r = subprocess.run([sys.executable, str(cli), *cmd, "--sr", "22050", "--db", str(db)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "--sr 22050" not in r.stderr, r.stderr
        con = sqlite3.connect(db)
        assert con.execute("SELECT duration_s FROM sample").fetchall() == [(10.0,), (10.0,)], cmd[0]
        assert con.execute("SELECT json_extract(config, '$.npy_sr') FROM run").fetchall() == [(22050,)]
        con.close()
    r = subprocess.run([sys.executable, str(cli), "ingest", "clips.npy", "--db", "guess.db"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "exactly 10 s at 22050 Hz" in r.stderr and "--sr 22050" in r.stderr
    con = sqlite3.connect(tmp_path / "guess.db")
    assert con.execute("SELECT duration_s FROM sample").fetchall() == [(13.78125,), (13.78125,)]
    [(level, message)] = con.execute("SELECT level, message FROM event WHERE stage = 'analyze'").fetchall()
    assert level == "warning" and "--sr 22050" in message, "the dashboard's event log says it too"
    con.close()
    r = subprocess.run([sys.executable, str(cli), "analyze", "clips.npy", "--sr", "5"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr == "error: --sr should be greater than or equal to 1000 (got 5).\n"


def test_reingesting_by_another_spelling_of_the_path_adds_nothing(tmp_path):
    """Bad clips are recognised by their source: `ingest music`, then `ingest /abs/music` must add no rows."""
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    (tmp_path / "music").mkdir()
    sf.write(tmp_path / "music" / "ok.wav", _tone(3), SR)
    sf.write(tmp_path / "music" / "short.wav", _tone(0.4), SR)
    (tmp_path / "music" / "text.wav").write_text("not audio")
    db = str(tmp_path / "a.db")
    outs = []
    for spelling in ("music", "./music/", str(tmp_path / "music"), str(tmp_path / "music" / ".." / "music")):
        r = subprocess.run([sys.executable, str(cli), "ingest", spelling, "--db", db], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split(": ", 1)[1].strip())
    assert outs[0] == "1 clip(s) added, 2 bad clip(s) recorded as failed, 0 already present"
    assert outs[1:] == ["0 clip(s) added, 0 bad clip(s) recorded as failed, 3 already present"] * 3


def test_non_ascii_audio_meta_reads_as_written_in_the_database(tmp_path):
    """m2i sql shows Björk, not Bj\\u00f6rk, and a LIKE on the artist finds the row."""
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    arr = np.empty(1, dtype=object)
    arr[0] = {"audio": _tone(10.0), "style": np.zeros(4, np.float32),
              "audio_meta": {"artist_name": ["Björk", "坂本龍一"], "album_name": "Homogenic", "track_name": "Jóga",
                             "slice_pos": 0}}
    np.save(tmp_path / "label_data_with_16kHz_audio.npy", arr, allow_pickle=True)
    db = str(tmp_path / "a.db")

    def m2i(*args):
        r = subprocess.run([sys.executable, str(cli), *args, "--db", db], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, encoding="utf-8")
        assert r.returncode == 0, r.stderr
        return r.stdout

    m2i("ingest", "label_data_with_16kHz_audio.npy")
    out = m2i("sql", "SELECT meta FROM sample WHERE meta LIKE '%Björk%'")
    assert out.splitlines()[1] == ('{"artist_name": ["Björk", "坂本龍一"], "album_name": "Homogenic", '
                                   '"track_name": "Jóga", "slice_pos": 0}')


def test_file_names_that_are_not_utf8_are_read_stored_and_printed(tmp_path):
    """A folder unpacked from an old Latin-1 archive holds b"caf\\xe9.flac": `m2i ingest` ended in a
    traceback (the database takes no lone surrogate) and `m2i analyze` called the file corrupt."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    music = tmp_path / "music"
    music.mkdir()
    sf.write(os.path.join(os.fsencode(music), b"caf\xe9 m\xfasica.flac"), _tone(3, freq=330.0), SR)
    noise = 0.2 * np.random.default_rng(0).standard_normal(25 * SR)
    sf.write(music / "long caf\u00e9.wav", noise.astype(np.float32), SR)  # long enough to be streamed
    os.rename(os.fsencode(music / "long caf\u00e9.wav"), os.path.join(os.fsencode(music), b"long caf\xe9.wav"))
    clips = list(load_dataset(music))
    assert [c.error for c in clips] == [None] * 4, "the one file and the three windows of the long one"
    assert clips[0].source.endswith("music/caf\\xe9 m\\xfasica.flac@0")
    assert clips[1].meta["file"].endswith("music/long caf\\xe9.wav")
    db = str(tmp_path / "a.db")
    r = subprocess.run([sys.executable, str(cli), "ingest", str(music), "--db", db], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "4 clip(s) added, 0 bad" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, str(cli), "analyze", str(music), "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    first = json.loads(r.stdout.splitlines()[0])
    assert first["file"].endswith("music/caf\\xe9 m\\xfasica.flac") and first["features"]["key"]


def test_linked_folders_are_read_and_a_broken_link_is_reported(tmp_path):
    """A dataset assembled from links (data/part1 -> /scratch/...): the linked folder's files were
    left out without a word, so was a link to a file that is gone. A link up the tree is not
    followed (it would take in the dataset's neighbours), and a loop ends."""
    scratch, data = tmp_path / "scratch", tmp_path / "data"
    scratch.mkdir()
    data.mkdir()
    sf.write(scratch / "a.wav", _tone(2, freq=330.0), SR)
    sf.write(tmp_path / "neighbour.wav", _tone(2, freq=550.0), SR)
    (data / "part1").symlink_to(scratch)
    (data / "b.wav").symlink_to(scratch / "a.wav")
    (data / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    (scratch / "up").symlink_to(tmp_path)  # from inside the linked folder, back above the dataset
    (scratch / "loop").symlink_to(scratch)
    clips = list(load_dataset(data))
    assert [(os.path.relpath(c.source.split("@")[0], data), c.error) for c in clips] == [
        ("b.wav", None),
        ("gone.wav", f"gone.wav is a link to {tmp_path / 'deleted.wav'}, which does not exist; fix the link or "
                     "remove it."),
        ("part1/a.wav", None),
    ]
    with pytest.raises(InputError, match=r"^gone\.wav is a link to .*deleted\.wav, which does not exist; fix the link"):
        list(load_dataset(data / "gone.wav"))  # `m2i analyze data/gone.wav` says the same


def test_mp3_is_decoded(tmp_path):
    sf.write(tmp_path / "song.mp3", _tone(3), SR, format="MP3", subtype="MPEG_LAYER_III")
    (clip,) = list(load_dataset(tmp_path / "song.mp3"))
    assert clip.error is None and abs(clip.pcm.size - 3 * SR) < SR // 10


def test_an_mp3_that_holds_no_mp3_says_so(tmp_path):
    """libsndfile and audioread both refuse it without a reason; the clip's error used to read "()"."""
    (tmp_path / "song.mp3").write_bytes(b"not an mp3 at all" * 100)
    (clip,) = list(load_dataset(tmp_path / "song.mp3"))
    assert clip.error == "song.mp3 could not be decoded (no MP3 frame in it could be read); it is corrupt or truncated."


def test_a_wav_saved_from_a_pipe_is_read_whole_not_called_truncated(tmp_path):
    """`ffmpeg -i song.flac -f wav - | tee song.wav` leaves the data size 0xFFFFFFFF ("unknown");
    the file was refused as "ends 4294647295 bytes before its data chunk does", though libsndfile
    reads it to its end. A WAV cut short with a real size is still refused."""
    sf.write(tmp_path / "whole.wav", _tone(25), SR, subtype="PCM_16")
    data = bytearray((tmp_path / "whole.wav").read_bytes())
    at = data.find(b"data")
    data[4:8] = data[at + 4:at + 8] = b"\xff\xff\xff\xff"
    (tmp_path / "piped.wav").write_bytes(bytes(data))
    whole, piped = (list(load_dataset(tmp_path / f"{n}.wav")) for n in ("whole", "piped"))
    assert [c.error for c in piped] == [None, None, None]
    assert [pcm_sha256(c.pcm) for c in piped] == [pcm_sha256(c.pcm) for c in whole]
    (tmp_path / "cut.wav").write_bytes((tmp_path / "whole.wav").read_bytes()[: len(data) // 2])
    (clip,) = list(load_dataset(tmp_path / "cut.wav"))
    assert "bytes before its data chunk does" in clip.error


def test_a_truncated_mp3_fails_with_what_was_missing(tmp_path):
    """A truncated MP3 decodes without an error, only shorter; it used to be analysed as a 3.6 s clip."""
    write_mp3(tmp_path / "cut.mp3", _tone(12), keep=0.3)
    (clip,) = list(load_dataset(tmp_path / "cut.mp3"))
    assert clip.pcm is None
    assert clip.error.startswith("cut.mp3 could not be decoded (only 3.")
    assert clip.error.endswith(" s of the 12.0 s its header announces could be read); it is corrupt or truncated.")


def test_a_damaged_mp3_says_so_once_and_keeps_the_terminal_clean(tmp_path, capfd):
    """libmpg123 printed "Note: Trying to resync..." lines to stderr, where the dashboard draws."""
    write_mp3(tmp_path / "scratched.mp3", _tone(10), damaged=1)
    (clip,) = list(load_dataset(tmp_path / "scratched.mp3"))
    assert clip.error is None and abs(clip.pcm.size - 10 * SR) < SR // 10
    warning = "the MP3 decoder met damaged data and skipped it; the audio may have gaps"
    assert clip.meta["decoder_warning"] == warning
    assert capfd.readouterr().err == ""


def test_ingest_keeps_a_damaged_mp3_and_says_so_in_the_run(tmp_path):
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    write_mp3(tmp_path / "scratched.mp3", _tone(10), damaged=1)
    cli = Path(__file__).resolve().parents[2] / "cli.py"
    r = subprocess.run([sys.executable, str(cli), "ingest", "scratched.mp3", "--db", "m.db"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Note:" not in r.stderr and "libmpg123" not in r.stderr, r.stderr
    con = sqlite3.connect(tmp_path / "m.db")
    warning = "the MP3 decoder met damaged data and skipped it; the audio may have gaps"
    assert con.execute("SELECT status, json_extract(meta, '$.decoder_warning') FROM sample").fetchall() == [
        ("pending", warning)]
    assert con.execute("SELECT level, message FROM event WHERE stage = 'analyze'").fetchall() == [
        ("warning", f"{tmp_path / 'scratched.mp3'}@0: {warning}")]
    con.close()


def test_what_else_reaches_stderr_while_a_file_is_decoded_is_kept(capfd):
    """The decoder's lines are taken off file descriptor 2, not another thread's log line."""
    from m2i.audio.datasets import native_stderr

    notes: list[str] = []
    with native_stderr(notes):
        os.write(2, b"Note: Trying to resync...\n")
        os.write(2, b"a log line\n")
    assert notes == ["Note: Trying to resync..."]
    assert capfd.readouterr().err == "a log line\n"


def test_unusable_paths_raise_one_sentence(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(load_dataset(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="contains no audio"):
        list(load_dataset(tmp_path / "empty"))
    (tmp_path / "talk.wma").write_bytes(b"0&\xb2u" + os.urandom(100))
    with pytest.raises(InputError, match=r"^talk.wma is WMA audio, which m2i does not decode; .*\(ffmpeg -i talk.wma"):
        list(load_dataset(tmp_path / "talk.wma"))
    (tmp_path / "x.csv").write_text("1,2,3")
    with pytest.raises(InputError, match="not a .npy file"):
        list(load_dataset(tmp_path / "x.csv"))
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match="not a readable .npy"):
        list(load_dataset(tmp_path / "broken.npy"))


def test_content_hash_dedupes(tmp_path):
    f = tmp_path / "a.npy"
    _annotation_file(f, n=2)
    first = [pcm_sha256(c.pcm) for c in load_dataset(f)]
    second = [pcm_sha256(c.pcm) for c in load_dataset(f)]
    assert first == second and len(set(first)) == 2
    assert pcm_sha256(_tone(1.0)) != pcm_sha256(_tone(1.0, amp=0.31))


def test_demo_set_ships_with_the_package(demo_entries):
    clips = list(load_dataset("demo"))
    assert len(clips) == len(demo_entries) >= 6
    assert all(c.error is None and c.pcm.size == 160000 for c in clips)
    metres = {c.meta["time_signature"] for c in clips}
    assert {"3/4", "6/8", "4/4"} <= metres
    assert all(c.meta["tempo_bpm"] and c.meta["piece"] for c in clips)
    assert sum(p.stat().st_size for p in (clips and __import__("m2i.audio.datasets").audio.datasets.DEMO_DIR).iterdir()) < 4e6


def test_pickle_round_trip_of_clip():
    from m2i.audio.datasets import Clip

    c = Clip("x#0", {"a": 1}, _tone(1.0), None)
    assert pickle.loads(pickle.dumps(c)).source == "x#0"


def _music_like(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    """Tones that change every half second, one slightly detuned per channel (not silent anywhere)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = 220.0 * 2 ** (rng.integers(0, 24, size=int(seconds * 2) + 1) / 12.0)[(t * 2).astype(int)]
    return np.stack([0.3 * np.sin(2 * np.pi * f * (1 + 0.001 * c) * t) for c in range(channels)], axis=1)


def _clips_as_tuples(path, **kw):
    return [(c.source, c.meta, None if c.pcm is None else pcm_sha256(c.pcm), c.error) for c in load_dataset(path, **kw)]


@pytest.mark.parametrize("sr,channels,subtype,seconds", [(44100, 2, "PCM_16", 61.0), (16000, 1, "FLOAT", 47.3),
                                                         (48000, 6, "PCM_24", 40.0)])
@pytest.mark.parametrize("clip_s,hop_s", [(10.0, 10.0), (10.0, 4.0), (5.0, 7.5)])
def test_a_long_file_streamed_gives_the_clips_of_the_file_read_whole(tmp_path, monkeypatch, sr, channels, subtype,
                                                                     seconds, clip_s, hop_s):
    """Long files are read block by block; the clips, their metadata and content hashes must not
    change, or a file ingested before would be added again."""
    import m2i.audio.datasets as D

    f = tmp_path / "long.wav"
    sf.write(f, _music_like(seconds, sr, channels), sr, subtype=subtype)
    whole = _clips_as_tuples(f, clip_s=clip_s, hop_s=hop_s)
    monkeypatch.setattr(D, "STREAM_ABOVE_S", 20.0)
    monkeypatch.setattr(D, "_BLOCK_FRAMES", 10007)  # many blocks, none aligned with a window
    streamed = _clips_as_tuples(f, clip_s=clip_s, hop_s=hop_s)
    assert len(whole) >= 4 and all(e is None for *_, e in whole)
    assert streamed == whole


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_an_ogg_file_cut_short_is_read_with_a_warning(tmp_path, monkeypatch, subtype):
    """A FLAC, WAV or MP3 cut short is reported; an Ogg file cut short (a download broken off) was
    read to where it breaks off without a word, libsndfile raising nothing. Its clips now carry a
    warning (ingest logs it, `m2i analyze` prints it); a whole Ogg file carries none."""
    import m2i.audio.datasets as D
    from m2i.audio.cli_support import analyze_results

    whole, cut = tmp_path / "whole.ogg", tmp_path / "cut.ogg"
    sf.write(whole, _music_like(40.0, SR, 1), SR, format="OGG", subtype=subtype)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 5])
    assert not D.ogg_cut_short(whole) and D.ogg_cut_short(cut)
    clips = list(load_dataset(whole))
    assert len(clips) == 4 and not any("cut_warning" in c.meta for c in clips)
    for streamed in (False, True):  # read whole, and block by block as a file of over 10 minutes is
        if streamed:
            monkeypatch.setattr(D, "STREAM_ABOVE_S", 5.0)
        clips = list(load_dataset(cut))
        assert 1 <= len(clips) < 4 and all(c.error is None for c in clips)
        assert all(c.meta["cut_warning"].startswith("the file is cut short") for c in clips)
    [record] = analyze_results([cut])
    assert record["warning"].startswith("the file is cut short (its Ogg stream breaks off") and record["features"]
    if subtype == "VORBIS":  # the windows' table says it once, not once a row
        import subprocess
        import sys
        from pathlib import Path

        cli = Path(__file__).resolve().parents[2] / "cli.py"
        r = subprocess.run([sys.executable, str(cli), "analyze", "--windows", "cut.ogg"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stderr == f"warning: cut.ogg: {D._CUT_OGG}\n"
        assert len(r.stdout.splitlines()) == 2 + len(clips)


def test_streaming_a_long_file_holds_a_few_blocks_not_the_file(tmp_path, monkeypatch):
    import tracemalloc

    import m2i.audio.datasets as D

    f = tmp_path / "long.wav"
    sf.write(f, _music_like(180.0, 44100, 2), 44100, subtype="PCM_16")  # 3 min; read whole: 127 MB of float64
    monkeypatch.setattr(D, "STREAM_ABOVE_S", 60.0)
    tracemalloc.start()
    try:
        n = sum(1 for c in load_dataset(f) if c.error is None)  # clips are consumed one at a time
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 18
    assert peak < 30e6, f"peak {peak / 1e6:.0f} MB"


def test_a_long_float_file_with_nan_is_one_failed_clip_as_before(tmp_path, monkeypatch):
    import m2i.audio.datasets as D

    y = _music_like(40.0, 16000, 1)
    y[30 * 16000] = np.nan
    f = tmp_path / "nan.wav"
    sf.write(f, y, 16000, subtype="FLOAT")
    monkeypatch.setattr(D, "STREAM_ABOVE_S", 20.0)
    clips = list(load_dataset(f))
    assert len(clips) == 1 and clips[0].pcm is None and "NaN" in clips[0].error


def test_a_long_file_that_breaks_off_keeps_the_clips_before_the_damage(tmp_path, monkeypatch):
    import m2i.audio.datasets as D

    f = tmp_path / "cut.flac"
    sf.write(f, _music_like(60.0, 44100, 2), 44100, subtype="PCM_16")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 6 // 10])  # a copy that stopped part-way
    monkeypatch.setattr(D, "STREAM_ABOVE_S", 20.0)
    clips = list(load_dataset(f))
    good, bad = [c for c in clips if c.error is None], [c for c in clips if c.error is not None]
    assert len(bad) == 1 and clips[-1] is bad[0] and "kept" in bad[0].error and "cut.flac" in bad[0].error
    assert 2 <= len(good) <= 4 and [c.meta["start_s"] for c in good] == [10.0 * i for i in range(len(good))]
