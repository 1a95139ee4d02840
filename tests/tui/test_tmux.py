"""The real `m2i tui` in tmux, following a database that a headless runner in another process works on.

This is what a person does over SSH: one pane runs the pipeline, another the dashboard; they
watch progress, open Failures, requeue the failed render with `r` then `y`, and see the running
runner pick it up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from m2i.store import open_store, ops

HERE = Path(__file__).parent
REPO = HERE.parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/system-deps.sh installs it)"),
]


class Pane:
    def __init__(self, session: str, env: dict[str, str]) -> None:
        self.session = session
        self.env = env

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, env=self.env, check=False).stdout

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", self.session, k)
            time.sleep(0.15)

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{text}")


def tmux_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a tmux session of its own, on a colour terminal."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", "HF_HUB_OFFLINE": "1",
           "TMUX_TMPDIR": str(tmp_path), **extra}
    env.pop("NO_COLOR", None)
    env.pop("TMUX", None)
    return env


@contextlib.contextmanager
def tui_pane(env: dict[str, str], name: str, args: str, size: tuple[int, int] = (80, 24)) -> Iterator[Pane]:
    """`m2i tui ARGS` in a detached tmux session; when it ends the pane shows ``TUI-EXITED <status>``."""
    session = f"m2i-{name}-{os.getpid()}"
    pane = Pane(session, env)
    cmd = f"cd {REPO} && {sys.executable} cli.py tui {args}; echo TUI-EXITED $?; sleep 60"
    pane.tmux("new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), cmd)
    try:
        yield pane
    finally:
        pane.tmux("kill-session", "-t", session)


def image_status(db: Path, image_id: int) -> str | None:
    with sqlite3.connect(db) as con:
        row = con.execute("SELECT status FROM image WHERE id = ?", (image_id,)).fetchone()
    return row[0] if row else None


def test_tui_over_tmux_follows_a_live_runner_and_requeues(tmp_path):
    from seeding import make_clips

    db = tmp_path / "live.db"
    store = open_store(str(db))
    run_id = ops.create_run(store, name="tmux-run", config={"seed": 3, "llm": "ollama", "model": "llama3.2",
                                                            "images": "preview", "device": "cpu"})
    ops.add_samples(store, run_id, make_clips(4))
    store.close()

    env = tmux_env(tmp_path)
    marker = tmp_path / "failed-once"
    runner = subprocess.Popen(
        [sys.executable, str(HERE / "runner_proc.py"), str(db), str(run_id), "0.4", "1", str(marker)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with tui_pane(env, "tui", f"--db {db}") as pane:
            pane.wait_for(lambda t: "m2i · Dashboard" in t and "run tmux-run" in t, "the dashboard")
            pane.wait_for(lambda t: "ollama/llama3.2" in t, "the provider and model")
            pane.keys("?")
            pane.wait_for(lambda t: "m2i dashboard — keys" in t, "the help screen")
            pane.keys("Escape")
            pane.wait_for(lambda t: "m2i dashboard — keys" not in t, "the help screen to close")
            # the runner fails image 1 once; the dashboard's event log shows it
            text = pane.wait_for(lambda t: "out of memory" in t, "the render failure in the event log")
            assert "render" in text

            pane.keys("f")
            text = pane.wait_for(lambda t: "m2i · Failures" in t and "BackendError" in t, "the failures table")
            assert "render 1" in text.replace("  ", " ") or "render" in text
            pane.keys("r")
            pane.wait_for(lambda t: "Requeue render row 1" in t, "the confirmation")
            pane.keys("y")
            deadline = time.monotonic() + 20
            while image_status(db, 1) != "done" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert image_status(db, 1) == "done", "the live runner did not pick the requeued row up"

            pane.keys("d")
            pane.wait_for(lambda t: "render" in t and "requeued 1 row(s)" in t, "the requeue event on the dashboard")
            out, _ = runner.communicate(timeout=60)
            assert runner.returncode == 0, out
            text = pane.wait_for(lambda t: t.count("done") >= 4 and "idle" in t, "every stage done")
            render_line = next(line for line in text.splitlines() if line.strip().startswith("render"))
            assert "100%" in render_line and " 20 " in render_line + " "

            pane.keys("q")
            pane.wait_for(lambda t: "TUI-EXITED 0" in t, "the app to quit cleanly")
            assert "Traceback" not in pane.text()
    finally:
        if runner.poll() is None:
            runner.terminate()
            runner.wait(timeout=10)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_quits_and_restores_the_terminal(tmp_path, sig):
    import signal

    db = tmp_path / "sig.db"
    store = open_store(str(db))
    ops.create_run(store, name="signalled", config={"seed": 0})
    store.close()
    with tui_pane(tmux_env(tmp_path), "sig", f"--db {db}") as pane:
        pane.wait_for(lambda t: "run signalled" in t, "the dashboard")
        shell = pane.tmux("display", "-p", "-t", pane.session, "#{pane_pid}").strip()
        app_pid = int(subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True).stdout.split()[0])
        os.kill(app_pid, getattr(signal, sig))
        pane.wait_for(lambda t: "TUI-EXITED 0" in t, f"the app to quit on {sig}")
        modes = pane.tmux("display", "-p", "-t", pane.session, "#{alternate_on} #{mouse_any_flag} #{cursor_flag}")
        assert modes.split() == ["0", "0", "1"], "alternate screen, mouse tracking, cursor: " + modes
        assert "Traceback" not in pane.text()


def test_ctrl_z_suspends_to_the_shell_and_fg_draws_the_whole_dashboard_again(tmp_path):
    """Over SSH, Ctrl-Z is how one gets a shell back for a moment. The dashboard ignored it; then,
    back with `fg`, only the cells that changed were drawn again (the stage names stayed blank)."""
    db = tmp_path / "z.db"
    store = open_store(str(db))
    ops.create_run(store, name="suspended", config={"seed": 0})
    store.close()
    env = tmux_env(tmp_path)
    session = f"m2i-z-{os.getpid()}"
    pane = Pane(session, env)
    pane.tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", "bash --norc --noprofile -i")
    try:
        pane.wait_for(lambda t: "$" in t or "#" in t, "the shell prompt")
        pane.tmux("send-keys", "-t", session, f"cd {REPO} && {sys.executable} cli.py tui --db {db}", "Enter")
        pane.wait_for(lambda t: "run suspended" in t and "generate" in t, "the dashboard")
        pane.keys("C-z")
        pane.wait_for(lambda t: "Stopped" in t, "the shell's job-control line")
        modes = pane.tmux("display", "-p", "-t", session, "#{alternate_on} #{mouse_any_flag} #{cursor_flag}")
        assert modes.split() == ["0", "0", "1"], "the shell gets a normal terminal: " + modes
        pane.tmux("send-keys", "-t", session, "fg", "Enter")
        text = pane.wait_for(lambda t: "run suspended" in t and " analyze " in t and " render " in t,
                             "the whole dashboard again after fg")
        assert "Stopped" not in text
        pane.keys("q")
        pane.wait_for(lambda t: "run suspended" not in t, "the app to quit")
        pane.tmux("send-keys", "-t", session, "echo EXITED $?", "Enter")
        pane.wait_for(lambda t: "EXITED 0" in t, "a clean exit")
    finally:
        pane.tmux("kill-session", "-t", session)


def test_tui_run_shows_the_runners_info_lines_in_the_event_log(tmp_path):
    env = tmux_env(tmp_path, M2I_STAGES="render", M2I_IMAGES="preview", M2I_OUT_DIR=str(tmp_path / "out"))
    with tui_pane(env, "run", f"--db {tmp_path / 'run.db'} --run", size=(100, 30)) as pane:
        pane.wait_for(lambda t: "runner finished in" in t, "the runner's INFO line in the event log", timeout=60)
        pane.keys("q")
        pane.wait_for(lambda t: "TUI-EXITED 0" in t, "the app to quit cleanly")
