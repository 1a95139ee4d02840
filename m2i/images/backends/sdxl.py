"""The ``sdxl`` backend: Stable Diffusion XL through diffusers.

Conventions
-----------
- One ``StableDiffusionXLPipeline`` per backend, loaded once and kept resident. Any SDXL-family
  diffusers folder or Hugging Face id works (base 1.0 by default; sdxl-turbo, Lightning, LCM and
  fine-tunes take their own step/guidance defaults from :func:`model_defaults`).
- Weights are read from the local Hugging Face cache or a local folder only (no download unless
  ``allow_download=True``): a missing model is one sentence with the ``hf download``
  command to run.
- Optional refiner as an *ensemble of experts*: the base denoises down to ``refiner_split``
  (``denoising_end``) and returns latents; the refiner (``StableDiffusionXLImg2ImgPipeline``,
  sharing the base's ``text_encoder_2`` and VAE) finishes from there (``denoising_start``).
- fp16 on CUDA/MPS, fp32 on CPU. The SDXL 1.0 VAE overflows in fp16; diffusers upcasts it to
  fp32 for decoding when its config says ``force_upcast`` (the stock VAE does), or pass an
  fp16-safe VAE (``vae="madebyollin/sdxl-vae-fp16-fix"``). Attention is PyTorch SDPA.
- Reproducibility: one ``torch.Generator`` per image, **on the CPU**, seeded with the job's seed,
  so the initial latents of an image depend only on its seed and size, not on its batch mates
  or the GPU model. Negative prompts are always passed as strings (``""`` when absent) so an
  image does not change with whether its batch mates have one. Same seed and settings on the
  same device give the same pixels.
- Jobs are grouped by (width, height, steps, guidance) and rendered ``batch_size`` at a time. On
  out-of-memory the batch is halved and retried, down to 1; a job that still does not fit fails
  with the reason. The reduced batch size is remembered per image size.
- Prompts are never silently cut: each prompt is counted with the pipeline's own CLIP tokenizers
  and ``truncated`` is set (with a note saying how many tokens were read) when it is longer than
  the text encoders read (77 tokens including start/end).
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from m2i.errors import BackendError, ConfigError
from m2i.images.backends.base import ImageBackend, failed, job_problem
from m2i.images.jobs import ImageJob, RenderedImage
from m2i.images.png import OutputUnwritable, check_writable, png_text, save_png

log = logging.getLogger(__name__)


class _TorchvisionFallbackNote(logging.Filter):
    """Drops transformers' "`CLIPImageProcessor` requires torchvision (not installed); falling back
    to `CLIPImageProcessorPil`": diffusers imports the image processors an SDXL pipeline names, m2i
    gives it no image, and the note reached the user's terminal twice a run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


_QUIET_FALLBACK = _TorchvisionFallbackNote()

DEFAULT_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
DEFAULT_REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"},
    ),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
"""Scheduler names accepted by ``scheduler=``; ``"model"`` keeps the checkpoint's own."""

