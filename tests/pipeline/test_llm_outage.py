"""`m2i run` when the LLM provider goes away mid-run: a revoked key stops the run with one sentence,
a rate limit or an outage holds the prompts without burning them, a long outage stops the run; and a
prompt that fails on invalid answers keeps what they cost. Real `m2i` processes against a real HTTP
server speaking the Anthropic API."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prompts"))
from wire_servers import AnthropicServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-test-outage-0123456789"
MODEL = ["--llm", "anthropic", "--model", "claude-sonnet-4-6"]


class OutageServer(AnthropicServer):
    """The Anthropic API, except that ``down(server)`` may answer a request with an error status: a
    Messages request, or those that ``hit(method, path)`` picks; ``retry_after`` goes with it."""

    def __init__(self, down, *, hit=None, retry_after: str | None = None, **kw):
        super().__init__(api_key=KEY, **kw)
        self.down = down
        self.hit = hit or (lambda method, path: method == "POST" and path == "/v1/messages")
        self.retry_after = retry_after
        self.errors = 0

    def route(self, h, method, body, fault):
        status = self.down(self) if self.hit(method, h.path.split("?")[0]) else None
        if status:
            with self.lock:
                self.errors += 1
            kind = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            headers = {"retry-after": self.retry_after} if self.retry_after else None
            self.send_json(h, status, self._error(status, kind, "injected outage"), headers)
            return
        super().route(h, method, body, fault)


def window(after_ok: int, seconds: float, status: int):
    """Down with ``status`` for ``seconds`` from the moment the server has answered ``after_ok`` requests."""
    state: dict[str, float] = {}

    def down(srv):
        if srv.ok < after_ok:
            return None
        until = state.setdefault("until", time.time() + seconds)
        return status if time.time() < until else None

    return down


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A run store whose 2 clips are analysed: 10 prompts to write."""
    db = tmp_path_factory.mktemp("analysed") / "m2i.db"
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--db", str(db), "--samples", "2",
                        "--stages", "analyze", *MODEL, "--images", "preview"],
                       capture_output=True, text=True, timeout=600, cwd=db.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return db


def generate(tmp_path, analysed, down, *, answer=None, **env):
    """`m2i run --stages generate` on a copy of ``analysed`` (None: on the copy made before) against an
    :class:`OutageServer` that is down when ``down(server)`` says; (result, prompt rows, server)."""
    db = tmp_path / "m2i.db"
    if analysed is not None:
        shutil.copy(analysed, db)
    srv = OutageServer(down, **({"answer": answer} if answer else {})).start()
    try:
        full = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url, **env}
        r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--db", str(db), "--stages", "generate",
                            *MODEL], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=full)
    finally:
        srv.stop()
    rows = sqlite3.connect(db).execute("SELECT status, attempts FROM prompt").fetchall()
    return r, rows, srv


def assert_one_sentence(r, start):
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == r.stderr.strip().splitlines()[-1], r.stderr[-3000:]
    assert errors[0].startswith(start), errors[0]
    assert "stay pending for the next `m2i run`" in errors[0]


def assert_nothing_burnt(rows):
    """No prompt failed; every prompt not written is pending with no attempt counted."""
    assert {s for s, _ in rows} <= {"done", "pending"}, rows
    assert all(a == 0 for s, a in rows if s == "pending") and all(a == 1 for s, a in rows if s == "done"), rows


def test_a_key_revoked_mid_run_stops_the_run_with_one_sentence_and_keeps_the_rest_pending(tmp_path, analysed):
    # the start-up probe and 3 prompts are answered, then the key is refused
    r, rows, _ = generate(tmp_path, analysed, lambda s: 401 if s.ok >= 4 else None)
    assert_one_sentence(r, "error: Anthropic rejected the key in ANTHROPIC_API_KEY (401")
    assert_nothing_burnt(rows)
    assert 3 <= sum(s == "done" for s, _ in rows) < 10
    con = sqlite3.connect(tmp_path / "m2i.db")
    assert con.execute("SELECT count(*) FROM event WHERE level='error' AND message LIKE 'Anthropic rejected%'"
                       ).fetchone() == (1,)
    assert KEY not in r.stdout + r.stderr and KEY.encode() not in (tmp_path / "m2i.db").read_bytes()
    # fixed, the same command writes the rest
    r, rows, _ = generate(tmp_path, None, lambda s: None)
    assert r.returncode == 0, r.stderr[-3000:]
    assert rows == [("done", 1)] * 10


