"""The file commands on real data: import-legacy, export, migrate-db, gallery."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from test_e2e import cli

LEGACY = Path(__file__).resolve().parents[3] / "shared" / "data" / "legacy" / "visual_prompts_complete.json"
if not LEGACY.is_file():  # a checkout elsewhere: the shared data stays where it was laid
    LEGACY = Path("/work/shared/data/legacy/visual_prompts_complete.json")


def test_import_legacy_then_export_the_earlier_files(tmp_path):
    db = tmp_path / "m2i.db"
    r = cli("import-legacy", str(LEGACY), "--db", str(db), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "100 samples, 500 prompts" in r.stdout
    again = cli("import-legacy", str(LEGACY), "--db", str(db), cwd=tmp_path)
    assert "already imported" in again.stdout
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM run").fetchone() == (1,)
    assert con.execute("SELECT count(*), count(DISTINCT sample_id) FROM prompt").fetchone() == (500, 100)
    # a render row points at a file that lives on another machine
    con.execute("UPDATE image SET status='done', path='/mnt/elsewhere/x.png', host='gpu-box-7' WHERE id=1")
    con.commit()
    out = tmp_path / "exports"
    r = cli("export", "--db", str(db), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = {p.relative_to(out).as_posix() for p in out.rglob("*.json")}
    assert {"generated_prompts/visual_prompts_complete.json", "creativity_scores/creativity_comparison_report.json",
            "images/image_generation_log.json"} <= names and len(names) == 9
    exported = json.loads((out / "generated_prompts/visual_prompts_complete.json").read_text())
    original = json.loads(LEGACY.read_text())
    assert len(exported["samples"]) == 100
    assert exported["samples"][0]["prompts"][0]["visual_prompt"] == original["samples"][0]["prompts"][0]["visual_prompt"]
    assert "1 of 1 image file(s) are not reachable" in r.stderr and "gpu-box-7:/mnt/elsewhere/x.png" in r.stderr
    # imported prompts are not scored or rendered yet: the files are what is done, and the command says so
    assert ("note: this run is not finished (500 score(s) to compute and 499 image(s) to render); these files "
            "hold what is done so far, and `m2i run` continues it.") in r.stderr
    g = cli("gallery", "--db", str(db), "--out", str(tmp_path / "g.html"), cwd=tmp_path)
    assert g.returncode == 0 and "the gallery shows what is done so far" in g.stderr


def test_file_errors_are_one_sentence(tmp_path):
    r = cli("import-legacy", str(tmp_path / "nope.json"), "--db", str(tmp_path / "a.db"), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    (tmp_path / "bad.json").write_text("{not json")
    r = cli("import-legacy", str(tmp_path / "bad.json"), "--db", str(tmp_path / "a.db"), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = cli("gallery", "--db", str(tmp_path / "a.db"), cwd=tmp_path)
    assert r.returncode == 1 and "no run" in r.stderr


def test_migrate_db_copies_everything_and_refuses_a_full_destination(tmp_path):
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    assert cli("import-legacy", str(LEGACY), "--db", str(src), cwd=tmp_path).returncode == 0
    r = cli("migrate-db", "--from", str(src), "--to", str(dst), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "prompt 500" in r.stdout
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    for table in ("sample", "prompt", "score", "image"):
        assert a.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() == b.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    before = dst.read_bytes()
    r = cli("migrate-db", "--from", str(src), "--to", str(dst), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert json.loads(cli("status", "--json", "--db", str(dst), cwd=tmp_path).stdout)["stages"]["generate"]["done"] == 500
    assert len(before) > 0
