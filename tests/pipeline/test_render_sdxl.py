"""The render stage with the real SDXL backend on a tiny pipeline, through the real CLI."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest
from test_e2e import cli, run_args

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("images_conftest", HERE.parent / "images" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_tiny_sdxl(tmp_path_factory.mktemp("sdxl"))


def test_cli_renders_with_sdxl_and_refiner(tmp_path, tiny_gguf, tiny_sdxl):
    base, refiner = tiny_sdxl
    db, out = tmp_path / "m2i.db", tmp_path / "out"
    args = run_args(db, out, tiny_gguf, samples=1)
    args[args.index("--images") + 1] = "sdxl"
    r = cli(*args, "--image-model", str(base), "--refiner", str(refiner), "--device", "cpu", "--width", "64",
            "--height", "64", "--steps", "4", "--batch-size", "5", "--seed", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT status, backend, model, width, height, steps, seed, refiner, device, path FROM image").fetchall()
    assert len(rows) == 5
    for status, backend, model, w, h, steps, _seed, refined, device, path in rows:
        assert (status, backend, w, h, steps, refined, device) == ("done", "sdxl", 64, 64, 4, 1, "cpu")
        assert model == str(base) and Path(path).is_file()
    seeds = [s for *_, s, _, _, _ in rows]
    assert len(set(seeds)) == 5  # one seed per image, derived from the run seed and the prompt id
    from m2i.images.png import read_png_text

    meta = read_png_text(rows[0][-1])
    assert str(rows[0][6]) == str(meta["seed"]) and meta["model"] == str(base)
    report = json.loads(cli("report", "--json", "--db", str(db), cwd=tmp_path).stdout)
    assert report["images"][0]["backend"] == "sdxl"