@pytest.mark.parametrize("after_ok,status", [(3, 429), (0, 529)], ids=["mid-run-429", "start-up-529"])
def test_a_provider_unavailable_for_a_few_seconds_is_waited_for_and_no_prompt_is_burnt(tmp_path, analysed,
                                                                                      after_ok, status):
    r, rows, srv = generate(tmp_path, analysed, window(after_ok, 3.0, status))
    assert r.returncode == 0, r.stderr[-3000:]
    assert rows == [("done", 1)] * 10
    assert srv.errors >= 2
    holds = [line for line in r.stderr.splitlines() if "holding prompts for" in line]
    assert holds and all(f"anthropic unavailable ({status} " in line for line in holds)
    # once per hold, not once per waiting request (mid-run, many requests meet the first 429 together)
    assert len(holds) <= srv.errors and (after_ok == 0 or len(holds) < srv.errors)
    assert "answers again" in r.stderr


def test_a_long_outage_stops_the_run_after_the_limit_with_one_sentence(tmp_path, analysed):
    t0 = time.monotonic()
    r, rows, _ = generate(tmp_path, analysed, lambda s: 503 if s.ok >= 3 else None, M2I_LLM_OUTAGE_S="2")
    assert time.monotonic() - t0 < 120
    assert_one_sentence(r, "error: anthropic has answered nothing for 2")
    assert "503" in r.stderr.strip().splitlines()[-1]
    assert_nothing_burnt(rows)
    assert sum(s == "pending" for s, _ in rows) >= 8


