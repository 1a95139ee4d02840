"""m2i: music to image.

The library never imports ``tui`` or ``cli``; heavy libraries are imported inside the functions
that need them so that ``import m2i`` stays fast.
"""

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
