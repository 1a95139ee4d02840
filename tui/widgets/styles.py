"""Text styles that stay legible without colour.

Under ``NO_COLOR`` Textual turns every colour into the grey of the same lightness, so red or
yellow text on the dark background comes out nearly invisible. Widgets pass their Rich styles
through :func:`legible`, which then drops the colours and keeps bold, italic, dim and reverse.
"""

from __future__ import annotations

from rich.style import Style

LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": ""}
"""An event's or log line's text by level, in colour."""
LEVEL_TAGS_NO_COLOR = {"error": "bold reverse", "warning": "bold"}
"""The level tag (``erro``, ``warn``) without colour: reverse video is what marks an error then."""


def legible(style: str, no_color: bool) -> str | Style:
    """``style`` as it is, or without its colours when the app runs under ``NO_COLOR``."""
    return Style.parse(style).without_color if no_color and style else style


def level_tag_style(level: str, no_color: bool) -> str:
    """The style of a line's level tag: its level's colour, or bold/reverse without colour."""
    if no_color:
        return LEVEL_TAGS_NO_COLOR.get(level, "")
    return LEVEL_STYLES.get(level, "") or "dim"