def test_prompts_failed_on_invalid_answers_keep_the_answer_the_calls_and_what_they_cost(tmp_path, analysed):
    r, _, _ = generate(tmp_path, analysed, lambda s: None, answer=lambda body, n: "Music is all I write about today.")
    assert r.returncode == 0, r.stderr[-3000:]
    con = sqlite3.connect(tmp_path / "m2i.db")
    rows = con.execute("SELECT status, raw, llm_attempts, tokens_in, tokens_out, cost_usd, provider FROM prompt").fetchall()
    assert len(rows) == 10
    for status, raw, calls, t_in, t_out, cost, provider in rows:
        assert status == "failed" and "all I write about" in raw and provider == "anthropic"
        assert calls == 3 and t_in > 0 and t_out > 0 and cost > 0
    billed = con.execute("SELECT sum(cost_usd) FROM prompt").fetchone()[0]
    report = subprocess.run([sys.executable, str(ROOT / "cli.py"), "report", "--db", str(tmp_path / "m2i.db")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    llm = next(line for line in report.stdout.splitlines() if line.startswith("llm:"))
    assert "10 failed" in llm and f"${billed:.4f}" in llm
    assert KEY.encode() not in (tmp_path / "m2i.db").read_bytes()



def test_a_prompt_that_failed_then_succeeded_keeps_what_every_attempt_cost(tmp_path, analysed):
    """A requeued prompt's earlier attempt was paid for too: its tokens, calls and cost add to the
    successful attempt's, so the run's spend in `m2i report` is what the provider billed."""
    r, _, _ = generate(tmp_path, analysed, lambda s: None, answer=lambda body, n: "Music is all I write about today.")
    assert r.returncode == 0, r.stderr[-3000:]
    con = sqlite3.connect(tmp_path / "m2i.db")
    failed = dict(con.execute("SELECT id, cost_usd FROM prompt").fetchall())
    calls_before = dict(con.execute("SELECT id, llm_attempts FROM prompt").fetchall())
    tokens_before = dict(con.execute("SELECT id, tokens_out FROM prompt").fetchall())
    assert all(c > 0 for c in failed.values()) and set(calls_before.values()) == {3}
    rq = subprocess.run([sys.executable, str(ROOT / "cli.py"), "requeue", "--db", str(tmp_path / "m2i.db")],
                        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rq.returncode == 0, rq.stderr[-2000:]
    r, rows, srv = generate(tmp_path, None, lambda s: None)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {s for s, _ in rows} == {"done"}
    for pid, cost, calls, tokens_out in con.execute("SELECT id, cost_usd, llm_attempts, tokens_out FROM prompt"):
        assert calls == calls_before[pid] + 1  # the three invalid answers and the good one
        assert cost > failed[pid] and tokens_out > tokens_before[pid]
    billed = con.execute("SELECT sum(cost_usd) FROM prompt").fetchone()[0]
    assert billed > sum(failed.values())
    report = subprocess.run([sys.executable, str(ROOT / "cli.py"), "report", "--db", str(tmp_path / "m2i.db")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    llm = next(line for line in report.stdout.splitlines() if line.startswith("llm:"))
    assert f"${billed:.4f}" in llm

# --------------------------------------------------------------------------- --batch (Message Batches)


def batch_run(tmp_path, srv, **env):
    """`m2i run --stages generate --batch` on ``tmp_path/m2i.db`` against ``srv`` (polls every 0.2 s)."""
    cfg = tmp_path / "m2i.toml"
    cfg.write_text("prompt_settings = { batch_poll_s = 0.2 }\n")
    full = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url, **env}
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--db", str(tmp_path / "m2i.db"), "--stages",
                        "generate", *MODEL, "--batch", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env=full)
    con = sqlite3.connect(tmp_path / "m2i.db")
    return r, con.execute("SELECT status, attempts FROM prompt").fetchall(), con


def polling(method, path):
    return method == "GET" and path.startswith("/v1/messages/batches/")


def test_batch_with_a_revoked_key_stops_with_one_sentence_and_sends_nothing(tmp_path, analysed):
    shutil.copy(analysed, tmp_path / "m2i.db")
    srv = OutageServer(lambda s: 401, hit=lambda method, path: path == "/v1/messages/batches").start()
    try:
        r, rows, con = batch_run(tmp_path, srv)
    finally:
        srv.stop()
    assert_one_sentence(r, "error: Anthropic rejected the key in ANTHROPIC_API_KEY (401")
    assert rows == [("pending", 0)] * 10  # nothing burnt: the attempt is not counted
    assert con.execute("SELECT count(*) FROM llm_batch").fetchone() == (0,)


def test_batch_polling_through_an_outage_collects_the_one_batch_without_burning_a_prompt(tmp_path, analysed):
    """The status polls fail for 3 s, longer than one request's retries last (Retry-After 0.2 s):
    the prompts go back to pending, the next claim finds the stored batch and collects it."""
    shutil.copy(analysed, tmp_path / "m2i.db")
    state: dict[str, float] = {}

    def down(srv):
        return 503 if time.time() < state.setdefault("until", time.time() + 3.0) else None

    srv = OutageServer(down, hit=polling, retry_after="0.2").start()
    try:
        r, rows, con = batch_run(tmp_path, srv)
    finally:
        srv.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    assert rows == [("done", 1)] * 10
    assert srv.errors >= 6  # more than one request's 5 attempts: the hand-back path ran
    assert len(srv.posts("/v1/messages/batches")) == 1  # submitted once, collected once
    assert con.execute("SELECT status FROM llm_batch").fetchall() == [("collected",)]
    assert "holding prompts" in r.stderr and "answers again" in r.stderr


def test_batch_polling_through_a_long_outage_stops_and_the_next_run_collects_the_same_batch(tmp_path, analysed):
    shutil.copy(analysed, tmp_path / "m2i.db")
    srv = OutageServer(lambda s: 503 if s.errors < 10**6 and s.down_now else None, hit=polling,
                       retry_after="0.2").start()
    srv.down_now = True
    try:
        r, rows, con = batch_run(tmp_path, srv, M2I_LLM_OUTAGE_S="2")
        assert_one_sentence(r, "error: anthropic has answered nothing for 2")
        assert rows == [("pending", 0)] * 10
        assert con.execute("SELECT status FROM llm_batch").fetchall() == [("submitted",)]
        srv.down_now = False  # the provider is back: the same command collects the stored batch
        r, rows, con = batch_run(tmp_path, srv)
    finally:
        srv.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    assert rows == [("done", 1)] * 10
    assert len(srv.posts("/v1/messages/batches")) == 1  # never paid for twice
    assert con.execute("SELECT status FROM llm_batch").fetchall() == [("collected",)]
