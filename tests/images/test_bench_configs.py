"""The GPU benchmark builds the real SDXL 1.0 architecture (checked on the meta device: no memory)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_benchmark_configs_give_the_published_sdxl_parameter_counts():
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_images.py"
    spec = importlib.util.spec_from_file_location("bench_images", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        # stabilityai/stable-diffusion-xl-base-1.0: unet, vae, text_encoder, text_encoder_2
        assert count(UNet2DConditionModel(**bench.SDXL_UNET)) == 2_567_463_684
        assert count(AutoencoderKL(**bench.SDXL_VAE)) == 83_653_863
        assert count(CLIPTextModel(CLIPTextConfig(**bench.SDXL_TEXT_ENCODER))) == 123_060_480
        assert count(CLIPTextModelWithProjection(CLIPTextConfig(**bench.SDXL_TEXT_ENCODER_2))) == 694_659_840
