"""Image backends by name: ``sdxl``, ``preview``, and ``auto`` (the best that works here).

>>> from m2i.images.backends import get_backend
>>> backend = get_backend("preview")
>>> backend.name
'preview'

Backends are imported lazily, so listing or resolving names never imports torch or diffusers
(except :func:`resolve_auto`, which must ask torch whether a GPU is present).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from m2i.errors import ConfigError
from m2i.images.backends.base import ImageBackend

_REGISTRY: dict[str, str] = {
    "sdxl": "m2i.images.backends.sdxl:SDXLBackend",
    "preview": "m2i.images.backends.preview:PreviewBackend",
}

BACKEND_NAMES: tuple[str, ...] = ("auto", *_REGISTRY)
"""What ``--images`` accepts."""

__all__ = ["BACKEND_NAMES", "ImageBackend", "backend_class", "check_backend_name", "get_backend", "resolve_auto"]


def check_backend_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``--images`` accepts ``name`` (imports no backend)."""
    if str(name).strip().lower() != "auto":
        _target(name)


def _target(name: str) -> str:
    target = _REGISTRY.get(str(name).strip().lower())
    if target is None:
        raise ConfigError(f"unknown image backend {name!r}; use one of {', '.join(BACKEND_NAMES)}.")
    return target


def backend_class(name: str) -> type[ImageBackend]:
    """Return the class registered as ``name`` (``sdxl`` or ``preview``).

    Raises
    ------
    ConfigError
        If no backend has that name.
    """
    module, attr = _target(name).split(":")
    return getattr(importlib.import_module(module), attr)


def _accepted(cls: type[ImageBackend]) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _settings_for(cls: type[ImageBackend], settings: dict[str, Any]) -> dict[str, Any]:
    known: set[str] = set()
    for target in _REGISTRY:
        known |= _accepted(backend_class(target))
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"unknown image setting(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}."
        )
    mine = _accepted(cls)
    return {k: v for k, v in settings.items() if k in mine and v is not None}


def resolve_auto(**settings: Any) -> tuple[str, str]:
    """Choose between ``sdxl`` and ``preview`` for this machine.

    ``sdxl`` when torch sees a CUDA or Apple GPU (or ``device`` names one) **and** the model's
    weights are a local folder or already in the Hugging Face cache; otherwise ``preview``.

    Parameters
    ----------
    **settings
        The image settings; ``model``, ``device`` and ``cache_dir`` are read.

    Returns
    -------
    tuple[str, str]
        The backend name and one sentence saying why.
    """
    from m2i.images.backends.sdxl import DEFAULT_MODEL, gpu_device, refiner_model, weights_available

    model = settings.get("model") or DEFAULT_MODEL
    device = str(settings.get("device") or "auto").lower()
    if device == "cpu":
        return (
            "preview",
            "device cpu was asked for and SDXL on a CPU takes minutes per image, so images are previews.",
        )
    gpu = gpu_device()
    if gpu is None:
        return (
            "preview",
            "no CUDA or Apple GPU is visible to torch, so images are previews drawn from the features.",
        )
    if not weights_available(model, cache_dir=settings.get("cache_dir")):
        return "preview", (
            f"SDXL weights {model} are not on this machine (run `hf download {model}`), "
            "so images are previews."
        )
    refiner = refiner_model(settings.get("refiner"))
    if refiner is not None and not weights_available(refiner, cache_dir=settings.get("cache_dir")):
        return "preview", (
            f"SDXL refiner weights {refiner} are not on this machine (run `hf download {refiner}`), "
            "so images are previews."
        )
    return "sdxl", f"a {gpu} GPU and the weights of {model} are here, so images are rendered with SDXL."


def get_backend(name: str, **settings: Any) -> ImageBackend:
    """Build an image backend by name (not loaded yet: call ``.load()``).

    Parameters
    ----------
    name : {"auto", "sdxl", "preview"}
        ``auto`` picks with :func:`resolve_auto` and stores its reason in ``backend.auto_reason``.
    **settings
        Backend settings (``model``, ``device``, ``batch_size``, ``refiner``, ...). Settings meant
        for the other backend are ignored, ``None`` values take the default, and a name no backend
        knows is a :class:`~m2i.errors.ConfigError`.

    Returns
    -------
    ImageBackend

    Raises
    ------
    ConfigError
        For an unknown backend name or setting.
    """
    key = str(name).strip().lower()
    reason = None
    if key == "auto":
        key, reason = resolve_auto(**settings)
    cls = backend_class(key)
    backend = cls(**_settings_for(cls, settings))
    backend.auto_reason = reason
    return backend
