"""Count and cut text in CLIP tokens, the unit SDXL's text encoders read.

SDXL's two CLIP text encoders read 77 positions: a start token, at most 75 text tokens and an end
token. Anything past that is silently dropped, so an ``image_prompt`` must fit in 75 tokens.

The tokenizer here is CLIP's byte-level BPE (OpenAI CLIP ``simple_tokenizer``), built from the
``bpe_simple_vocab_16e6.txt.gz`` merges file vendored next to this module. The file is copied
from ``open_clip_torch`` 3.3.0 (MIT licence, see ``LICENSE.open_clip.txt``); it is the same
vocabulary as the ``tokenizer/`` of the SDXL checkpoints, so counts agree with what the pipeline
truncates. Nothing is downloaded and no heavy package is imported. Text is cleaned like CLIP does
(HTML entities unescaped, whitespace collapsed, lower-cased); ``ftfy`` mojibake repair is skipped.
"""

from __future__ import annotations

import functools
import gzip
import html
from importlib import resources

__all__ = ["CLIP_TEXT_TOKENS", "clip_tokenize", "count_clip_tokens", "fit_clip_tokens"]

CLIP_TEXT_TOKENS = 75
"""Text tokens SDXL reads (77 positions minus start and end)."""

_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class _ClipBPE:
    def __init__(self) -> None:
        raw = resources.files("m2i.prompts").joinpath(_VOCAB_FILE).read_bytes()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        self.byte_encoder = _bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab.extend("".join(m) for m in merges)
        vocab.extend(["<|startoftext|>", "<|endoftext|>"])
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.cache: dict[str, list[str]] = {}
        try:
            import regex  # small C extension (a transformers dependency); CLIP's own pattern

            self.pat = regex.compile(
                r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
            )
        except ImportError:  # pragma: no cover - same classes with the stdlib, minus rare numerics
            import re

            self.pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+""", re.IGNORECASE)

    def bpe(self, token: str) -> list[str]:
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        if len(self.cache) < 50_000:
            self.cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        text = " ".join(html.unescape(html.unescape(text)).split()).lower()
        ids: list[int] = []
        for piece in self.pat.findall(text):
            token = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token))
        return ids


@functools.lru_cache(maxsize=1)
def _tokenizer() -> _ClipBPE:
    return _ClipBPE()


def clip_tokenize(text: str) -> list[int]:
    """Return the CLIP BPE token ids of ``text`` (without start and end tokens).

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    list[int]
        Token ids in CLIP's 49,408-entry vocabulary.
    """
    return _tokenizer().encode(text)


def count_clip_tokens(text: str) -> int:
    """Number of CLIP text tokens in ``text`` (start and end tokens not counted).

    Examples
    --------
    >>> count_clip_tokens("a red fox in the snow")
    6
    """
    return len(clip_tokenize(text or ""))


def fit_clip_tokens(text: str, limit: int = CLIP_TEXT_TOKENS) -> str:
    """Cut ``text`` at a word boundary so that it holds at most ``limit`` CLIP tokens.

    Parameters
    ----------
    text : str
        The prompt to fit.
    limit : int > 0
        Token budget; 75 is what SDXL reads.

    Returns
    -------
    str
        ``text`` unchanged (whitespace collapsed) when it fits, otherwise its longest word prefix
        that fits, with trailing commas and connecting punctuation removed.

    Raises
    ------
    ValueError
        If ``limit`` is not positive.
    """
    if limit <= 0:
        raise ValueError(f"limit must be a positive number of tokens, got {limit!r}")
    words = (text or "").split()
    joined = " ".join(words)
    if count_clip_tokens(joined) <= limit:
        return joined
    lo, hi = 0, len(words)  # longest prefix of lo words fits; hi words do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_clip_tokens(" ".join(words[:mid])) <= limit:
            lo = mid
        else:
            hi = mid
    out = " ".join(words[:lo]).rstrip(" ,;:-–—&")
    return out
