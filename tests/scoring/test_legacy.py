"""Reading the earlier system's visual_prompts_complete.json (the real 500-prompt file)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from m2i.errors import InputError
from m2i.features import summarize
from m2i.scoring.legacy import load_legacy, scoring_inputs


def test_real_file_loads_every_sample_and_prompt(legacy_data):
    samples = legacy_data["samples"]
    assert len(samples) == 100
    assert legacy_data["metadata"]["total_samples"] == 100
    prompts = [p for s in samples for p in s["prompts"]]
    assert len(prompts) == 500
    assert Counter(p["mode"] for p in prompts) == {"convergent": 300, "divergent": 200}
    first = samples[0]
    assert first["idx"] == 0 and first["source"] == "visual_prompts_complete.json#0"
    assert first["meta"]["slice_pos"] == [45, 55]
    assert first["abc"].startswith("X:1")
    assert summarize(first["features"])["tempo"] == "125 BPM"
    p0 = first["prompts"][0]
    assert p0["title"] == "Ethereal Dreamscape in F minor"
    assert p0["image_prompt"] is None and p0["text"].startswith("Title: Ethereal Dreamscape")
    assert p0["temperature"] == 0.4


def test_scoring_inputs_give_unique_ids_and_features(legacy_data):
    prompts, samples = scoring_inputs(legacy_data)
    assert len({p["id"] for p in prompts}) == 500
    assert set(samples) == set(range(100))
    assert {p["slot"] for p in prompts} == set(range(5))


def write(tmp_path, obj, name="visual_prompts_complete.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


@pytest.mark.parametrize(
    "content,match",
    [
        ("{not json", "not valid JSON"),
        ({"samples": "x"}, "no 'samples' list"),
        ({"samples": [{"sample_idx": 0, "prompts": [{"mode": "wild", "visual_prompt": "x"}]}]}, "mode 'wild'"),
        ({"samples": [{"sample_idx": 0, "prompts": [{"mode": "convergent"}]}]}, "visual_prompt"),
        ({"samples": [{"sample_idx": 0}, {"sample_idx": 0}]}, "repeats sample_idx 0"),
        ({"samples": [{"sample_idx": 0, "musical_features": "F minor"}]}, "musical_features"),
    ],
)
def test_malformed_files_raise_input_error_naming_the_entry(tmp_path, content, match):
    with pytest.raises(InputError, match=match):
        load_legacy(write(tmp_path, content))


def test_a_file_resaved_by_a_windows_editor_is_read_and_an_old_encoding_is_one_sentence(tmp_path):
    """A results file opened and saved again in Notepad gains a byte order mark (UTF-8's, or UTF-16
    for "Unicode"), which JSON readers refuse: "not valid JSON" for the same prompts."""
    text = json.dumps({"samples": [{"prompts": [{"mode": "divergent", "visual_prompt": "A moth, café light."}]}]},
                      ensure_ascii=False)
    p = tmp_path / "visual_prompts_complete.json"
    for encoding in ("utf-8-sig", "utf-16"):
        p.write_bytes(text.encode(encoding))
        assert load_legacy(p)["samples"][0]["prompts"][0]["text"] == "A moth, café light."
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 0xe9 at offset \d+, an older encoding"):
        load_legacy(p)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_legacy(tmp_path / "nope.json")


def test_minimal_file_without_optional_fields(tmp_path):
    data = load_legacy(write(tmp_path, {"samples": [{"prompts": [{"mode": "divergent", "visual_prompt": "A moth."}]}]}))
    s = data["samples"][0]
    assert (s["idx"], s["features"], s["abc"], s["meta"]) == (0, None, None, {})
    assert s["prompts"][0]["slot"] == 0 and s["prompts"][0]["title"] is None
