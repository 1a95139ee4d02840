"""Text files users write by hand (``m2i.toml``, an edited legacy JSON), read as their editors save them."""

from __future__ import annotations

import os
from pathlib import Path

_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def text_of(path: str | os.PathLike[str]) -> str:
    """A text file a user wrote, as a string: UTF-8, or what Windows editors save (UTF-8 with a byte
    order mark, Notepad's "Unicode", i.e. UTF-16 with one). Anything else raises UnicodeDecodeError,
    whose message names the first byte that is not UTF-8."""
    raw = Path(path).read_bytes()
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw.decode(encoding)
    return raw.decode("utf-8")


def not_utf8(path: str | os.PathLike[str], exc: UnicodeDecodeError) -> str:
    """One sentence for a file :func:`text_of` could not read."""
    return (f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}, an older "
            "encoding such as Latin-1?); save it as UTF-8.")
