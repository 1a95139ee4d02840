"""The gallery states what the analysis heard, as the LLM's message does."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from m2i.gallery import write_gallery
from m2i.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tui"))  # as tests/tui/conftest.py does
from seeding import seed_store  # noqa: E402 - the dashboard tests' realistic run stores


def test_a_clip_with_no_key_or_melody_heard_shows_neither(tmp_path):
    db = tmp_path / "m2i.db"
    run_id = seed_store(db, clips=2, fail_analyze=(), fail_generate=0, fail_render=0, render=0, report=False)
    with sqlite3.connect(db) as con:  # clip 0 as m2i analyses a drum loop: no key, no melody heard
        con.execute("UPDATE sample SET features = json_set(features, '$.confidence.key', 0.0, "
                    "'$.confidence.melody_contour', 0.0) WHERE idx = 0")
    store = open_store(str(db))
    try:
        page = write_gallery(store, run_id, tmp_path / "gallery.html").read_text()
    finally:
        store.close()
    drums, music = page.split("<section class='clip'>")[1:3]
    assert "<dt>key</dt><dd>—</dd>" in drums and "<dt>harmonic progression</dt><dd>—</dd>" in drums
    assert "<pre class='abc'></pre>" in drums and "<dt>tempo</dt><dd>72 BPM</dd>" in drums
    assert "<dt>key</dt><dd>G</dd>" in music and "X:1" in music
