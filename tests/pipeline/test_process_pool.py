"""The analysis process pool starts even when sys.stderr is not a real file (inside the dashboard)."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import io, sys
from m2i.runner import make_process_pool
class Captured(io.StringIO):
    def fileno(self):
        return -1          # what a UI's stderr capture reports
sys.stderr = Captured()
try:
    pool = make_process_pool(1)
    print(pool.submit(pow, 2, 10).result(timeout=120))
    pool.shutdown()
except Exception as exc:
    print(repr(exc))
"""


def test_pool_starts_with_a_captured_stderr():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1024"


def test_captured_stream_really_breaks_a_plain_spawn():
    """The condition the fix is for: without it, spawning with such a stderr fails."""
    code = CODE.replace("from m2i.runner import make_process_pool", "import multiprocessing as mp\n"
                        "from concurrent.futures import ProcessPoolExecutor\n"
                        "make_process_pool = lambda n: ProcessPoolExecutor(n, mp_context=mp.get_context('spawn'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert "fds_to_keep" in r.stdout
