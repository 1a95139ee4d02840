"""Continuous batching for the embedded model: answers in flight are decoded together.

A decoding step of llama.cpp costs less per token the more sequences it holds (the bundled model
on one core of a 2-core Xeon: 19-27 ms for one sequence, 75-83 ms for five; 14 and 46 ms on two
cores), so the five prompts of a sample, asked for at the same time by the runner, are decoded in
the same steps. :class:`BatchedLlama` owns one llama.cpp context with
``parallel`` sequences sharing one KV cache and a thread that runs it:

- a request waits until a sequence is free and the cache can hold its prompt and ``max_tokens``
  (reserved whole, so a decoding step never runs out of room), then joins the next step;
- each step decodes, in one ``llama_decode``, the last sampled token of every answer in progress and
  as much of the new prompts as fits in ``n_batch`` tokens; every answer has its own sampler chain
  (repetition penalty, grammar when asked, top-k 40, typical 1.0, top-p 0.95, min-p 0.05,
  temperature, seeded draw: llama-cpp-python's ``create_chat_completion`` defaults), so answers in
  the same step do not share any state but the model's weights;
- prompts share cached prefixes: a new prompt copies the longest prefix any sequence holds (the five
  prompts of a sample differ only near their end) instead of decoding it again, and a sequence keeps
  its tokens after it answers, for the next prompt that starts the same way;
- an answer ends at an end-of-turn token, at a stop string (the text is cut before it) or at
  ``max_tokens`` (``finish_reason`` ``"length"``), as in llama-cpp-python.

The numbers of one answer depend on which other answers share its steps (the order of
floating-point sums over the shared cache changes), so a seed gives the same answer every time only
with ``parallel=1``.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Done = Callable[[dict[str, Any] | None, BaseException | None], None]


class BatchError(RuntimeError):
    """llama.cpp could not decode a step, or the engine was closed; the request has no answer."""


@dataclass(eq=False)
class Request:
    """One chat answer to generate. ``done(result, error)`` is called from the engine's thread."""

    tokens: list[int]
    stop: list[str]
    max_tokens: int
    temperature: float
    seed: int
    grammar: Any
    done: Done
    cancelled: bool = False
    slot: int = -1
    sampler: Any = None
    fed: int = 0
    """Prompt tokens in the KV cache so far."""
    pending: int | None = None
    """The last sampled token, decoded in the next step."""
    out: list[int] = field(default_factory=list)
    text: bytes = b""
    grammar_sampler: Any = None

    @property
    def need(self) -> int:
        """KV cells reserved for this answer while it runs: its prompt and ``max_tokens``."""
        return len(self.tokens) + self.max_tokens


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class BatchedLlama:
    """Decode up to ``parallel`` answers of the loaded ``llm`` (a ``llama_cpp.Llama``) together.

    ``n_ctx`` KV cells are shared by all sequences; a single request may use all of them.
    ``submit`` is thread-safe; ``close`` fails what is still waiting and frees the context.
    """

    def __init__(self, llm: Any, *, parallel: int, n_ctx: int, n_threads: int, repeat_penalty: float,
                 n_batch: int = 512, model_name: str = "") -> None:
        import llama_cpp
        from llama_cpp import _internals as internals

        self._lib = llama_cpp
        self._internals = internals
        self._llm = llm
        self.parallel = max(1, int(parallel))
        self.n_batch = int(n_batch)
        self.repeat_penalty = float(repeat_penalty)
        self.model_name = model_name
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = int(n_ctx)
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = self.parallel
        params.kv_unified = True  # one cache: sequences share cached prefixes without copying
        params.n_threads = params.n_threads_batch = int(n_threads)
        self._ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._batch = internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.n_ctx = self._ctx.n_ctx()
        self._n_vocab = llm.n_vocab()
        self._slots: list[Request | None] = [None] * self.parallel
        self._cached: list[list[int]] = [[] for _ in range(self.parallel)]
        """The tokens each sequence holds in the KV cache, from position 0."""
        self._used = [0.0] * self.parallel
        self._inbox: queue.Queue[Request | None] = queue.Queue()
        self._waiting: deque[Request] = deque()
        self._closed = False
        self.steps = 0
        """Decoding steps run (``llama_decode`` calls)."""
        self.tokens_decoded = 0
        self.prefix_reused = 0
        """Prompt tokens taken from the cache instead of decoded."""
        self.most_in_step = 0
        """The most answers that were sampled from one step."""
        self._cur: Any = None
        self._cur_np: Any = None
        self._ids: Any = None
        self._thread = threading.Thread(target=self._run, name="m2i-llama-batch", daemon=True)
        self._thread.start()

    # -- the caller's side ---------------------------------------------------------------------

    def submit(self, req: Request) -> None:
        """Queue ``req``; its ``done`` is called once, with the result or the error."""
        if len(req.tokens) >= self.n_ctx:
            req.done(None, BatchError(f"Requested tokens ({len(req.tokens)}) exceed context window of {self.n_ctx}"))
            return
        req.max_tokens = max(1, min(int(req.max_tokens), self.n_ctx - len(req.tokens)))
        if self._closed:
            req.done(None, BatchError("the model was closed"))
            return
        self._inbox.put(req)

    def close(self) -> None:
        """Stop the thread (answers in progress get an error) and free the context."""
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
            self._thread.join()
            while not self._inbox.empty():  # submitted while closing
                late = self._inbox.get_nowait()
                if late is not None:
                    late.done(None, BatchError("the model was closed"))
            self._batch.close()
            self._ctx.close()

    # -- the engine's thread ---------------------------------------------------------------------

    def _active(self) -> list[Request]:
        return [r for r in self._slots if r is not None]

    def _run(self) -> None:
        while True:
            idle = not self._waiting and not self._active()
            items: list[Request | None] = []
            try:
                items.append(self._inbox.get(block=idle))
                while True:
                    items.append(self._inbox.get_nowait())
            except queue.Empty:
                pass
            if any(it is None for it in items):
                self._fail_all(BatchError("the model was closed"))
                return
            self._waiting.extend(it for it in items if it is not None)
            try:
                self._admit()
                if self._active():
                    self._step()
            except Exception as exc:  # noqa: BLE001 - every answer in progress gets it; the thread goes on
                self._fail_all(exc, waiting=False)

    def _fail_all(self, exc: BaseException, *, waiting: bool = True) -> None:
        for r in self._active():
            self._finish(r, error=exc)
        if waiting:
            while self._waiting:
                self._waiting.popleft().done(None, exc)
        self._ctx.kv_cache_clear()
        self._cached = [[] for _ in range(self.parallel)]

    def _admit(self) -> None:
        while self._waiting:
            req = self._waiting[0]
            if req.cancelled:
                self._waiting.popleft()
                continue
            free = [i for i, r in enumerate(self._slots) if r is None]
            active = self._active()
            if not free or (active and sum(r.need for r in active) + req.need > self.n_ctx):
                return
            # a prompt that starts like one still being decoded waits a step, then copies that prefix
            lcp = [_common_prefix(c, req.tokens) for c in self._cached]
            if any(r.fed < len(r.tokens) and _common_prefix(r.tokens, req.tokens) > max(lcp) + 16 for r in active):
                return
            self._waiting.popleft()
            self._place(req, free, lcp)

    def _place(self, req: Request, free: list[int], lcp: list[int]) -> None:
        """Give ``req`` a sequence, with the longest cached prefix of its prompt (``lcp[i]`` tokens of
        sequence ``i``'s) copied into it."""
        slot = max(free, key=lambda i: (lcp[i], -self._used[i]))
        donor = max(range(self.parallel), key=lambda i: (lcp[i], i == slot))
        keep = min(lcp[donor], len(req.tokens) - 1)  # the last prompt token is decoded again for its logits
        if donor == slot:
            self._forget(slot, keep)
        else:
            self._forget(slot, 0)
            if keep:
                self._lib.llama_memory_seq_cp(self._ctx.memory, donor, slot, 0, keep)
            self._cached[slot] = self._cached[donor][:keep]
        # idle sequences keep their tokens only while the cache holds them beside every reservation
        # (the least recently used go first, the donor last; its first ``keep`` cells are the new one's too)
        reserved = sum(r.need for r in self._active()) + req.need
        idle = sorted((i for i in free if i != slot), key=lambda i: (i == donor, self._used[i]))
        for i in idle:
            held = sum(len(self._cached[j]) - (keep if j == donor else 0) for j in idle if self._cached[j])
            if reserved + held <= self.n_ctx:
                break
            self._forget(i, 0)
        self.prefix_reused += keep
        req.slot, req.fed = slot, keep
        req.sampler = self._sampler(req)
        self._slots[slot] = req

    def _forget(self, slot: int, keep: int) -> None:
        """Drop what sequence ``slot`` holds from position ``keep`` on."""
        if len(self._cached[slot]) > keep:
            self._lib.llama_memory_seq_rm(self._ctx.memory, slot, keep, -1)
            del self._cached[slot][keep:]

    def _sampler(self, req: Request) -> Any:
        s = self._internals.LlamaSampler()
        s.add_penalties(n_vocab=self._n_vocab, penalty_last_n=64, penalty_repeat=self.repeat_penalty,
                        penalty_freq=0.0, penalty_present=0.0)
        if req.grammar is not None:
            req.grammar_sampler = self._internals.LlamaSampler()
            req.grammar_sampler.add_grammar(self._llm._model, req.grammar)
        if req.temperature <= 0.0:
            s.add_greedy()
        else:
            s.add_top_k(40)
            s.add_typical(1.0, 1)
            s.add_top_p(0.95, 1)
            s.add_min_p(0.05, 1)
            s.add_temp(float(req.temperature))
            s.add_dist(int(req.seed) & 0xFFFFFFFF)
        return s

    def _step(self) -> None:
        for r in self._active():
            if r.cancelled:
                self._finish(r)
        batch = self._batch.batch
        n = 0
        wants: list[tuple[Request, int]] = []
        placed: list[tuple[int, int]] = []
        pos = {r.slot: len(self._cached[r.slot]) for r in self._active()}

        def add(r: Request, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos[r.slot]
            pos[r.slot] += 1
            batch.seq_id[n][0] = r.slot
            batch.n_seq_id[n] = 1
            batch.logits[n] = logits
            placed.append((r.slot, token))
            if logits:
                wants.append((r, n))
            n += 1

        for r in self._active():
            if r.pending is not None:
                add(r, r.pending, True)
                r.pending = None
        for r in self._active():
            while r.fed < len(r.tokens) and n < self.n_batch:
                add(r, r.tokens[r.fed], r.fed == len(r.tokens) - 1)
                r.fed += 1
        if not n:
            return
        batch.n_tokens = n
        rc = self._lib.llama_decode(self._ctx.ctx, batch)
        if rc == 1:  # no room in the cache (it is left as it was): idle sequences give theirs up
            for i, r in enumerate(self._slots):
                if r is None:
                    self._forget(i, 0)
            rc = self._lib.llama_decode(self._ctx.ctx, batch)
        if rc != 0:
            raise BatchError(f"llama_decode returned {rc}" + (" (no room in the KV cache)" if rc == 1 else ""))
        self.steps += 1
        self.tokens_decoded += n
        self.most_in_step = max(self.most_in_step, len(wants))
        for slot, token in placed:
            self._cached[slot].append(token)
        for r, i in wants:
            self._take(r, self._sample(r, i))

    def _sample(self, r: Request, i: int) -> int:
        """Draw the next token of ``r`` from the logits of batch row ``i`` (and accept it).

        Under a grammar, the token is first drawn without it and kept when the grammar allows it;
        only a refused token makes the grammar filter the whole vocabulary (llama.cpp's own
        sampler does the same, ``common_sampler_sample``): filtering 49k tokens for every token
        took 12 ms, which every answer decoded in the same step waited for."""
        lib = self._lib
        if r.grammar_sampler is None:
            return int(lib.llama_sampler_sample(r.sampler.sampler, self._ctx.ctx, i))
        if self._cur is None:  # the candidates array, made on the first grammar token
            self._cur = (lib.llama_token_data * self._n_vocab)()
            self._cur_np = np.frombuffer(self._cur, dtype=np.dtype(
                [("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
            self._ids = np.arange(self._n_vocab, dtype=np.int32)
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(self._ctx.ctx, i), shape=(self._n_vocab,))

        def draw(first: Any | None) -> int:  # the samplers sort the array in place: filled anew each time
            self._cur_np["id"] = self._ids
            self._cur_np["logit"] = logits
            self._cur_np["p"] = 0.0
            cur = lib.llama_token_data_array(data=self._cur, size=self._n_vocab, selected=-1, sorted=False)
            if first is not None:
                lib.llama_sampler_apply(first.sampler, ctypes.byref(cur))
            lib.llama_sampler_apply(r.sampler.sampler, ctypes.byref(cur))
            return int(self._cur[cur.selected].id)

        token = draw(None)
        one = (lib.llama_token_data * 1)(lib.llama_token_data(token, 1.0, 0.0))
        single = lib.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
        lib.llama_sampler_apply(r.grammar_sampler.sampler, ctypes.byref(single))
        if not np.isfinite(one[0].logit):
            token = draw(r.grammar_sampler)
        lib.llama_sampler_accept(r.grammar_sampler.sampler, token)
        lib.llama_sampler_accept(r.sampler.sampler, token)
        return token

    def _take(self, r: Request, token: int) -> None:
        if self._lib.llama_vocab_is_eog(self._llm._model.vocab, token):
            self._finish(r, reason="stop")
            return
        r.out.append(token)
        r.text += self._llm.detokenize([token])
        text = r.text.decode("utf-8", errors="ignore")
        cuts = [text.find(s) for s in r.stop if s and s in text]
        if cuts:
            r.text = text[: min(cuts)].encode("utf-8")
            self._finish(r, reason="stop")
        elif len(r.out) >= r.max_tokens:
            self._finish(r, reason="length")
        else:
            r.pending = token

    def _finish(self, r: Request, *, reason: str = "stop", error: BaseException | None = None) -> None:
        self._slots[r.slot] = None
        self._used[r.slot] = time.monotonic()
        for sampler in (r.sampler, r.grammar_sampler):
            if sampler is not None:
                sampler.close()
        r.sampler = r.grammar_sampler = None
        if r.cancelled:  # nobody waits for it
            return
        if error is not None:
            r.done(None, error)
            return
        text = r.text.decode("utf-8", errors="ignore")
        r.done({
            "id": f"chatcmpl-{uuid.uuid4()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": reason}],
            "usage": {"prompt_tokens": len(r.tokens), "completion_tokens": len(r.out),
                      "total_tokens": len(r.tokens) + len(r.out)},
        }, None)
