"""Settings: defaults < ``m2i.toml`` < ``M2I_*`` environment < command-line flags.

One flat :class:`Settings` model. ``m2i.toml`` (in the working folder, or ``--config PATH`` /
``M2I_CONFIG``) holds the same names, optionally under a ``[m2i]`` table. Environment variables
are the upper-cased names with an ``M2I_`` prefix (``M2I_LLM=ollama``, ``M2I_SAMPLES=10``). API
keys are never settings: providers read them from their own environment variables, so they
cannot reach the database, logs or exports.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from m2i.errors import ConfigError
from m2i.textfile import not_utf8, text_of

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")


_DEVICE = re.compile(r"(?i)auto|cpu|mps|cuda(?::\d+)?")
"""The device names the render stage knows (``m2i.images.backends.sdxl.resolve_device``)."""


def redact_url(text: str | None) -> str | None:
    """Every password in a URL of ``text`` (``http://user:KEY@host``) as ``***``: for messages and records."""
    return _URL_PASSWORD.sub(r"\1***@", text) if text else text


def url_has_password(url: str | None) -> bool:
    """Whether ``url`` carries a password (``***`` included: one :func:`redact_url` left out)."""
    return bool(url and _URL_PASSWORD.search(url))


ENV_PREFIX = "M2I_"


class ModeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["convergent", "divergent"]
    count: int = Field(ge=0, le=20)
    temperature: float = Field(ge=0.0, le=2.0)


class Settings(BaseModel):
    """Everything a run can be told. Run-level values are stored in ``run.config``."""

    model_config = ConfigDict(extra="forbid")

    db: str = "m2i.db"
    run_name: str | None = None
    dataset: str | Annotated[list[str], Field(min_length=1)] = "demo"
    """A .npy file, an audio file, a folder or "demo"; or several of them, read one after another."""
    samples: int | None = Field(default=None, ge=1)
    clip_s: float = Field(default=10.0, gt=0)
    hop_s: float = Field(default=10.0, gt=0)
    npy_sr: int | None = Field(default=None, ge=1000, le=384000)
    out_dir: str = "m2i-output"
    seed: int = 0

    # prompts
    llm: str = "local"
    model: str | None = None
    base_url: str | None = None
    convergent: int = Field(default=3, ge=0, le=20)
    divergent: int = Field(default=2, ge=0, le=20)
    convergent_temperature: float = Field(default=0.4, ge=0, le=2)
    divergent_temperature: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=16)  # None: the provider's own default
    mel_summary: bool = False
    batch: bool = False
    prompt_settings: dict[str, Any] = Field(default_factory=dict)  # template options, see docs/prompts.md

    # images
    images: str = "auto"
    image_model: str | None = None
    # SDXL's latents are an eighth of the picture: checked here, not after hours of prompts were paid for
    width: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    steps: int | None = Field(default=None, ge=1, le=500)
    guidance: float | None = Field(default=None, ge=0)
    refiner: str | None = None
    device: str = "auto"
    devices: str | None = None  # this machine's GPUs for the render stage: "cuda:0,cuda:1" or "all"
    batch_size: int = Field(default=1, ge=1, le=64)
    limit: int | None = Field(default=None, ge=0)
    image_options: dict[str, Any] = Field(default_factory=dict)  # scheduler, compile, cpu_offload, ...

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not _DEVICE.fullmatch(v.strip()):
            raise ValueError("Input should be auto, cuda, cuda:N, mps or cpu")
        return v

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, v: str | None) -> str | None:
        items = [d.strip() for d in (v or "").split(",") if d.strip()]
        if v is None or items == ["all"]:
            return v
        if not items or not all(_DEVICE.fullmatch(d) and d.lower() != "auto" for d in items):
            raise ValueError("Input should be all, or devices such as cuda:0,cuda:1")
        return v

    # runner
    stages: list[str] = Field(default_factory=lambda: ["analyze", "generate", "score", "render"])
    max_attempts: int = Field(default=3, ge=1, le=100)
    lease_s: float = Field(default=120.0, gt=1)
    llm_outage_s: float = Field(default=900.0, gt=0)  # this machine's wait for an LLM provider that answers nothing
    analyze_workers: int | None = Field(default=None, ge=1)
    generate_concurrency: int | None = Field(default=None, ge=1)

    def modes(self) -> list[dict[str, Any]]:
        return [
            {"mode": "convergent", "count": self.convergent, "temperature": self.convergent_temperature},
            {"mode": "divergent", "count": self.divergent, "temperature": self.divergent_temperature},
        ]

    def beside(self, db: str | os.PathLike[str] | None) -> Settings:
        """These settings, with the output folder named after the database ``db`` when none was
        chosen (``--out``, ``M2I_OUT_DIR``, m2i.toml): ``m2i.db`` writes to ``m2i-output/``,
        ``runs/claude.db`` to ``runs/claude-output/``, so two databases in one folder never write
        over each other's images, report and gallery. A server database keeps ``m2i-output``."""
        if "out_dir" in self.model_fields_set or db is None or "://" in str(db):
            return self
        path = Path(db)
        return self.model_copy(update={"out_dir": str(path.with_name(f"{path.stem}-output"))}) if path.stem else self

    def run_config(self) -> dict[str, Any]:
        """What a run records about itself (no paths of the invoking shell, no secrets)."""
        keys = (
            "dataset", "samples", "seed", "llm", "model", "base_url", "max_tokens", "mel_summary", "batch",
            "prompt_settings",
            "images", "image_model", "width", "height", "steps", "guidance", "refiner", "device",
            "batch_size", "limit", "max_attempts", "out_dir", "clip_s", "hop_s", "npy_sr", "image_options",
        )
        cfg = {k: getattr(self, k) for k in keys}
        cfg["base_url"] = redact_url(cfg["base_url"])  # a password in the URL is a secret
        cfg["modes"] = self.modes()
        return cfg


