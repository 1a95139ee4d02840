"""The ``sdxl`` backend on a tiny, real SDXL pipeline (CPU, offline)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2i.errors import BackendError, ConfigError
from m2i.images import image_path
from m2i.images.backends import get_backend
from m2i.images.png import TMP_PREFIX, read_png_text


def pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_batch_renders_every_job_in_order_into_the_legacy_layout(tiny_backend, make_job, tmp_path):
    jobs = [
        make_job(i, f"a {word} garden at dusk", sample_idx=3, slot=i)
        for i, word in enumerate(["quiet", "burning", "frozen", "floating", "violet"])
    ]
    results = tiny_backend.render(jobs)

    assert [r.prompt_id for r in results] == [0, 1, 2, 3, 4]
    assert all(r.error is None for r in results), [r.error for r in results]
    for job, res in zip(jobs, results):
        assert res.path == str(
            tmp_path / "out" / "images" / "sample_003" / f"sample_003_prompt_{job.slot:02d}.png"
        )
        with Image.open(res.path) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
        assert (res.backend, res.device, res.scheduler) == ("sdxl", "cpu", "euler")
        assert tiny_backend.describe()["dtype"] == "float32"
        assert res.model == str(Path(tiny_backend.model)) and res.refiner is False and res.truncated is False
        assert res.seconds > 0
    assert not list((tmp_path / "out").rglob(f"{TMP_PREFIX}*")), "temporary files left behind"


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_backend, make_job, tmp_path):
    a = tiny_backend.render([make_job(7, "a red kite over the sea", seed=1234, out_dir=tmp_path / "a")])[0]
    b = tiny_backend.render([make_job(7, "a red kite over the sea", seed=1234, out_dir=tmp_path / "b")])[0]
    c = tiny_backend.render([make_job(7, "a red kite over the sea", seed=1235, out_dir=tmp_path / "c")])[0]
    assert np.array_equal(pixels(a.path), pixels(b.path))
    assert np.abs(pixels(a.path) - pixels(c.path)).mean() > 1.0


def test_image_does_not_depend_on_its_batch_mates(tiny_backend, make_job, tmp_path):
    alone = tiny_backend.render([make_job(2, "a paper boat", seed=99, out_dir=tmp_path / "alone")])[0]
    mates = [
        make_job(i, f"mate number {i}", seed=i, negative_prompt="blurry", out_dir=tmp_path / "batch")
        for i in (10, 11, 13)
    ]
    batch = tiny_backend.render(
        [*mates[:2], make_job(2, "a paper boat", seed=99, out_dir=tmp_path / "batch"), mates[2]]
    )
    assert batch[2].prompt_id == 2
    diff = np.abs(pixels(alone.path) - pixels(batch[2].path))
    assert diff.max() <= 2, f"batched render differs from the single render by up to {diff.max()} levels"


def test_png_carries_everything_needed_to_reproduce_it(tiny_backend, make_job):
    job = make_job(
        5,
        "an orchestra of glass birds, ultramarine",
        negative_prompt="text, watermark",
        seed=424242,
        steps=3,
        guidance=6.5,
        title="Glass birds",
    )
    res = tiny_backend.render([job])[0]
    text = read_png_text(res.path)
    assert text["prompt"] == job.prompt
    assert text["negative_prompt"] == "text, watermark"
    assert text["seed"] == "424242" and res.seed == 424242
    assert text["steps"] == "3" and text["guidance"] == "6.5"
    assert text["width"] == "64" and text["height"] == "64" and text["size"] == "64x64"
    assert text["model"] == tiny_backend.model and text["scheduler"] == "euler" and text["backend"] == "sdxl"
    assert text["title"] == "Glass birds" and text["truncated"] == "false" and text["prompt_id"] == "5"
    assert "Seed: 424242" in text["parameters"] and "Negative prompt: text, watermark" in text["parameters"]


def test_model_defaults_fill_what_a_job_leaves_out(tiny_backend, make_job):
    job = make_job(6, "steam rising from a cup", steps=None, guidance=None, width=64, height=64)
    res = tiny_backend.render([job])[0]
    assert (res.steps, res.guidance) == (30, 7.0)
    assert read_png_text(res.path)["steps"] == "30"


def test_long_prompt_is_rendered_and_recorded_as_truncated(tiny_backend, make_job):
    long_prompt = "a very long prompt about a cathedral made of rain " * 4  # ~200 byte-level tokens
    res = tiny_backend.render([make_job(8, long_prompt)])[0]
    assert res.error is None and res.truncated is True
    assert any("CLIP tokens" in n and "read the first 77" in n for n in res.notes)
    assert read_png_text(res.path)["truncated"] == "true"


def test_refiner_path_shares_encoder_and_vae_and_changes_the_image(tiny_sdxl, make_job, tmp_path):
    base_dir, refiner_dir = tiny_sdxl
    backend = get_backend(
        "sdxl", model=str(base_dir), refiner=str(refiner_dir), refiner_split=0.5, device="cpu"
    )
    backend.load()
    try:
        assert backend.refiner_pipeline.text_encoder_2 is backend.pipeline.text_encoder_2
        assert backend.refiner_pipeline.vae is backend.pipeline.vae
        jobs = [
            make_job(i, f"a comet over {w}", seed=i, steps=4, out_dir=tmp_path / "r")
            for i, w in enumerate(["dunes", "a harbour"])
        ]
        refined = backend.render(jobs)
        again = backend.render([make_job(0, "a comet over dunes", seed=0, steps=4, out_dir=tmp_path / "r2")])[
            0
        ]
    finally:
        backend.close()
    assert all(r.error is None and r.refiner for r in refined)
    assert read_png_text(refined[0].path)["refiner"] == str(refiner_dir)
    assert np.array_equal(pixels(refined[0].path), pixels(again.path))

    plain = get_backend("sdxl", model=str(base_dir), device="cpu")
    plain_res = plain.render([make_job(0, "a comet over dunes", seed=0, steps=4, out_dir=tmp_path / "p")])[0]
    plain.close()
    assert np.abs(pixels(refined[0].path) - pixels(plain_res.path)).mean() > 0.5


def test_bad_jobs_fail_alone_with_a_reason(tiny_backend, make_job, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    unwritable = make_job(21, "a fine prompt", out_dir=blocker / "run")
    jobs = [
        make_job(20, "   "),
        unwritable,
        make_job(22, "a fine prompt", width=60),
        make_job(23, "an owl at noon"),
    ]
    results = tiny_backend.render(jobs)

    assert [r.prompt_id for r in results] == [20, 21, 22, 23]
    assert "empty image_prompt" in results[0].error and results[0].path is None
    assert "cannot write to" in results[1].error and str(blocker) in results[1].error
    assert "writable output folder" in results[1].error
    assert "multiple of 8" in results[2].error
    assert results[3].error is None and Path(results[3].path).is_file()


def test_out_of_memory_halves_the_batch_then_fails_the_row(tiny_sdxl, make_job, tmp_path):
    # A real out-of-memory cannot be caused on a shared CPU machine without endangering other
    # processes, so a test hook on the UNet raises torch's own OutOfMemoryError whenever the
    # UNet is asked for more than `limit` latents (classifier-free guidance doubles the batch).
    import torch

    backend = get_backend("sdxl", model=str(tiny_sdxl[0]), device="cpu", batch_size=4)
    backend.load()
    unet = backend.pipeline.unet
    real_forward = unet.forward
    seen: list[int] = []
    limit = {"latents": 2}

    def forward_with_memory_limit(sample, *args, **kwargs):
        seen.append(sample.shape[0])
        if sample.shape[0] > limit["latents"]:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {sample.shape[0]} latents (test hook)"
            )
        return real_forward(sample, *args, **kwargs)

    unet.forward = forward_with_memory_limit
    try:
        jobs = [make_job(i, f"a tower of clocks {i}", seed=i, out_dir=tmp_path / "oom") for i in range(4)]
        results = backend.render(jobs)
        assert all(r.error is None for r in results), [r.error for r in results]
        assert seen[0] == 8 and seen[1] == 4 and set(seen[2:]) == {2}  # 4 -> 2 -> 1 images per call
        assert any("batch size reduced to 1" in n for n in results[0].notes)
        assert backend._max_batch[(64, 64)] == 1  # remembered for the next batch of this size

        limit["latents"] = 0  # now even one image does not fit
        failed = backend.render([make_job(9, "one more", out_dir=tmp_path / "oom")])[0]
    finally:
        unet.forward = real_forward
        backend.close()
    assert failed.path is None
    assert failed.error.startswith("out of memory rendering one 64x64 image on cpu")
    assert "--cpu-offload" in failed.error


def test_missing_local_model_folder_is_one_sentence_with_the_fix(tmp_path):
    backend = get_backend("sdxl", model=str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(BackendError) as err:
        backend.load()
    msg = str(err.value)
    assert (
        str(tmp_path / "no-such-model") in msg
        and "does not exist" in msg
        and "hf download" in msg
    )
    assert msg.count(". ") == 0 and msg.endswith(".")


def test_folder_without_model_index_is_refused(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(BackendError, match="no model_index.json"):
        get_backend("sdxl", model=str(tmp_path / "half"), device="cpu").load()


def test_uncached_hub_id_names_the_download_command(tmp_path):
    backend = get_backend(
        "sdxl", model="someone/sdxl-never-downloaded", device="cpu", cache_dir=str(tmp_path)
    )
    with pytest.raises(BackendError) as err:
        backend.load()
    assert str(err.value) == (
        "SDXL model 'someone/sdxl-never-downloaded' is not in the local Hugging Face cache; run "
        "`hf download someone/sdxl-never-downloaded` on this machine, or pass a local folder."
    )
    # the command named is one the installed huggingface_hub provides (2.x has no huggingface-cli)
    assert (Path(sys.executable).parent / "hf").exists()


def test_loading_writes_nothing_to_the_terminal(tiny_sdxl):
    """transformers' "`CLIPImageProcessor` requires torchvision (not installed); falling back..."
    reached the terminal twice a run (m2i installs no torchvision and gives SDXL no image), and the
    "Loading pipeline components" bars drew over the dashboard of `m2i tui --run`."""
    import subprocess
    import sys

    code = ("from m2i.images.backends import get_backend; "
            f"b = get_backend('sdxl', model={str(tiny_sdxl[0])!r}, device='cpu'); b.load(); print('loaded')")
    import os

    env = {k: v for k, v in os.environ.items() if not k.endswith("_VERBOSITY")}  # as a user runs it, not quietened
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**env, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0 and r.stdout == "loaded\n", r.stderr
    assert r.stderr == ""


def test_explicit_gpu_on_a_machine_without_one_is_refused(tiny_sdxl):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(BackendError, match="torch sees no CUDA GPU"):
        get_backend("sdxl", model=str(tiny_sdxl[0]), device="cuda").load()


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"scheduler": "warp"}, "unknown scheduler"),
        ({"batch_size": 0}, "batch_size"),
        ({"refiner_split": 1.5}, "refiner_split"),
        ({"model": " "}, "model is empty"),
    ],
)
def test_bad_settings_are_config_errors(settings, needle):
    with pytest.raises(ConfigError, match=needle):
        get_backend("sdxl", **settings)


def test_other_scheduler_is_used_and_recorded(tiny_sdxl, make_job):
    backend = get_backend("sdxl", model=str(tiny_sdxl[0]), device="cpu", scheduler="dpmpp_2m_karras")
    res = backend.render([make_job(30, "a glacier singing")])[0]
    assert type(backend.pipeline.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert backend.pipeline.scheduler.config.use_karras_sigmas is True
    backend.close()
    assert res.scheduler == "dpmpp_2m_karras" and read_png_text(res.path)["scheduler"] == "dpmpp_2m_karras"


def test_rendering_replaces_an_existing_image_atomically(tiny_backend, make_job, tmp_path):
    job = make_job(40, "a salt flat under two moons")
    target = image_path(tmp_path / "out", 0, job.slot)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old image")
    res = tiny_backend.render([job])[0]
    assert res.path == str(target)
    with Image.open(target) as im:
        assert im.format == "PNG"


def test_a_pipeline_built_in_memory_renders_like_the_saved_one(tiny_sdxl, tiny_backend, make_job, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from m2i.images.backends.sdxl import SDXLBackend

    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl[0]))
    backend = SDXLBackend.from_pipeline(pipe, model="in-memory tiny", device="cpu")
    a = backend.render([make_job(50, "a bell under water", seed=5, out_dir=tmp_path / "mem")])[0]
    b = tiny_backend.render([make_job(50, "a bell under water", seed=5, out_dir=tmp_path / "disk")])[0]
    assert a.model == "in-memory tiny" and a.error is None
    assert np.array_equal(pixels(a.path), pixels(b.path))
    assert backend.render([]) == []


def test_out_of_memory_is_recognised_on_every_device():
    import torch

    from m2i.images.backends.sdxl import is_out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB)"))
    assert is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    )
    assert not is_out_of_memory(RuntimeError("expected scalar type Half but found Float"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_backend_level_defaults_override_the_model_family_defaults(tiny_sdxl, make_job):
    backend = get_backend(
        "sdxl", model=str(tiny_sdxl[0]), device="cpu", width=64, height=56, steps=3, guidance=4.5
    )
    res = backend.render(
        [make_job(60, "a moth made of ash", width=None, height=None, steps=None, guidance=None)]
    )[0]
    backend.close()
    assert (res.width, res.height, res.steps, res.guidance) == (64, 56, 3, 4.5)
    with Image.open(res.path) as im:
        assert im.size == (64, 56)
    with pytest.raises(ConfigError, match="multiple of 8"):
        get_backend("sdxl", width=1020)


def test_a_cached_hub_id_loads_and_a_damaged_cache_says_how_to_repair(tiny_sdxl, make_job, tmp_path):
    import shutil

    from m2i.images.backends.sdxl import weights_available

    # the Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/...}
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--m2i-test--tiny-sdxl"
    shutil.copytree(tiny_sdxl[0], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cache = str(tmp_path / "hub")
    assert weights_available("m2i-test/tiny-sdxl", cache_dir=cache)

    backend = get_backend("sdxl", model="m2i-test/tiny-sdxl", device="cpu", cache_dir=cache)
    res = backend.render([make_job(70, "a cello in the snow")])[0]
    backend.close()
    assert res.error is None and res.model == "m2i-test/tiny-sdxl"

    for weights in (repo / "snapshots" / commit / "unet").glob("*.safetensors"):
        weights.write_bytes(b"truncated download")
    with pytest.raises(BackendError) as err:
        get_backend("sdxl", model="m2i-test/tiny-sdxl", device="cpu", cache_dir=cache).load()
    msg = str(err.value)
    assert msg.startswith("cannot load SDXL model from m2i-test/tiny-sdxl (")
    assert msg.endswith("(run `hf download m2i-test/tiny-sdxl` again to repair it).")


def test_a_job_that_breaks_its_batch_fails_alone(tiny_sdxl, make_job, tmp_path):
    # A test hook on encode_prompt stands in for a pipeline error tied to one prompt.
    backend = get_backend("sdxl", model=str(tiny_sdxl[0]), device="cpu", batch_size=3)
    backend.load()
    real_encode = backend.pipeline.encode_prompt

    def encode_refusing_one_prompt(prompt, *args, **kwargs):
        if any("poison" in p for p in ([prompt] if isinstance(prompt, str) else prompt)):
            raise ValueError("this prompt cannot be encoded (test hook)")
        return real_encode(prompt, *args, **kwargs)

    backend.pipeline.encode_prompt = encode_refusing_one_prompt
    try:
        res = backend.render(
            [
                make_job(i, p, out_dir=tmp_path / "b")
                for i, p in enumerate(["a calm sea", "poison apple", "a windmill"])
            ]
        )
    finally:
        backend.close()
    assert [r.error is None for r in res] == [True, False, True]
    assert res[1].error == "SDXL failed: ValueError: this prompt cannot be encoded (test hook)"
    assert backend._max_batch == {}  # not an out-of-memory: the batch size stays


def test_the_gpu_generates_the_next_batch_while_the_last_one_is_written(tiny_sdxl, make_job, tmp_path, monkeypatch):
    # The runner keeps two render batches in flight. The first batch's PNG write waits (up to 30 s)
    # for the second batch to start generating: that can only happen if the backend lets go of
    # its device lock before writing, so the GPU never idles behind the PNG encoder.
    import threading

    import m2i.images.backends.sdxl as sdxl

    backend = get_backend("sdxl", model=str(tiny_sdxl[0]), device="cpu", batch_size=1)
    backend.load()
    first_generating, second_generating = threading.Event(), threading.Event()
    overlapped: list[bool] = []
    real_save, real_generate = sdxl.save_png, backend._generate

    def generate(batch, *args):
        (first_generating if batch[0].prompt_id == 1 else second_generating).set()
        return real_generate(batch, *args)

    def save_png(image, path, **kw):
        if "first" in str(path):
            overlapped.append(second_generating.wait(timeout=30))
        return real_save(image, path, **kw)

    monkeypatch.setattr(backend, "_generate", generate)
    monkeypatch.setattr(sdxl, "save_png", save_png)
    results: dict[str, list] = {}

    def render(name: str, prompt_id: int) -> None:
        results[name] = backend.render([make_job(prompt_id, f"a bell tower {name}", out_dir=tmp_path / name)])

    try:
        first = threading.Thread(target=render, args=("first", 1))
        first.start()
        assert first_generating.wait(timeout=30)  # the first call holds the device
        second = threading.Thread(target=render, args=("second", 2))
        second.start()
        first.join(60)
        second.join(60)
    finally:
        backend.close()
    assert overlapped == [True], "the second batch could not generate while the first was being written"
    for name in ("first", "second"):
        assert results[name][0].error is None and Path(results[name][0].path).is_file()


def test_an_out_of_memory_while_decoding_leaves_the_vae_ready_for_the_retry(tiny_sdxl, make_job, tmp_path):
    # Seen on an H100: the stock SDXL VAE decodes in fp32 (diffusers casts it up, decodes, casts it
    # back). A real CUDA out-of-memory inside that decode left it in fp32, so the retry at half the
    # batch, and every image after it, failed with "Input type (c10::Half) and bias type (float)".
    # A test hook raises torch's own OutOfMemoryError from the decode of more than one latent.
    import warnings

    import torch

    backend = get_backend("sdxl", model=str(tiny_sdxl[0]), device="cpu", dtype="fp16", batch_size=2)
    backend.load()
    vae = backend.pipeline.vae
    vae.register_to_config(force_upcast=True)
    real_decode = vae.decode
    decoded: list[tuple[int, torch.dtype]] = []

    def decode(z, *args, **kwargs):
        decoded.append((z.shape[0], next(vae.parameters()).dtype))
        if z.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.25 GiB (test hook)")
        return real_decode(z, *args, **kwargs)

    vae.decode = decode
    try:
        jobs = [make_job(i, f"a harbour of lanterns {i}", seed=i, out_dir=tmp_path / "vae") for i in range(3)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = backend.render(jobs)
        assert next(vae.parameters()).dtype == torch.float16  # back in the pipeline's dtype
    finally:
        vae.decode = real_decode
        backend.close()
    assert [r.error for r in results] == [None, None, None]
    assert all(Path(r.path).is_file() for r in results)
    assert any("batch size reduced to 1" in n for n in results[0].notes)
    assert decoded[0] == (2, torch.float32) and {d for _, d in decoded[1:]} == {torch.float32}  # decoded upcast
    # diffusers' deprecation of its own upcast_vae() is not the user's to act on
    assert not [w for w in caught if "upcast_vae" in str(w.message)]


def test_a_compiled_unet_is_always_given_full_batches(tiny_sdxl, tiny_backend, make_job, tmp_path, monkeypatch):
    # torch.compile(dynamic=False) compiles again for every new batch size: 107-115 s on an H100.
    # So a short batch (the run's last, or the few rows ready so far) is padded with copies of its
    # last job, and their images are dropped. Compiling itself takes a minute on this CPU, so the
    # backend is told it is compiled after loading: the padding depends only on that setting.
    backend = get_backend("sdxl", model=str(tiny_sdxl[0]), device="cpu", batch_size=4)
    backend.load()
    backend.compile = True
    sizes: list[int] = []
    real_generate = backend._generate

    def generate(batch, *args):
        sizes.append(len(batch))
        return real_generate(batch, *args)

    monkeypatch.setattr(backend, "_generate", generate)
    jobs = [make_job(i, f"a glass orchard {i}", seed=i, sample_idx=i, out_dir=tmp_path / "c") for i in range(5)]
    try:
        results = backend.render(jobs)
    finally:
        backend.close()
    assert sizes == [4, 4]
    assert [r.prompt_id for r in results] == [0, 1, 2, 3, 4] and all(r.error is None for r in results)
    assert sorted(Path(r.path) for r in results) == sorted((tmp_path / "c").rglob("*.png"))  # no extra files
    alone = tiny_backend.render([make_job(4, "a glass orchard 4", seed=4, sample_idx=4, out_dir=tmp_path / "a")])[0]
    assert np.abs(pixels(alone.path) - pixels(results[4].path)).max() <= 2  # its own picture, not a copy's
