"""Fixtures for the image tests: a tiny, real SDXL pipeline saved to disk.

The pipeline is built from the configs diffusers' own SDXL tests use (UNet block_out_channels
(2, 4), CLIP text models of width 32), with a CLIP tokenizer built here from a byte-level vocab
(no hub), saved with ``save_pretrained`` and then loaded by the tests through exactly the code
path real weights take: ``get_backend("sdxl", model=<folder>, device="cpu")``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FEATURES_FULL = {
    "key": "F#",
    "tonality": "minor",
    "key_runner_up": "A major",
    "tempo": 96.0,
    "time_signature": "3/4",
    "mood": {"valence": 0.31, "arousal": 0.72, "words": ["tense", "driving"]},
    "melody_contour": {"shape": "arch", "range_semitones": 12.0},
    "harmonic_progression": {"roman": ["i", "iv", "V", "i"], "text": "i-iv-V-i"},
    "dynamic_intensity": {"label": "mf", "loudness_db": -18.2, "range_db": 11.5, "trend": "crescendo"},
}

# The first sample of the earlier system's real output (legacy string form).
FEATURES_LEGACY = {
    "key": "F",
    "tonality": "minor",
    "tempo": 125.0,
    "time_signature": "4/4",
    "mood": "upbeat, dark",
    "melody_contour": "ascending",
    "harmonic_progression": "complex_progression",
    "dynamic_intensity": "moderate",
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level CLIP vocab (every byte, alone and word-final) and a few merges."""
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("o", "n</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


def build_tiny_sdxl(folder: Path) -> tuple[Path, Path]:
    """Build and save a tiny SDXL base and refiner; return their folders."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)

    def unet(cross_attention_dim: int, projection_dim: int) -> UNet2DConditionModel:
        torch.manual_seed(0)
        return UNet2DConditionModel(
            block_out_channels=(2, 4),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=projection_dim,
            cross_attention_dim=cross_attention_dim,
            norm_num_groups=1,
        )

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=32,
        max_position_embeddings=77,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)

    base = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet(64, 80),  # 32 + 32 text width; 6 * 8 time ids + 32 pooled
        scheduler=scheduler,
    )
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=tokenizer,
        unet=unet(32, 72),  # text_encoder_2 only; 5 * 8 (with aesthetic score) + 32 pooled
        scheduler=scheduler,
        requires_aesthetics_score=True,
    )
    base_dir, refiner_dir = folder / "tiny-sdxl-base", folder / "tiny-sdxl-refiner"
    base.save_pretrained(base_dir)
    refiner.save_pretrained(refiner_dir)
    return base_dir, refiner_dir


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op torch thread while an image test runs, then the previous setting back.

    The test machines' cores are shared with other jobs; with one OpenMP thread per core the
    threads spin against each other and these tiny tensors run up to 60x slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(base_folder, refiner_folder)`` of a tiny SDXL saved with ``save_pretrained``."""
    return build_tiny_sdxl(tmp_path_factory.mktemp("sdxl"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_sdxl):
    """The tiny base loaded once through ``get_backend("sdxl", ...)`` (batch size 4, CPU)."""
    from m2i.images.backends import get_backend

    backend = get_backend("sdxl", model=str(tiny_sdxl[0]), device="cpu", batch_size=4)
    backend.load()
    yield backend
    backend.close()


@pytest.fixture
def features_full() -> dict:
    return json.loads(json.dumps(FEATURES_FULL))


@pytest.fixture
def features_legacy() -> dict:
    return dict(FEATURES_LEGACY)


@pytest.fixture
def make_job(tmp_path):
    """Factory of :class:`ImageJob` s writing under ``tmp_path/out`` in the standard layout."""
    from m2i.images import ImageJob, image_path, image_seed

    def make(
        prompt_id: int = 1,
        prompt: str = "a lighthouse in a storm",
        *,
        sample_idx: int = 0,
        slot: int | None = None,
        out_dir: Path | None = None,
        **kw,
    ) -> ImageJob:
        slot = prompt_id % 5 if slot is None else slot
        kw.setdefault("seed", image_seed(42, prompt_id))
        kw.setdefault("width", 64)
        kw.setdefault("height", 64)
        kw.setdefault("steps", 2)
        kw.setdefault("guidance", 5.0)
        return ImageJob(
            prompt_id=prompt_id,
            sample_idx=sample_idx,
            slot=slot,
            prompt=prompt,
            out_path=image_path(out_dir or tmp_path / "out", sample_idx, slot),
            **kw,
        )

    return make