RUN_KEYS = set(Settings().run_config()) - {"modes"}



def _coerce_env(name: str, raw: str) -> Any:
    field = Settings.model_fields[name]
    ann = str(field.annotation)
    if name == "stages":
        return [s.strip() for s in raw.split(",") if s.strip()]
    if "bool" in ann:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return raw


CLI_FLAGS = {"run_name": "--run", "hop_s": "--hop", "out_dir": "--out", "npy_sr": "--sr"}
"""Settings whose command-line flag is not ``--`` + the name with dashes (``samples`` is ``--samples``)."""


def cli_flag(name: str) -> str:
    """The ``m2i`` flag that sets a setting: ``cli_flag("samples") == "--samples"``, ``cli_flag("hop_s") == "--hop"``."""
    return CLI_FLAGS.get(name, "--" + name.replace("_", "-"))


def _invalid(err: dict[str, Any], origin: dict[str, str]) -> str:
    """One sentence for a pydantic error, naming the value as the user wrote it (flag, variable or file)."""
    name, *inner = err["loc"] or ("?",)
    where = origin.get(str(name), f"setting {name}")
    if inner:
        where += " (" + ".".join(str(x) for x in inner) + ")"
    msg = str(err["msg"]).removeprefix("Value error, ")  # a validator's own sentence
    text = f"{where} should be {msg[len('Input should be '):]}" if msg.startswith("Input should be ") else f"Invalid {where}: {msg}"
    return f"{text} (got {err.get('input')!r})."


def load_settings(
    flags: dict[str, Any] | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    flag_names: dict[str, str] | None = None,
) -> Settings:
    """Merge the four layers; ``flags`` holds only options the user actually gave (None = not given).

    ``flag_names`` says how a caller's user wrote each flag (``{"samples": "--samples"}``; the CLI
    passes :func:`cli_flag` of every flag), so an error names it so; without it (the Python API)
    a bad flag value is named as ``setting samples``.

    Raises
    ------
    ConfigError
        A bad value, in one sentence naming where it came from: ``--samples should be greater than
        or equal to 1 (got 0).``, or ``M2I_SAMPLES ...``, or ``samples in m2i.toml ...``.
    """
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}  # setting -> how the user wrote the value that won

    path = Path(config_path or env.get("M2I_CONFIG") or "m2i.toml")
    if path.exists():
        try:
            data = tomllib.loads(text_of(path))
        except UnicodeDecodeError as exc:
            raise ConfigError(not_utf8(path, exc)) from exc
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it.") from exc
        data = data.get("m2i", data)
        unknown = set(data) - set(Settings.model_fields)
        if unknown:
            import difflib

            named = [f"{k} (did you mean {near[0]}?)" if (near := difflib.get_close_matches(k, list(Settings.model_fields), 1))
                     else k for k in sorted(unknown)]
            raise ConfigError(f"{path} has unknown setting(s): {', '.join(named)}.")
        merged.update(data)
        origin.update({k: f"{k} in {path}" for k in data})
    elif config_path:
        raise ConfigError(f"The config file {path} does not exist.")

    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env and env[key] != "":
            merged[name] = _coerce_env(name, env[key])
            origin[name] = key

    for name, value in (flags or {}).items():
        if value is not None:
            merged[name] = value
            origin[name] = (flag_names or {}).get(name, f"setting {name}")
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_invalid(exc.errors()[0], origin)) from exc
