"""Settings precedence, the notebook API and `m2i doctor`, on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m2i.config import load_settings
from m2i.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[2]


def test_precedence_defaults_toml_env_flags(tmp_path):
    cfg = tmp_path / "m2i.toml"
    assert load_settings({}, config_path=None, environ={}).llm == "local"
    cfg.write_text('[m2i]\nllm = "ollama"\nsamples = 7\nconvergent = 4\n')
    s = load_settings({}, config_path=cfg, environ={})
    assert (s.llm, s.samples, s.convergent) == ("ollama", 7, 4)
    s = load_settings({}, config_path=cfg, environ={"M2I_LLM": "openai", "M2I_SAMPLES": "9"})
    assert (s.llm, s.samples, s.convergent) == ("openai", 9, 4)
    s = load_settings({"llm": "anthropic", "samples": None}, config_path=cfg, environ={"M2I_LLM": "openai"})
    assert (s.llm, s.samples) == ("anthropic", 7)  # a flag not given (None) does not hide the lower layers


@pytest.mark.parametrize("text, match", [
    ("samples = 0\n", "samples"),
    ("llm = \n", "not valid TOML"),
    ("colour = 'red'\n", r"unknown setting\(s\): colour\.$"),
    ("smaples = 3\n", r"unknown setting\(s\): smaples \(did you mean samples\?\)\.$"),
])
def test_bad_config_is_one_sentence(tmp_path, text, match):
    cfg = tmp_path / "m2i.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings({}, config_path=cfg, environ={})
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--config", str(cfg), "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_m2i_toml_saved_by_a_windows_editor_is_read_and_an_old_encoding_is_one_sentence(tmp_path):
    """Notepad saves "Unicode" (UTF-16 with a byte order mark) or UTF-8 with a mark; either gave a
    traceback (UnicodeDecodeError) or "not valid TOML" for a file that is fine."""
    cfg = tmp_path / "m2i.toml"
    text = '# Björk, café\nllm = "ollama"\nsamples = 7\n'
    for raw in (text.encode("utf-8-sig"), text.encode("utf-16"), b"\xfe\xff" + text.encode("utf-16-be")):
        cfg.write_bytes(raw)
        s = load_settings({}, config_path=cfg, environ={})
        assert (s.llm, s.samples) == ("ollama", 7)
    cfg.write_bytes(text.encode("latin-1"))
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr == (
        "error: m2i.toml is not UTF-8 text (byte 0xf6 at offset 4, an older encoding such as Latin-1?); "
        "save it as UTF-8.\n"), r.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("args, env, says", [
    (["run", "--samples", "0"], {}, "--samples should be greater than or equal to 1 (got 0)."),
    (["ingest", "demo", "--hop", "0"], {}, "--hop should be greater than 0 (got 0.0)."),
    (["run", "--width", "16"], {}, "--width should be greater than or equal to 64 (got 16)."),
    (["run", "--batch-size", "0"], {}, "--batch-size should be greater than or equal to 1 (got 0)."),
    (["run"], {"M2I_SAMPLES": "0"}, "M2I_SAMPLES should be greater than or equal to 1 (got '0')."),
    # SDXL renders multiples of 8 and knows these devices: said before a clip is read or a prompt paid for,
    # not as every render row failing at the end of the run
    (["run", "--width", "1000", "--height", "770"], {}, "--height should be a multiple of 8 (got 770)."),
    (["run", "--device", "tpu"], {}, "--device should be auto, cuda, cuda:N, mps or cpu (got 'tpu')."),
    (["run", "--devices", "gpu0,gpu1"], {},
     "--devices should be all, or devices such as cuda:0,cuda:1 (got 'gpu0,gpu1')."),
], ids=["run-samples", "ingest-hop", "width", "batch-size", "environment", "multiple-of-8", "device", "devices"])
def test_a_bad_value_is_named_as_the_user_wrote_it(tmp_path, args, env, says):
    db = tmp_path / "x.db"
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, "--db", str(db)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120, env={**os.environ, **env})
    assert r.returncode == 1 and r.stderr == f"error: {says}\n"
    assert not db.exists()


def test_an_output_folder_that_is_a_file_stops_the_run_before_it_starts(tmp_path):
    """`m2i run --out results.txt` analysed every clip and wrote every prompt, then could write no image."""
    (tmp_path / "results.txt").write_text("notes")
    db = tmp_path / "x.db"
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--out", "results.txt", "--db", str(db)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr == (
        "error: --out results.txt is a file, not a folder; name a folder for the images, report and gallery.\n")
    assert not db.exists() and (tmp_path / "results.txt").read_text() == "notes"


def test_a_bad_value_from_the_python_api_or_m2i_toml_is_named_as_a_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"^setting samples should be greater than or equal to 1 \(got 0\)\.$"):
        load_settings({"samples": 0}, environ={})
    cfg = tmp_path / "m2i.toml"
    cfg.write_text("steps = 0\n")
    with pytest.raises(ConfigError, match=r"^steps in .*m2i.toml should be greater than or equal to 1 \(got 0\)\.$"):
        load_settings({}, config_path=cfg, environ={})


def test_temperatures_and_counts_are_configurable_per_run(tmp_path):
    from m2i.pipeline import prepare_run
    from m2i.store import open_store, ops

    s = load_settings({"convergent": 2, "divergent": 3, "divergent_temperature": 1.1}, environ={})
    store = open_store(tmp_path / "m2i.db")
    run = prepare_run(store, s)
    assert run["config"]["modes"] == [
        {"mode": "convergent", "count": 2, "temperature": 0.4},
        {"mode": "divergent", "count": 3, "temperature": 1.1},
    ]
    # continuing the run with an explicit flag records the change as an event
    s2 = load_settings({"llm": "ollama"}, environ={})
    run2 = prepare_run(store, s2, explicit={"llm"})
    assert run2["id"] == run["id"] and run2["config"]["llm"] == "ollama"
    assert any("llm='ollama'" in e["message"] for e in ops.recent_events(store, run["id"]))


def test_analyze_workers_and_generate_concurrency_size_the_stages(tmp_path):
    """Per-machine settings (not recorded with the run): analysis processes and LLM requests in flight."""
    from m2i.stages import REMOTE_CONCURRENCY, build_stages
    from m2i.store import open_store

    store = open_store(tmp_path / "m2i.db")
    run = {"id": 1, "config": {"llm": "ollama", "model": "llama3.2"}}
    impls, _ = build_stages(store, run, ["analyze", "generate"], analyze_workers=1, generate_concurrency=2)
    assert [(i.name, i.concurrency) for i in impls] == [("analyze", 1), ("generate", 2)]
    impls, _ = build_stages(store, run, ["analyze", "generate"])
    # Ollama works through at most 4 requests at once (OLLAMA_NUM_PARALLEL) and queues the rest
    assert [(i.name, i.concurrency) for i in impls] == [("analyze", os.cpu_count()), ("generate", 4)]
    hosted = {"id": 1, "config": {"llm": "anthropic", "model": "claude-sonnet-4-6"}}
    assert build_stages(store, hosted, ["generate"])[0][0].concurrency == REMOTE_CONCURRENCY
    s = load_settings({}, environ={"M2I_ANALYZE_WORKERS": "3", "M2I_GENERATE_CONCURRENCY": "5"})
    assert (s.analyze_workers, s.generate_concurrency) == (3, 5)
    assert "generate_concurrency" not in s.run_config()
    store.close()


def test_notebook_api_runs_stages_and_reads_results(tmp_path, tiny_gguf):
    from m2i.api import open_runs

    with open_runs(str(tmp_path / "nb.db")) as runs:
        run = runs.new_run("notebook", llm="local", model=str(tiny_gguf), images="preview",
                           out_dir=str(tmp_path / "out"), prompt_settings={"drop_gibberish": False},
                           max_tokens=700)  # the tiny model spells its answer one character a token
        with pytest.raises(InputError, match="does not exist"):  # checked before any clip is added, as the CLI does
            run.ingest(["demo", str(tmp_path / "missing.wav")])
        with pytest.raises(ConfigError, match=r"^setting samples should be greater than or equal to 1 \(got 0\)\.$"):
            run.ingest("demo", samples=0)  # added nothing, said nothing
        assert run.ingest("demo", samples=2) == {"added": 2, "failed": 0, "skipped": 0}
        with pytest.raises(InputError, match=r"^Unknown stage 'analyse'; choose one of analyze, generate, score, render\.$"):
            run.process(["analyse"])  # ran nothing and said nothing
        counts = run.process("analyze")  # one stage by name (was read as the stages 'a', 'n', 'a', ...)
        assert counts["analyze"]["done"] == 2 and counts["generate"]["pending"] == 10
        feats = run.features()
        assert feats[0]["features"]["key"] and feats[0]["abc"].startswith("X:")
        counts = run.process()
        assert counts["render"]["done"] == 10
        prompts = run.prompts()
        assert len(prompts) == 10 and all(p["overall"] is not None and p["image_path"] for p in prompts)
        rep = run.report()
        assert rep["modes"]["n_prompts"] == 10
        assert run.runners() == []  # the runners that did the work have ended
        assert [r["name"] for r in runs.runs()] == ["notebook"]
        assert runs.run("notebook").id == run.id == runs.run().id
        # a mistyped run names the runs there are, as `m2i status --run` does ("No such run" before)
        with pytest.raises(InputError, match=r"^No run 'notbook' in this database \(its runs: 1 \(notebook\)\); "
                                             r"create one with new_run\(\)\.$"):
            runs.run("notbook")
    with open_runs(str(tmp_path / "empty.db")) as runs, pytest.raises(InputError, match="has no run yet"):
        runs.run()


NOTEBOOK_CELL = r"""
import asyncio, os, signal, sys, threading, time
from m2i.api import open_runs