Device = Literal["auto", "cuda", "mps", "cpu"]
DType = Literal["auto", "fp16", "bf16", "fp32"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class _Png:
    """What is written with one image: its PNG text chunks, the row's fields and the notes."""

    text: dict[str, str]
    fields: dict[str, Any]
    notes: list[str]


@dataclass(frozen=True)
class ModelDefaults:
    """Settings a model family works best with, used where a job leaves them ``None``."""

    steps: int
    guidance: float
    width: int
    height: int


def model_defaults(model: str) -> ModelDefaults:
    """Return the step/guidance/size defaults of an SDXL-family model, judged by its name.

    Examples
    --------
    >>> model_defaults("stabilityai/sdxl-turbo").steps
    1
    >>> model_defaults("stabilityai/stable-diffusion-xl-base-1.0").guidance
    7.0
    """
    name = str(model).lower()
    if "turbo" in name:
        return ModelDefaults(steps=1, guidance=0.0, width=512, height=512)
    if "lightning" in name:
        return ModelDefaults(steps=4, guidance=0.0, width=1024, height=1024)
    if "lcm" in name:
        return ModelDefaults(steps=4, guidance=1.0, width=1024, height=1024)
    return ModelDefaults(steps=30, guidance=7.0, width=1024, height=1024)


def refiner_model(refiner: str | bool | None) -> str | None:
    """The refiner id/folder a ``refiner`` setting means (``None``: no refiner).

    ``True`` and the strings ``true``/``yes``/``on``/``default`` mean
    ``stabilityai/stable-diffusion-xl-refiner-1.0``; ``False``, ``None``, ``""`` and
    ``false``/``no``/``off``/``none`` mean no refiner; any other string is an id or folder.
    """
    if refiner is None or refiner is False:
        return None
    if refiner is True:
        return DEFAULT_REFINER
    text = str(refiner).strip()
    if text.lower() in {"", "false", "no", "off", "none", "0"}:
        return None
    if text.lower() in {"true", "yes", "on", "default", "1"}:
        return DEFAULT_REFINER
    return text


def _local_folder(model: str) -> Path | None:
    path = Path(model).expanduser()
    if path.exists() or not _HUB_ID.match(model):
        return path
    return None


def weights_available(model: str = DEFAULT_MODEL, *, cache_dir: str | Path | None = None) -> bool:
    """Whether ``model`` can be loaded without a download.

    True for a local diffusers folder (with ``model_index.json``) and for a Hugging Face id whose
    ``model_index.json`` and UNet weights are in the local cache. Imports no torch.
    """
    folder = _local_folder(model)
    if folder is not None:
        return (folder / "model_index.json").is_file()
    from huggingface_hub import try_to_load_from_cache

    kw: dict[str, Any] = {"cache_dir": str(cache_dir)} if cache_dir is not None else {}
    index = try_to_load_from_cache(model, "model_index.json", **kw)
    if not isinstance(index, str):
        return False
    for name in (
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.bin",
    ):
        if isinstance(try_to_load_from_cache(model, name, **kw), str):
            return True
    return False


def _cached(ident: str, *, marker: str | None, cache_dir: str | Path | None) -> bool:
    if marker is None:
        return weights_available(ident, cache_dir=cache_dir)
    from huggingface_hub import try_to_load_from_cache

    kw: dict[str, Any] = {"cache_dir": str(cache_dir)} if cache_dir is not None else {}
    return isinstance(try_to_load_from_cache(ident, marker, **kw), str)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "unknown error").strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


