"""`m2i run` against a real HTTP server speaking the Anthropic API (live and Message Batches)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prompts"))
from wire_servers import AnthropicServer, OllamaServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-test-pipeline-0123456789"


@pytest.fixture
def server():
    srv = AnthropicServer(api_key=KEY, refuses_sampling=("claude-opus-4-7",)).start()
    yield srv
    srv.stop()


def m2i(args, cwd, srv, **kw):
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url}
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_args(tmp_path, model, *extra):
    return ["run", "--db", str(tmp_path / "m2i.db"), "--out", str(tmp_path / "out"), "--samples", "2",
            "--llm", "anthropic", "--model", model, "--images", "preview", *extra]


def test_model_refusing_temperature_gets_its_prompts_by_instruction(tmp_path, server):
    p = m2i(base_args(tmp_path, "claude-opus-4-7"), tmp_path, server)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    con = sqlite3.connect(tmp_path / "m2i.db")
    assert con.execute("SELECT status, realised_by, count(*) FROM prompt GROUP BY 1, 2").fetchall() == [
        ("done", "instruction", 10)]
    assert con.execute("SELECT provider, model, sampling FROM llm_model").fetchall() == [
        ("anthropic", "claude-opus-4-7", "instruction")]
    # the modes still differ: the divergent instruction reached the model
    systems = [json.dumps(q["body"].get("system")) for q in server.posts("/v1/messages")]
    assert any("divergent" in s.lower() or "unexpected" in s.lower() for s in systems)
    assert not any("temperature" in q["body"] for q in server.posts("/v1/messages")[-10:])
    report = subprocess.run([sys.executable, str(ROOT / "cli.py"), "report", "--db", str(tmp_path / "m2i.db")],
                            capture_output=True, text=True, cwd=tmp_path).stdout
    assert "realised by instructions" in report or "instructions, not temperature" in report
    # the key is nowhere in the database
    assert KEY.encode() not in (tmp_path / "m2i.db").read_bytes()


def test_temperatures_reach_the_wire(tmp_path, server):
    p = m2i(base_args(tmp_path, "claude-sonnet-4-6"), tmp_path, server)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    posts = server.posts("/v1/messages")
    probes = [q for q in posts if q["body"]["max_tokens"] == 1]
    assert len(probes) == 1  # the key/model check before any work (it also learns how modes are realised)
    temps = [q["body"]["temperature"] for q in posts if q["body"]["max_tokens"] > 1]
    con = sqlite3.connect(tmp_path / "m2i.db")
    rows = con.execute("SELECT mode, temperature, llm_attempts, realised_by FROM prompt").fetchall()
    assert sorted((m, t) for m, t, _, _ in rows) == [("convergent", 0.4)] * 6 + [("divergent", 0.8)] * 4
    assert all(r == "temperature" for *_, r in rows)
    # every request carried its prompt's temperature (a repaired answer is a second request at the same value)
    sent = {t: sum(a for m, tt, a, _ in rows if tt == t) for t in (0.4, 0.8)}
    assert {t: temps.count(t) for t in (0.4, 0.8)} == sent and len(temps) + 1 == server.ok


def test_batch_survives_kill_9_without_paying_twice(tmp_path, server):
    server.batch_polls = 10**9  # the batch never ends while the first runner waits
    (tmp_path / "m2i.toml").write_text("lease_s = 2.0\nprompt_settings = { batch_poll_s = 0.2 }\n")
    args = base_args(tmp_path, "claude-sonnet-4-6", "--batch", "--config", str(tmp_path / "m2i.toml"))
    p = m2i(args, tmp_path, server, start_new_session=True)
    db = tmp_path / "m2i.db"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if sqlite3.connect(db).execute("SELECT count(*) FROM llm_batch").fetchone()[0]:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.2)
    else:
        p.kill()
        pytest.fail("no batch was submitted: " + p.communicate()[1][-2000:])
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    first = [r["custom_id"] for r in server.posts("/v1/messages/batches")[0]["body"]["requests"]]
    assert len(server.posts("/v1/messages/batches")) == 1
    server.batch_polls = 0  # now it has ended
    time.sleep(2.1)
    p2 = m2i(args, tmp_path, server)
    _, err = p2.communicate(timeout=600)
    assert p2.returncode == 0, err[-3000:]
    # the stored batch was collected, not resubmitted: no prompt was ever sent twice
    sent = [r["custom_id"] for q in server.posts("/v1/messages/batches") for r in q["body"]["requests"]]
    assert sent[: len(first)] == first and len(sent) == len(set(sent)) == 10
    con = sqlite3.connect(db)
    assert con.execute("SELECT status, count(*) FROM prompt GROUP BY 1").fetchall() == [("done", 10)]
    assert {s for (s,) in con.execute("SELECT status FROM llm_batch")} == {"collected"}
    assert con.execute("SELECT count(*) FROM image WHERE status='done'").fetchone() == (10,)


def test_missing_key_is_one_sentence_before_any_work(tmp_path, server):
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env["ANTHROPIC_BASE_URL"] = server.url
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), *base_args(tmp_path, "claude-sonnet-4-6"),
                        "--stages", "generate"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "ANTHROPIC_API_KEY" in last and "Traceback" not in r.stderr
    assert server.posts("/v1/messages") == []


def test_a_password_in_the_server_url_is_never_stored_and_is_asked_for_again(tmp_path):
    """`--base-url http://user:PASSWORD@host` (an Ollama behind a proxy) works, but the password reaches
    neither the database nor the output; continuing the run needs the URL again, and says so."""
    srv = OllamaServer(models=("llama3.2",)).start()
    try:
        secret = "urlpass-0123456789"
        url = srv.url.replace("http://", f"http://m2i:{secret}@")
        args = ["run", "--db", str(tmp_path / "m2i.db"), "--out", str(tmp_path / "out"), "--samples", "1",
                "--llm", "ollama", "--model", "llama3.2", "--images", "preview"]

        def run(*extra):
            return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, *extra], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=600)

        r = run("--base-url", url, "--stages", "analyze")  # the run records its settings; no prompt yet
        assert r.returncode == 0, r.stderr[-3000:]
        assert "m2i:***@" in sqlite3.connect(tmp_path / "m2i.db").execute("SELECT config FROM run").fetchone()[0]
        r = run()
        assert r.returncode == 1 and "has a password, which m2i does not store" in r.stderr, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and secret not in r.stdout + r.stderr
        r = run("--base-url", url)
        assert r.returncode == 0, r.stderr[-3000:]
        assert secret not in r.stdout + r.stderr
        assert secret.encode() not in (tmp_path / "m2i.db").read_bytes()
        con = sqlite3.connect(tmp_path / "m2i.db")
        assert con.execute("SELECT count(*) FROM prompt WHERE status='done'").fetchone() == (5,)
    finally:
        srv.stop()


def test_a_refused_invocation_records_nothing(tmp_path, server, tiny_gguf):
    """A provider check that fails leaves the run's settings as they were (and a first refused run
    creates none); a new --llm without --model brings that provider's own default model."""
    db = tmp_path / "m2i.db"
    ollama = OllamaServer(models=("llama3.2",)).start()
    try:
        def run(*args, **env):
            e = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": server.url, "OLLAMA_HOST": ollama.url,
                 **env}
            return subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--db", str(db), "--out",
                                   str(tmp_path / "out"), "--images", "preview", "--stages", "generate", *args],
                                  cwd=tmp_path, env=e, capture_output=True, text=True, timeout=300)

        def recorded():
            con = sqlite3.connect(db)
            runs = [json.loads(c) for (c,) in con.execute("SELECT config FROM run")]
            changes = [m for (m,) in con.execute("SELECT message FROM event WHERE message LIKE 'settings changed%'")]
            return [(c["llm"], c["model"]) for c in runs], changes

        dead = f"http://127.0.0.1:{free_port()}/v1"
        r = run("--llm", "openai", "--base-url", dead, "--model", "x")
        assert r.returncode == 1 and "Cannot reach" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
        assert recorded() == ([], [])  # no run was created
        r = run("--llm", "anthropic")
        assert r.returncode == 0, r.stderr[-2000:]
        assert recorded() == ([("anthropic", "claude-sonnet-4-6")], [])  # the default model, recorded as such
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"GGUF not really")
        for args, says in [(("--llm", "openai", "--base-url", dead, "--model", "x"), "Cannot reach"),
                           (("--llm", "local", "--model", str(bad)), "cannot load bad.gguf"),
                           (("--llm", "local", "--model", "llama3.1:70b"), "must be a path to a .gguf file")]:
            r = run(*args)
            last = r.stderr.strip().splitlines()[-1]
            assert r.returncode == 1 and last.startswith("error: ") and says in last, r.stderr[-2000:]
            assert "Traceback" not in r.stderr
            assert recorded() == ([("anthropic", "claude-sonnet-4-6")], [])
        r = run("--llm", "ollama")  # the previous provider's model does not carry over
        assert r.returncode == 0, r.stderr[-2000:]
        assert recorded() == ([("ollama", "llama3.2")], ["settings changed: llm='ollama', model='llama3.2'"])
        r = run("--llm", "local", "--model", os.path.relpath(tiny_gguf, tmp_path))
        assert r.returncode == 0, r.stderr[-2000:]
        assert recorded()[0] == [("local", str(tiny_gguf.resolve()))]  # the file that runs, wherever m2i runs next
        status = subprocess.run([sys.executable, str(ROOT / "cli.py"), "status", "--db", str(db)],
                                capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout
        assert f"llm: local {tiny_gguf.resolve()}" in status.replace("\n", "")
    finally:
        ollama.stop()


def test_generate_concurrency_limits_the_requests_in_flight(tmp_path):
    """`generate_concurrency` (M2I_GENERATE_CONCURRENCY or m2i.toml) is how many LLM requests one runner
    has in flight; the server counts them."""
    srv = AnthropicServer(api_key=KEY, latency=0.3).start()
    try:
        def run(*extra, **env):
            r = subprocess.run([sys.executable, str(ROOT / "cli.py"), *base_args(tmp_path, "claude-sonnet-4-6"),
                                "--stages", "analyze,generate", *extra], cwd=tmp_path, capture_output=True, text=True,
                               timeout=600, env={**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url,
                                                 "M2I_ANALYZE_WORKERS": "1", **env})
            assert r.returncode == 0, r.stderr[-3000:]

        run(M2I_GENERATE_CONCURRENCY="2")
        assert len(srv.posts("/v1/messages")) == 11 and srv.max_in_flight == 2  # 10 prompts and the probe
        srv.max_in_flight = 0
        (tmp_path / "m2i.toml").write_text("generate_concurrency = 4\n")
        run("--new")
        assert len(srv.posts("/v1/messages")) == 22 and srv.max_in_flight == 4
    finally:
        srv.stop()