def main():
    run = open_runs(sys.argv[1]).new_run("nb", images="preview", analyze_workers=1)
    run.ingest("demo")

    async def cell():  # a notebook: its event loop runs the cell; Ctrl-C / the stop button is SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as ipykernel does

        def interrupt_after_the_first_clip():
            while run.status()["analyze"]["done"] < 1:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_after_the_first_clip, daemon=True).start()
        try:
            run.process(["analyze"])
        except KeyboardInterrupt:
            c = run.status()["analyze"]
            print("interrupted", c["done"], c["running"], c["pending"], flush=True)

    asyncio.run(cell())
    time.sleep(3)
    print("later", run.status()["analyze"]["done"], threading.active_count(), len(run.runners()), flush=True)


if __name__ == "__main__":
    main()
"""


def test_interrupting_a_notebook_cell_stops_the_run_it_started(tmp_path):
    """In a notebook the runner works on a helper thread; interrupting the cell raised
    KeyboardInterrupt while the runner went on claiming and finishing work (and paying for it)
    behind it. It now stops as Ctrl-C stops `m2i run`, before the interrupt reaches the cell."""
    script = tmp_path / "cell.py"
    script.write_text(NOTEBOOK_CELL)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "nb.db")], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (_, done, running, pending), (_, later, threads, runners) = (line.split() for line in r.stdout.splitlines())
    assert int(done) >= 1 and running == "0" and int(pending) >= 1, r.stdout
    assert later == done and threads == "1", "nothing was claimed or finished after the interrupt"
    assert runners == "0", "the stopped runner no longer says it works on the run"


def test_doctor_reports_each_check(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "doctor", "--skip-llm", "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    lines = r.stdout.splitlines()
    names = [line.split("]")[1].split(":")[0].strip() for line in lines if line.startswith("[")]
    assert {"python", "gpu", "disk", "sdxl weights", "numba cache", "database"} <= set(names)
    assert any(line.startswith("[warn] gpu") and "→" in line for line in lines)  # no GPU here: warn with the fix
    assert lines[-1] in ("doctor: ok", "doctor: warn")
    assert r.returncode == 0


def test_doctor_says_what_it_checked_of_the_llm(tmp_path):
    """Listing a server's models is not hearing the model answer: doctor says which one it did."""
    from wire_servers import OpenAIServer

    with OpenAIServer(models=("gpt-5",)) as srv:
        def llm_line(base_url):
            r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "doctor", "--db", str(tmp_path / "x.db"),
                                "--llm", "openai", "--model", "gpt-5", "--base-url", base_url],
                               capture_output=True, text=True, cwd=tmp_path, timeout=300,
                               env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
            return r, next(line for line in r.stdout.splitlines() if "] llm openai" in line)

        _, line = llm_line(srv.url + "/v1")
        assert line == "[  ok] llm openai: gpt-5 is listed by the server (GET /v1/models; no completion sent)"
        assert srv.posts("/v1/chat/completions") == []
        r, line = llm_line(srv.url)
        assert line.startswith("[fail] llm openai: Nothing answers at") and f"try {srv.url}/v1" in line
        assert r.returncode == 1 and "Traceback" not in r.stderr


