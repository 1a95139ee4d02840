"""Backend registry, ``auto`` and import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

from m2i.errors import ConfigError
from m2i.images.backends import BACKEND_NAMES, get_backend, resolve_auto
from m2i.images.backends.sdxl import model_defaults, weights_available


def test_names_and_unknowns():
    assert BACKEND_NAMES == ("auto", "sdxl", "preview")
    assert get_backend("preview").name == "preview"
    assert get_backend("SDXL", model="x/y").name == "sdxl"
    with pytest.raises(ConfigError, match="unknown image backend 'dalle'"):
        get_backend("dalle")
    with pytest.raises(ConfigError, match="unknown image setting"):
        get_backend("preview", widht=512)


def test_settings_for_the_other_backend_are_ignored():
    backend = get_backend("preview", model="stabilityai/sdxl-turbo", batch_size=8, refiner=None, width=256)
    assert backend.default_width == 256
    sdxl = get_backend("sdxl", model="stabilityai/sdxl-turbo", batch_size=None)
    assert sdxl.batch_size == 4


def test_auto_on_a_machine_without_gpu_or_weights_picks_preview_and_says_why(tiny_sdxl):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    name, reason = resolve_auto(model=str(tiny_sdxl[0]))
    assert name == "preview" and "no CUDA or Apple GPU" in reason
    assert resolve_auto(device="cpu")[0] == "preview"
    backend = get_backend("auto", model=str(tiny_sdxl[0]), batch_size=2)
    assert backend.name == "preview" and backend.auto_reason == reason


def test_weights_available(tiny_sdxl, tmp_path):
    assert weights_available(str(tiny_sdxl[0]))
    assert not weights_available(str(tmp_path / "nothing"))
    assert not weights_available("someone/not-cached", cache_dir=tmp_path)


def test_model_family_defaults():
    assert model_defaults("stabilityai/sdxl-turbo").steps == 1
    assert model_defaults("stabilityai/sdxl-turbo").guidance == 0.0
    assert model_defaults("ByteDance/SDXL-Lightning").steps == 4
    base = model_defaults("stabilityai/stable-diffusion-xl-base-1.0")
    assert (base.steps, base.guidance, base.width) == (30, 7.0, 1024)


def test_importing_the_images_package_loads_no_heavy_library():
    code = (
        "import sys, m2i.images, m2i.images.backends, m2i.images.backends.sdxl, m2i.images.backends.preview;"
        "from m2i.images.backends import get_backend; get_backend('sdxl'); get_backend('preview');"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_refiner_setting_spellings():
    from m2i.images.backends.sdxl import DEFAULT_REFINER, refiner_model

    assert refiner_model(True) == refiner_model("default") == refiner_model("yes") == DEFAULT_REFINER
    assert refiner_model(None) is refiner_model(False) is refiner_model("off") is refiner_model("") is None
    assert refiner_model("/models/my-refiner") == "/models/my-refiner"
    assert get_backend("sdxl", refiner="true").refiner_model == DEFAULT_REFINER
