"""m2i: music to image.

The library never imports ``tui`` or ``cli``; heavy libraries are imported inside the functions
that need them so that ``import m2i`` stays fast.
"""

import os

# torch's OpenMP threads spin while they wait; on a small or busy machine that doubles the CPU
# cost of scoring (measured: 500 prompts 232 s -> 28 s wall at load 6 on 2 cores). Passive
# waiting must be chosen before torch is first imported, hence here. A user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from m2i.errors import BackendError, ConfigError, InputError, M2IError, ProviderError, StoreError

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigError",
    "InputError",
    "M2IError",
    "ProviderError",
    "StoreError",
    "__version__",
]