def test_doctor_fails_on_a_bad_database(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database")
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "doctor", "--skip-llm", "--db", str(bad)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1
    assert any(line.startswith("[fail] database") for line in r.stdout.splitlines())
    json.dumps(r.stdout)  # plain text, no traceback
    assert "Traceback" not in r.stderr


def test_doctor_warns_about_an_older_database_and_leaves_it(tmp_path):
    """An older schema is not a failure: any command upgrades it. Doctor says so and changes nothing."""
    from alembic import command

    from m2i.doctor import check_store
    from m2i.store.engine import alembic_config, head_revision

    db = tmp_path / "m2i.db"
    command.upgrade(alembic_config(f"sqlite:///{db}"), "0001")
    before = db.read_bytes()
    check = check_store(str(db))
    if head_revision() == "0001":
        assert check.level == "ok"
        return
    assert check.level == "warn", check
    assert "older schema (0001" in check.detail and head_revision() in check.detail and "m2i init" in check.fix
    assert db.read_bytes() == before and not (tmp_path / "m2i.db.bak-0001").exists()


def test_any_command_upgrades_an_older_database(tmp_path):
    """Even read-only commands (status, sql) bring an older schema to head, after copying the file aside."""
    from alembic import command

    from m2i.store.engine import alembic_config, head_revision

    db = tmp_path / "m2i.db"
    command.upgrade(alembic_config(f"sqlite:///{db}"), "0001")
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "status", "--db", str(db)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    import sqlite3

    assert sqlite3.connect(db).execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
    assert (tmp_path / "m2i.db.bak-0001").exists()


def test_a_database_on_a_network_filesystem_is_warned_about(tmp_path, monkeypatch, caplog):
    """SQLite's write-ahead log needs every process on one machine and working file locks, which an
    NFS or Lustre home directory (where a cluster user's `m2i run` starts) does not promise."""
    import numpy as np

    from m2i.doctor import check_store
    from m2i.pipeline import run_pipeline
    from m2i.store import engine, open_store, ops

    home, scratch = tmp_path / "home dir", tmp_path / "home dir" / "scratch"
    scratch.mkdir(parents=True)
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      f"filer:/export/home {str(home).replace(' ', chr(92) + '040')} nfs4 rw,vers=4.2 0 0\n"
                      f"/dev/nvme0n1 {str(scratch).replace(' ', chr(92) + '040')} ext4 rw 0 0\n")
    monkeypatch.setattr(engine, "MOUNTS", mounts)

    check = check_store(str(home / "m2i.db"))
    assert check.level == "warn" and "its folder is on a network filesystem (nfs4)" in check.detail
    assert "local disk" in check.fix and "PostgreSQL" in check.fix
    assert check_store(str(scratch / "m2i.db")).level == "ok", "a local disk mounted inside the NFS home"

    np.save(tmp_path / "clip.npy", (0.2 * np.sin(np.arange(32000) * 0.05)).astype(np.float32))
    settings = load_settings({"dataset": str(tmp_path / "clip.npy"), "stages": ["analyze"]}, environ={})
    with caplog.at_level("WARNING", logger="m2i.pipeline"):
        run_pipeline(settings, db=str(home / "m2i.db"), explicit={"dataset", "stages"}, handle_signals=False)
    warning = (f"{home / 'm2i.db'} is on a network filesystem (nfs4), where SQLite's write-ahead log is not "
               "safe: keep the database on a local disk")
    assert any(r.getMessage().startswith(warning) for r in caplog.records)
    store = open_store(home / "m2i.db", readonly=True)
    assert any(e["level"] == "warning" and e["message"].startswith(warning) for e in ops.recent_events(store)), \
        "the dashboard's event log shows it too"
    store.close()
    assert check_store(str(home / "m2i.db")).detail.endswith("1 run(s), schema current, on a network filesystem (nfs4)")


@pytest.mark.parametrize("flags", [{"device": "CUDA:1"}, {"device": "mps"}, {"devices": "cuda:0, cuda:1"},
                                   {"devices": "all"}, {"width": 1024, "height": 768}])
def test_device_names_and_sizes_sdxl_takes_are_accepted(flags):
    s = load_settings(flags, environ={})
    assert all(getattr(s, k) == v for k, v in flags.items())
