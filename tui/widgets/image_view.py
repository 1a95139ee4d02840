"""A prompt's rendered image: a graphics protocol where the terminal has one, character cells elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


def image_widget_class():
    """The textual-image widget to use: ``M2I_TUI_IMAGES=cells`` forces the half-cell renderer.

    textual-image picks Sixel or the Terminal Graphics Protocol when the terminal answers its
    query (done once, before the app starts), half-block cells on other terminals and plain
    Unicode blocks when not on a terminal at all.
    """
    from textual_image import widget

    mode = os.environ.get("M2I_TUI_IMAGES", "auto").lower()
    if mode == "cells":
        return widget.HalfcellImage
    if mode == "unicode":
        return widget.UnicodeImage
    return widget.Image


class ImageView(Vertical):
    """Shows the image at a path, or one line saying why there is none."""

    DEFAULT_CLASSES = "image-view"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.path: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="image-caption")

    def show(self, path: str | None, *, status: str | None, caption: str = "") -> None:
        """Display ``path``; ``status`` is the image row's status when there is no file to show."""
        cap = self.query_one(".image-caption", Static)
        if path == self.path and self.query(".image-body"):
            cap.update(caption)
            return
        self.path = path
        for old in self.query(".image-body"):
            old.remove()
        if path and Path(path).is_file():
            try:
                from PIL import Image as PILImage

                with PILImage.open(path) as im:
                    im.load()
                    body = image_widget_class()(im.copy(), classes="image-body")
            except (OSError, ValueError) as exc:
                body = Static(f"cannot show {Path(path).name}: {exc}", classes="image-body image-missing")
        elif path:
            body = Static(f"image file missing: {path}", classes="image-body image-missing")
        else:
            body = Static(f"no image yet ({status or 'not created'})", classes="image-body image-missing")
        cap.update(caption)
        self.mount(body)
