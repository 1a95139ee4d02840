"""A runner process for the subprocess tests: python run_script.py DB RUN_ID LOG DELAY [STAGES [LEASE [BATCH]]]."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from store_helpers import RecordingStage  # noqa: E402

from m2i.runner import Runner, run_blocking  # noqa: E402
from m2i.store import open_store  # noqa: E402

if __name__ == "__main__":
    db, run_id, log, delay = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    stages = sys.argv[5].split(",") if len(sys.argv) > 5 else ["analyze", "generate", "score", "render"]
    lease = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
    batch = int(sys.argv[7]) if len(sys.argv) > 7 else 2
    store = open_store(db)
    impls = [RecordingStage(s, log=log, delay=delay, concurrency=2, batch_size=batch) for s in stages]
    counts = run_blocking(Runner(store, run_id, impls, lease_s=lease, poll_s=0.05, grace_s=5.0))
    print("done", {s: c["done"] for s, c in counts.items()}, flush=True)
