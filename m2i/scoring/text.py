"""Plain-text helpers the metrics share: cleaning, segmentation, words, term matching.

Conventions
-----------
- A *segment* is a sentence, or one line of a list, with markdown markers (``*``, ``#``,
  ``**``, ``---``, ``1.``) removed. Segments shorter than :data:`MIN_SEGMENT_WORDS` words and
  headings (``"Color Palette:"``) are joined to the segment that follows them.
- *Words* are lower-case runs of letters, with inner hyphens and apostrophes kept
  (``"close-up"``, ``"bird's-eye"``).
- *Terms* are looked up in :mod:`m2i.scoring.lexicon` as single words, bigrams and trigrams,
  after :func:`lemma` folds simple plurals and inflections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MIN_SEGMENT_WORDS = 4

_WORD = re.compile(r"[a-z]+(?:['\u2019-][a-z]+)*")
_MARKUP = re.compile(r"(\*\*|__|`|#+\s*|^\s*[-*\u2022>]+\s+|^\s*\d+[.)]\s+|^\s*-{3,}\s*$)", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+(?=[\"'\u201c\u2018(]*[A-Z0-9])")


def clean(text: str | None) -> str:
    """Remove markdown markers and collapse runs of blank space inside lines."""
    if not text:
        return ""
    out = _MARKUP.sub("", text)
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in out.splitlines()]
    return "\n".join(ln for ln in lines if ln)


def words(text: str | None) -> list[str]:
    """Lower-case words of ``text`` (see module conventions)."""
    if not text:
        return []
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def segments(text: str | None, *, min_words: int = MIN_SEGMENT_WORDS) -> list[str]:
    """Split a prompt into sentences / list lines, joining short fragments to the next one.

    Parameters
    ----------
    text : str or None
        The prompt.
    min_words : int >= 1
        Segments with fewer words, and headings (ending in ``:``), are joined to the following
        segment (a trailing one to the previous segment).

    Returns
    -------
    list of str
        Non-empty segments in reading order; ``[]`` for empty text.

    Examples
    --------
    >>> segments("Color Palette:\\n* Deep blues for the sky. Gold light on the water.")
    ['Color Palette: Deep blues for the sky.', 'Gold light on the water.']
    """
    body = clean(text)
    if not body:
        return []
    raw: list[str] = []
    for line in body.splitlines():
        raw.extend(s.strip() for s in _SENTENCE_END.split(line) if s.strip())
    raw = [s for s in raw if _WORD.search(s.lower())]
    out: list[str] = []
    carry = ""
    for s in raw:
        s = f"{carry} {s}".strip() if carry else s
        if len(words(s)) < min_words or s.endswith(":"):
            carry = s
            continue
        carry = ""
        out.append(s)
    if carry:
        if out:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out


def lemma(word: str, vocab: frozenset[str] | set[str]) -> str:
    """Fold a plural or simple inflection onto a form present in ``vocab``; else ``word``."""
    if word in vocab:
        return word
    candidates = []
    if word.endswith("ies") and len(word) > 4:
        candidates.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        candidates.append(word[:-2])
    if word.endswith("s") and len(word) > 3:
        candidates.append(word[:-1])
    if word.endswith("ly") and len(word) > 4:
        candidates.append(word[:-2])
    if word.endswith("ing") and len(word) > 5:
        candidates += [word[:-3], word[:-3] + "e"]
    if word.endswith("ed") and len(word) > 4:
        candidates += [word[:-2], word[:-1]]
    for c in candidates:
        if c in vocab:
            return c
    return word


class _Matcher:
    """Longest-match term finder for one vocabulary, with per-word caches."""

    def __init__(self, vocab: frozenset[str] | set[str], max_n: int) -> None:
        self.vocab = vocab
        self.max_n = max(1, min(max_n, max((t.count(" ") + 1 for t in vocab), default=1)))
        self.starts = frozenset(t.split(" ")[0] for t in vocab if " " in t)
        self._single: dict[str, tuple[str, ...]] = {}

    def single(self, tok: str) -> tuple[str, ...]:
        hit = self._single.get(tok)
        if hit is None:
            w = lemma(tok, self.vocab)
            if w in self.vocab:
                hit = (w,)
            elif "-" in tok:
                hit = tuple(p for p in (lemma(x, self.vocab) for x in tok.split("-")) if p in self.vocab)
            else:
                hit = ()
            if len(self._single) < 200_000:
                self._single[tok] = hit
        return hit

    def find(self, tokens: list[str]) -> list[str]:
        found: list[str] = []
        i = 0
        n_tok = len(tokens)
        vocab = self.vocab
        while i < n_tok:
            tok = tokens[i]
            if tok in self.starts:
                step = 0
                for n in range(min(self.max_n, n_tok - i), 1, -1):
                    gram = " ".join(tokens[i : i + n])
                    if gram in vocab:
                        found.append(gram)
                        step = n
                        break
                if step:
                    i += step
                    continue
            found.extend(self.single(tok))
            i += 1
        return found


_MATCHERS: dict[tuple[int, int], tuple[object, _Matcher]] = {}


def find_terms(tokens: list[str], vocab: frozenset[str] | set[str], *, max_n: int = 3) -> list[str]:
    """Terms of ``vocab`` found in ``tokens``, longest match first, in order of appearance.

    A token consumed by a longer match is not matched again on its own (``"golden hour"`` is
    one term, not also ``"golden"``). A hyphenated word absent from ``vocab`` contributes its
    parts that are present (``"sun-drenched"`` gives ``"sun"``).

    Parameters
    ----------
    tokens : list of str
        Output of :func:`words`.
    vocab : set of str
        Terms, single words or space-joined n-grams up to ``max_n`` words.
    max_n : int >= 1
        Longest n-gram tried.

    Returns
    -------
    list of str
        The matched terms (with repeats), folded by :func:`lemma` for single words.

    Examples
    --------
    >>> find_terms(words("Golden hour over red roofs"), frozenset({"golden hour", "golden", "red", "roof"}))
    ['golden hour', 'red', 'roof']
    """
    key = (id(vocab), max_n)
    entry = _MATCHERS.get(key)
    if entry is None or entry[0] is not vocab:
        if not isinstance(vocab, frozenset):  # mutable sets are not cached
            return _Matcher(vocab, max_n).find(tokens)
        entry = (vocab, _Matcher(vocab, max_n))
        _MATCHERS[key] = entry
    return entry[1].find(tokens)


def ngram_repeat_fraction(tokens: list[str], *, n: int = 3) -> float:
    """Fraction of word n-grams that repeat an n-gram seen earlier in the same text.

    ``0.0`` when no n-gram repeats or the text has fewer than ``n`` words; approaches ``1.0`` for
    a phrase pasted many times.
    """
    if len(tokens) < n:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    total = 0
    for i in range(len(tokens) - n + 1):
        g = tuple(tokens[i : i + n])
        total += 1
        if g in seen:
            repeats += 1
        else:
            seen.add(g)
    return repeats / total


def join_nonempty(parts: Iterable[str | None], *, sep: str = "\n") -> str:
    """Join the non-blank strings of ``parts`` with ``sep``."""
    return sep.join(p.strip() for p in parts if p and p.strip())
