"""Text files: those users write by hand (``m2i.toml``, an edited legacy JSON), read as their editors
save them; and those m2i writes for them (gallery, report, exports), written whole or not at all."""

from __future__ import annotations

import errno
import os
import secrets
import stat
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


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: into a new file beside it, then renamed
    over it, so a reader never sees half a file and a full disk leaves the old one. A symbolic link
    is followed (the file it names is replaced, the link kept). Anything there that is not a
    regular file is refused with ``OSError`` (EINVAL, "not a regular file"): renaming over
    ``--out /dev/null`` had replaced the device itself with an HTML file, for every program on the
    machine, when m2i ran as root. Returns the path written."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device or pipe"
        raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
    # a new file gets 0666 less the umask, as the kernel applies it (mkstemp's 0600 would hide a new
    # gallery from the group; reading the umask means setting it, for every thread of the process)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))  # a file that was there keeps its permissions
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
    return Path(path)
