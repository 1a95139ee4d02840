"""Processes on this host: liveness, for the places that name a process by ``host`` and ``pid``
(a runner's worker id ``host:pid[:tag]``, a PNG writer's temporary file), and the size of a
worker pool."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def pool_size(workers: int | None = None) -> int:
    """Worker processes for a pool: ``workers``, else one per core, at most 8."""
    return workers or max(1, min(os.cpu_count() or 1, 8))
