"""Process liveness on this host, for the places that name a process by ``host`` and ``pid``
(a runner's worker id ``host:pid[:tag]``, a PNG writer's temporary file)."""

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