def gpu_device() -> str | None:
    """``"cuda"`` or ``"mps"`` when torch sees one, else ``None``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return None


def resolve_device(device: str) -> str:
    """Turn ``auto``/``cuda``/``cuda:1``/``mps``/``cpu`` into a device torch can use.

    Raises
    ------
    BackendError
        If an explicit GPU was asked for and torch cannot see it.
    ConfigError
        If ``device`` is not one of the accepted names.
    """
    import torch

    dev = str(device or "auto").strip().lower()
    if dev == "auto":
        return gpu_device() or "cpu"
    if dev == "cpu":
        return "cpu"
    if dev == "cuda" or dev.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} was asked for but torch sees no CUDA GPU; "
                "use --device auto (or cpu), or install a CUDA build of torch."
            )
        return dev
    if dev == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise BackendError("device 'mps' was asked for but torch sees no Apple GPU; use --device auto.")
        return dev
    raise ConfigError(f"unknown device {device!r}; use auto, cuda, cuda:N, mps or cpu.")


def _torch_dtype(dtype: str, device: str) -> Any:
    import torch

    name = str(dtype or "auto").lower()
    if name == "auto":
        name = "fp32" if device == "cpu" else "fp16"
    table = {
        "fp16": torch.float16,
        "float16": torch.float16,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if name not in table:
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, fp16, bf16 or fp32.")
    return table[name]


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator running out of memory (CUDA, MPS or CPU)."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, (RuntimeError, MemoryError)):
        text = str(exc).lower()
        return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    return False


def _free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "empty_cache"):
            mps.empty_cache()


class SDXLBackend(ImageBackend):
    """Stable Diffusion XL through diffusers.

    Parameters
    ----------
    model : str
        Hugging Face id (read from the local cache) or a local diffusers folder.
    refiner : str, bool or None
        Refiner id/folder; ``True`` means ``stabilityai/stable-diffusion-xl-refiner-1.0``.
    refiner_split : float in (0, 1)
        Fraction of the denoising the base does before the refiner takes over.
    device : {"auto", "cuda", "cuda:N", "mps", "cpu"}
        ``auto`` takes CUDA, then MPS, then the CPU.
    dtype : {"auto", "fp16", "bf16", "fp32"}
        ``auto`` is fp16 on a GPU and fp32 on the CPU.
    scheduler : str
        One of :data:`SCHEDULERS` (``euler`` by default) or ``"model"`` for the checkpoint's own.
    batch_size : int >= 1
        Images per pipeline call (halved automatically on out-of-memory).
    compile : bool or str
        ``torch.compile`` the UNet(s); a string is the compile mode (``True`` means
        ``"default"``). It compiles on the first batch, about two minutes on an H100 (768x768,
        batch 4: 0.89 -> 0.66 s per image); a shorter batch is then padded to the full size
        rather than compiled for again. ``"max-autotune"`` had not finished compiling one batch
        size after four minutes there.
    cpu_offload : bool
        Keep weights on the CPU and move each model to the GPU while it runs (CUDA only); slower,
        for GPUs with under ~10 GB.
    vae_slicing, vae_tiling : bool
        Decode a batch one image at a time / in tiles (less memory at large sizes).
    vae : str or None
        A separate AutoencoderKL to use (e.g. ``madebyollin/sdxl-vae-fp16-fix``, fp16-safe).
    cache_dir : str or None
        Hugging Face cache folder (default: the usual ``HF_HUB_CACHE``).
    allow_download : bool
        Let diffusers download missing weights (off: a missing model is an error with the fix).
    progress : bool
        Show diffusers' per-step progress bars.
    width, height, steps, guidance : int, int, int, float or None
        Defaults for jobs that leave these ``None`` (``None`` here: :func:`model_defaults`).
    """

    name = "sdxl"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        refiner: str | bool | None = None,
        refiner_split: float = 0.8,
        device: str = "auto",
        dtype: str = "auto",
        scheduler: str = "euler",
        batch_size: int = 4,
        compile: bool | str = False,
        cpu_offload: bool = False,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        vae: str | None = None,
        cache_dir: str | Path | None = None,
        allow_download: bool = False,
        progress: bool = False,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> None:
        if not model or not str(model).strip():
            raise ConfigError(
                "the SDXL model is empty; pass a Hugging Face id or a local folder with --model."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        if not 0.0 < float(refiner_split) < 1.0:
            raise ConfigError(f"refiner_split must be between 0 and 1, got {refiner_split!r}; 0.8 is usual.")
        if scheduler not in SCHEDULERS and scheduler != "model":
            raise ConfigError(
                f"unknown scheduler {scheduler!r}; use one of {', '.join(sorted(SCHEDULERS))} or 'model'."
            )
        folder = _local_folder(str(model))
        self.model = str(folder.resolve()) if folder is not None and folder.exists() else str(model)
        self.refiner_model = refiner_model(refiner)
        self.refiner_split = float(refiner_split)
        self.requested_device = str(device)
        self.device = str(device)
        self.dtype_name = str(dtype)
        self.scheduler_name = scheduler
        self.batch_size = batch_size
        self.compile = compile
        self.cpu_offload = bool(cpu_offload)
        self.vae_slicing = bool(vae_slicing)
        self.vae_tiling = bool(vae_tiling)
        self.vae_model = vae
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.allow_download = bool(allow_download)
        self.progress = bool(progress)
        overrides: dict[str, Any] = {}
        for key, value in (("width", width), ("height", height), ("steps", steps)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
            if key != "steps" and value % 8:
                raise ConfigError(f"{key} {value} is not a multiple of 8; use e.g. 768 or 1024.")
            overrides[key] = value
        if guidance is not None:
            if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or guidance < 0:
                raise ConfigError(f"guidance must be a number >= 0, got {guidance!r}.")
            overrides["guidance"] = float(guidance)
        self.defaults = replace(model_defaults(self.model), **overrides)
        self.pipeline: Any = None
        self.refiner_pipeline: Any = None
        self._max_batch: dict[tuple[int, int], int] = {}
        self._lock = threading.RLock()  # held while generating; PNGs are written outside it
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pipeline(
        cls, pipeline: Any, *, refiner_pipeline: Any = None, model: str, **settings: Any
    ) -> SDXLBackend:
        """Wrap an already built ``StableDiffusionXLPipeline`` (e.g. built in memory by a benchmark).

        The pipeline goes through the same device, dtype, scheduler, attention, memory and compile
        set-up as one loaded from disk.
        """
        backend = cls(model=model, **settings)
        with backend._lock:
            backend.device = resolve_device(backend.requested_device)
            dtype = _torch_dtype(backend.dtype_name, backend.device)
            backend.pipeline = pipeline.to(dtype=dtype)
            if refiner_pipeline is not None:
                backend.refiner_pipeline = refiner_pipeline.to(dtype=dtype)
                backend.refiner_model = backend.refiner_model or "in-memory refiner"
            backend._configure()
        return backend

    def load(self) -> None:
        """Load the pipeline (and refiner) onto the device; idempotent.

        Raises
        ------
        BackendError
            If the weights are not available locally (with the ``hf download``
            command to run), a GPU was asked for but is missing, or loading fails.
        """
        with self._lock:
            if self.pipeline is not None:
                return
            # before importing diffusers (seconds, and warnings): a missing GPU is one sentence at once
            self.device = resolve_device(self.requested_device)
            logging.getLogger("transformers.utils.import_utils").addFilter(_QUIET_FALLBACK)
            from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

            if not self.progress:  # the loading bars too: under `m2i tui --run` they drew over the dashboard
                import diffusers.utils.logging
                import transformers.utils.logging

                diffusers.utils.logging.disable_progress_bar()
                transformers.utils.logging.disable_progress_bar()

            dtype = _torch_dtype(self.dtype_name, self.device)
            t0 = time.perf_counter()
            extra: dict[str, Any] = {}
            if self.vae_model:
                extra["vae"] = self._load(AutoencoderKL, self.vae_model, dtype, what="VAE")
            pipe = self._load(StableDiffusionXLPipeline, self.model, dtype, what="SDXL model", **extra)
            refiner = None
            if self.refiner_model:
                refiner = self._load(
                    StableDiffusionXLImg2ImgPipeline,
                    self.refiner_model,
                    dtype,
                    what="SDXL refiner",
                    text_encoder_2=pipe.text_encoder_2,
                    vae=pipe.vae,
                )
            self.pipeline = pipe
            self.refiner_pipeline = refiner
            try:
                self._configure()
            except Exception:
                self.pipeline = self.refiner_pipeline = None
                raise
            log.info(
                "loaded %s%s on %s (%s) in %.1f s",
                self.model,
                f" + refiner {self.refiner_model}" if refiner is not None else "",
                self.device,
                str(dtype).replace("torch.", ""),
                time.perf_counter() - t0,
            )

    def _load(self, cls: Any, ident: str, dtype: Any, *, what: str, **kwargs: Any) -> Any:
        import torch

        folder = _local_folder(ident)
        if folder is not None:
            if not folder.exists():
                raise BackendError(
                    f"{what} folder {ident} does not exist; pass a folder written by diffusers' "
                    f"save_pretrained or `hf download`, or an id such as {DEFAULT_MODEL}."
                )
            marker = "config.json" if cls.__name__ == "AutoencoderKL" else "model_index.json"
            if not (folder / marker).is_file():
                raise BackendError(
                    f"{ident} is not a diffusers {what} folder (no {marker}); point at the folder that "
                    "`hf download` or save_pretrained wrote."
                )
            source = str(folder)
        else:
            source = ident
        variants: list[str | None] = [None]
        if dtype == torch.float16 and folder is None:
            variants = ["fp16", None]
        last: Exception | None = None
        for variant in variants:
            try:
                with warnings.catch_warnings():
                    # diffusers >= 0.36 renamed torch_dtype to dtype; torch_dtype works on every version
                    warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                    return cls.from_pretrained(
                        source,
                        torch_dtype=dtype,
                        variant=variant,
                        local_files_only=not self.allow_download,
                        cache_dir=self.cache_dir,
                        **kwargs,
                    )
            except (OSError, ValueError) as exc:
                last = exc
                log.debug("loading %s (variant %s) failed: %s", source, variant, exc)
        if folder is None and not _cached(
            ident, marker="config.json" if cls.__name__ == "AutoencoderKL" else None, cache_dir=self.cache_dir
        ):
            raise BackendError(
                f"{what} {ident!r} is not in the local Hugging Face cache; run "
                f"`hf download {ident}` on this machine, or pass a local folder."
            ) from last
        raise BackendError(
            f"cannot load {what} from {ident} ({_first_line(last)}); check that it is a complete "
            f"SDXL-family download (run `hf download {ident}` again to repair it)."
        ) from last

    def _configure(self) -> None:
        """Scheduler, attention, memory options, device placement and compile."""
        import diffusers
        import torch

        pipes = [p for p in (self.pipeline, self.refiner_pipeline) if p is not None]
        for pipe in pipes:
            if self.scheduler_name != "model":
                cls_name, kw = SCHEDULERS[self.scheduler_name]
                sched_cls = getattr(diffusers, cls_name)
                pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **kw)
            try:
                from diffusers.models.attention_processor import AttnProcessor2_0

                pipe.unet.set_attn_processor(AttnProcessor2_0())
            except (ImportError, AttributeError, ValueError) as exc:  # pragma: no cover - old diffusers
                log.debug("SDPA attention not set: %s", exc)
            pipe.set_progress_bar_config(disable=not self.progress)
        vae = self.pipeline.vae
        if (
            self.vae_model is not None
            and hasattr(vae, "config")
            and getattr(vae.config, "force_upcast", False)
        ):
            # An explicitly chosen VAE is assumed fp16-safe (that is why one picks it).
            vae.register_to_config(force_upcast=False)
        if self.vae_slicing:
            vae.enable_slicing()
        if self.vae_tiling:
            vae.enable_tiling()
        offload = self.cpu_offload and self.device.startswith("cuda")
        if self.cpu_offload and not offload:
            log.warning("cpu_offload needs a CUDA device; ignored on %s", self.device)
        for pipe in pipes:
            if offload:
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe.to(self.device)
        if self.compile:
            mode = "default" if self.compile is True else str(self.compile)
            for pipe in pipes:
                pipe.unet.to(memory_format=torch.channels_last)
                # static shapes: each batch size compiles once, to kernels specialised for it
                pipe.unet = torch.compile(pipe.unet, mode=mode, fullgraph=True, dynamic=False)

    # ------------------------------------------------------------------ rendering

    @property
    def scheduler(self) -> str:
        """The scheduler name recorded with each image."""
        if self.scheduler_name != "model":
            return self.scheduler_name
        if self.pipeline is not None:
            return type(self.pipeline.scheduler).__name__
        return "model"

    def prompt_tokens(self, text: str) -> tuple[int, int]:
        """Return ``(tokens, limit)``: the longest tokenisation of ``text`` among the pipeline's
        CLIP tokenizers (start/end tokens included) and the most they read."""
        counts: list[tuple[int, int]] = []
        for pipe in (self.pipeline, self.refiner_pipeline):
            if pipe is None:
                continue
            for tok in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)):
                if tok is None:
                    continue
                ids = tok(text, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
                counts.append((len(ids), int(tok.model_max_length)))
        if not counts:
            return 0, 0
        n = max(c[0] for c in counts)
        limit = min(c[1] for c in counts)
        return n, limit

    def render(self, jobs: list[ImageJob]) -> list[RenderedImage]:
        """Render ``jobs`` in batches and write their PNGs.

        Parameters
        ----------
        jobs : list of ImageJob
            Jobs with the same size/steps/guidance are batched together.

        Returns
        -------
        list of RenderedImage
            One per job, in order. Failures (empty prompt, bad size, unwritable folder,
            out-of-memory at batch size 1, a pipeline error) are results with ``error`` set.

        Raises
        ------
        BackendError
            Only if the model cannot be loaded at all.
        """
        with self._lock:
            self.load()
            results: list[RenderedImage | Future[RenderedImage] | None] = [None] * len(jobs)
            groups: dict[tuple[int, int, int, float], list[int]] = {}
            for i, job in enumerate(jobs):
                problem = job_problem(job) or check_writable(job.out_path)
                if problem is not None:
                    results[i] = failed(
                        job,
                        problem,
                        backend=self,
                        scheduler=self.scheduler,
                        refiner=self.refiner_pipeline is not None,
                    )
                    continue
                key = (
                    job.width or self.defaults.width,
                    job.height or self.defaults.height,
                    job.steps or self.defaults.steps,
                    float(self.defaults.guidance if job.guidance is None else job.guidance),
                )
                groups.setdefault(key, []).append(i)
            for key, idxs in groups.items():
                for i, res in self._render_group(jobs, idxs, key):
                    results[i] = res
        # The GPU is free again while the last PNGs are written: a render() call made meanwhile
        # (the runner keeps two batches in flight) generates during this wait.
        return [r.result() if isinstance(r, Future) else r for r in results if r is not None]

    def _render_group(
        self, jobs: list[ImageJob], idxs: list[int], key: tuple[int, int, int, float]
    ) -> list[tuple[int, RenderedImage | Future[RenderedImage]]]:
        """Generate ``idxs`` in batches; each batch's PNGs are written on the writer thread while
        the next batch generates, so the results of rendered images are futures."""
        width, height, steps, guidance = key
        size = max(1, min(self.batch_size, self._max_batch.get((width, height), self.batch_size)))
        out: list[tuple[int, RenderedImage | Future[RenderedImage]]] = []
        pos = 0
        reduced_note: str | None = None
        while pos < len(idxs):
            part = idxs[pos : pos + size]
            batch = [jobs[i] for i in part]
            if self.compile:
                # A compiled UNet compiles again for every new batch size (about 2 minutes on an
                # H100): a short batch (the run's last, or rows still arriving) is padded with
                # copies of its last job, whose images are dropped.
                batch += [batch[-1]] * (size - len(batch))
            t0 = time.perf_counter()
            try:
                images = self._generate(batch, width, height, steps, guidance)[: len(part)]
            except Exception as exc:  # noqa: BLE001 - every failure becomes a row error
                _free_memory(self.device)
                self._restore_vae_dtype()
                if is_out_of_memory(exc):
                    if len(batch) > 1:
                        size = max(1, len(batch) // 2)
                        self._max_batch[(width, height)] = size
                        reduced_note = f"out of memory at batch {len(batch)}; batch size reduced to {size}"
                        log.warning("%s at %dx%d", reduced_note, width, height)
                        continue
                    msg = (
                        f"out of memory rendering one {width}x{height} image on {self.device}; "
                        "lower --width/--height, use --cpu-offload or free the GPU, then requeue."
                    )
                elif len(part) > 1:
                    # find the job that breaks the batch: the others still render
                    log.warning(
                        "SDXL failed on a batch of %d (%s); rendering them one by one", len(part), exc
                    )
                    for i in part:
                        out.extend(self._render_group(jobs, [i], key))
                    pos += len(part)
                    continue
                else:
                    log.exception("SDXL failed on prompt %s", jobs[part[0]].prompt_id)
                    msg = f"SDXL failed: {type(exc).__name__}: {exc}".strip()
                for i in part:
                    out.append(
                        (
                            i,
                            failed(
                                jobs[i],
                                msg,
                                backend=self,
                                width=width,
                                height=height,
                                steps=steps,
                                guidance=guidance,
                                scheduler=self.scheduler,
                                refiner=self.refiner_pipeline is not None,
                            ),
                        )
                    )
                pos += len(part)
                continue
            per_image = (time.perf_counter() - t0) / len(part)
            for i, image in zip(part, images):
                png = self._describe(jobs[i], width, height, steps, guidance, reduced_note)
                out.append((i, self._writer().submit(self._save, jobs[i], image, png, per_image)))
            pos += len(part)
        return out

    def _restore_vae_dtype(self) -> None:
        """Put the VAE back in the UNet's dtype after a failed call.

        diffusers decodes with a ``force_upcast`` VAE by casting it to fp32, decoding, and casting
        it back. An out-of-memory inside the decode (seen on an H100) skipped the cast back, and
        every later call then failed with "Input type (c10::Half) and bias type (float)".
        """
        for pipe in (self.pipeline, self.refiner_pipeline):
            vae, unet = getattr(pipe, "vae", None), getattr(pipe, "unet", None)
            if vae is None or unet is None:
                continue
            dtype = unet.dtype
            if any(p.dtype != dtype for p in vae.parameters()):
                log.info("VAE cast back to %s after a failed call", dtype)
                vae.to(dtype=dtype)

    def _writer(self) -> ThreadPoolExecutor:
        """The thread that encodes and writes PNGs (Pillow's encoder releases the GIL)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="m2i-png")
        return self._pool

    def _generate(
        self, batch: list[ImageJob], width: int, height: int, steps: int, guidance: float
    ) -> list[Any]:
        import torch

        prompts = [j.prompt for j in batch]
        negatives = [j.negative_prompt or "" for j in batch]
        generators = [torch.Generator("cpu").manual_seed(int(j.seed)) for j in batch]
        common: dict[str, Any] = {
            "prompt": prompts,
            "negative_prompt": negatives,
            "num_inference_steps": steps,
            "guidance_scale": guidance,
            "generator": generators,
        }
        with torch.inference_mode(), warnings.catch_warnings():
            # diffusers' own fp32 decode of a force_upcast VAE calls its deprecated upcast_vae(),
            # which tells the user to change code that is not theirs, once per run
            warnings.filterwarnings("ignore", message=".*upcast_vae.*", category=FutureWarning)
            if self.refiner_pipeline is None:
                return list(self.pipeline(**common, width=width, height=height, output_type="pil").images)
            latents = self.pipeline(
                **common, width=width, height=height, denoising_end=self.refiner_split, output_type="latent"
            ).images
            return list(
                self.refiner_pipeline(
                    **common, image=latents, denoising_start=self.refiner_split, output_type="pil"
                ).images
            )

    def _describe(
        self, job: ImageJob, width: int, height: int, steps: int, guidance: float, reduced_note: str | None
    ) -> _Png:
        """What is written with ``job``'s image (read from the pipeline, so under the lock)."""
        notes: list[str] = [reduced_note] if reduced_note else []
        truncated = False
        for label, text in (("image_prompt", job.prompt), ("negative_prompt", job.negative_prompt or "")):
            n, limit = self.prompt_tokens(text)
            if limit and n > limit:
                truncated = True
                note = (
                    f"{label} of prompt {job.prompt_id} is {n} CLIP tokens; the text encoders read the "
                    f"first {limit} and dropped the rest"
                )
                notes.append(note)
                log.warning("%s", note)
        refiner = self.refiner_pipeline is not None
        extra: dict[str, Any] = {
            "prompt_id": job.prompt_id,
            "sample_idx": job.sample_idx,
            "slot": job.slot,
            "refiner": self.refiner_model if refiner else "",
            "refiner_split": self.refiner_split if refiner else "",
            "device": self.device,
            "dtype": str(getattr(self.pipeline, "dtype", "")).replace("torch.", ""),
            "truncated": truncated,
        }
        if job.title:
            extra["title"] = job.title
        text = png_text(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            model=self.model,
            scheduler=self.scheduler,
            backend=self.name,
            extra=extra,
        )
        fields: dict[str, Any] = {
            "width": width,
            "height": height,
            "steps": steps,
            "guidance": guidance,
            "scheduler": self.scheduler,
            "refiner": refiner,
            "truncated": truncated,
        }
        return _Png(text=text, fields=fields, notes=notes)

    def _save(self, job: ImageJob, image: Any, png: _Png, seconds: float) -> RenderedImage:
        """Write one image (on the writer thread); ``seconds`` is its share of the generation."""
        t0 = time.perf_counter()
        try:
            path = save_png(image, job.out_path, text=png.text)
        except OutputUnwritable:
            raise  # no image can be written: the stage stops, the rows stay to do
        except BackendError as exc:
            return failed(job, str(exc), backend=self, notes=png.notes, **png.fields)
        return RenderedImage(
            prompt_id=job.prompt_id,
            path=str(path),
            seed=job.seed,
            backend=self.name,
            model=self.model,
            device=self.device,
            seconds=round(seconds + time.perf_counter() - t0, 4),
            notes=png.notes,
            **png.fields,
        )

    def describe(self) -> dict[str, Any]:
        """Backend, model, device, dtype, refiner, scheduler and batch size, for logs and the dashboard."""
        dtype = getattr(self.pipeline, "dtype", None) if self.pipeline is not None else None
        return {
            **super().describe(),
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else self.dtype_name,
            "refiner": self.refiner_model,
            "scheduler": self.scheduler,
            "batch_size": self.batch_size,
            "compile": self.compile,
        }

    def close(self) -> None:
        """Drop the pipelines and free GPU memory; :meth:`load` can be called again."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self.pipeline = None
            self.refiner_pipeline = None
            _free_memory(self.device)
