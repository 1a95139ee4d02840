"""Template, answer parsing and the CLIP token budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prompt_constants import ABC

from m2i.errors import InputError
from m2i.prompts.clip_tokens import clip_tokenize, count_clip_tokens, fit_clip_tokens
from m2i.prompts.parse import InvalidOutput, find_loop, parse_prompt
from m2i.prompts.template import MODE_INSTRUCTIONS, build_request, compact_user_message

GOOD = {
    "title": "Violet harbour",
    "image_prompt": "a quiet harbour at dusk, violet fog over dark water, a lantern on a wooden pier",
    "negative_prompt": "text, watermark",
    "palette": ["violet", "slate blue", "amber"],
    "description": "The slow minor clip becomes a foggy harbour.",
}


def test_clip_tokens_match_the_clip_vocabulary():
    # ids of OpenAI CLIP's BPE: "a</w>"=320, "red</w>"=736, "fox</w>"=3240
    assert clip_tokenize("A red fox")[:3] == [320, 736, 3240]
    assert count_clip_tokens("a red fox, in the snow!") == 8
    assert count_clip_tokens("") == 0


def test_fit_clip_tokens_cuts_at_a_word_boundary(legacy_samples):
    long = legacy_samples[0]["prompts"][0]["visual_prompt"]  # the earlier system wrote ~240 words
    assert count_clip_tokens(long) > 75
    cut = fit_clip_tokens(long)
    assert count_clip_tokens(cut) <= 75 and count_clip_tokens(cut) >= 65
    assert " ".join(long.split()).startswith(cut.rstrip(",;:"))
    assert fit_clip_tokens("short prompt") == "short prompt"
    with pytest.raises(ValueError, match="positive"):
        fit_clip_tokens("x", 0)


def test_modes_differ_only_in_temperature_and_instruction(features):
    conv = build_request(features, ABC, mode="convergent", temperature=0.4, seed=1)
    div = build_request(features, ABC, mode="divergent", temperature=0.8, seed=1)
    assert conv.system == div.system and conv.messages == div.messages
    assert (conv.temperature, div.temperature) == (0.4, 0.8)
    assert (conv.instruction, div.instruction) == (MODE_INSTRUCTIONS["convergent"], MODE_INSTRUCTIONS["divergent"])
    user = conv.messages[0]["content"]
    assert "F# minor" not in user and "key: F#" in user and "tonality: minor" in user
    assert "96 BPM" in user and "i-iv-V-i" in user and "K:F#m" in user
    assert "spectrogram" not in user.lower()
    with_spec = build_request(features, ABC, mode="convergent", temperature=0.4, seed=1,
                              settings={"include_spectrogram": True})
    assert "below 500 Hz" in with_spec.messages[0]["content"]


def test_legacy_string_features_are_read(legacy_samples):
    s = legacy_samples[0]
    req = build_request(s["musical_features"], s["abc_notation"], mode="divergent", temperature=0.8, seed=3)
    user = req.messages[0]["content"]
    assert "mood: upbeat, dark" in user and "tempo: 125 BPM" in user
    assert compact_user_message(s["musical_features"]).startswith("Music: key: F minor; tempo: 125 BPM")


@pytest.mark.parametrize("mode,temperature", [("wild", 0.4), ("convergent", 3.0)])
def test_bad_mode_or_temperature(features, mode, temperature):
    with pytest.raises(InputError):
        build_request(features, None, mode=mode, temperature=temperature, seed=0)


def test_json_answer_in_chatter_and_fences():
    text = "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```\nEnjoy!"
    vp, tokens = parse_prompt(text)
    assert vp.title == "Violet harbour" and vp.palette == ["violet", "slate blue", "amber"]
    assert tokens == count_clip_tokens(vp.image_prompt)


def test_smart_quotes_and_trailing_commas_are_repaired():
    text = json.dumps(GOOD).replace('"', "\u201d")[:-1] + ",}"
    vp, _ = parse_prompt(text)
    assert vp.image_prompt == GOOD["image_prompt"] and vp.description == GOOD["description"]


@pytest.mark.parametrize("text", [json.dumps(GOOD)[:-20], json.dumps(GOOD)[:60], json.dumps([GOOD, GOOD])[:300]],
                         ids=["in-the-description", "in-the-image-prompt", "in-a-list"])
def test_json_cut_off_before_its_end_is_rejected_not_completed(text):
    with pytest.raises(InvalidOutput, match="stops before its JSON") as info:
        parse_prompt(text)
    assert info.value.kind == "cut_off"


@pytest.mark.parametrize("wrapped", [[GOOD], {"prompts": [GOOD]}, {"result": GOOD}, {"data": {"prompts": [GOOD]}}],
                         ids=["bare-list", "list-under-a-key", "object-under-a-key", "two-wrappers"])
def test_one_prompt_in_a_list_or_under_a_key_is_that_prompt(wrapped):
    vp, _ = parse_prompt("Here it is: " + json.dumps(wrapped))
    assert vp.image_prompt == GOOD["image_prompt"] and vp.palette == GOOD["palette"]


def test_plain_text_answer_is_extracted():
    text = ("**Title:** Ember forest\n**Image prompt:** a forest of glowing ember trees, crimson mist, "
            "night sky\nNegative prompt: text, people\nPalette: crimson, black and gold\n"
            "Description: Fast and loud, so the forest burns.\nIt never ends.")
    vp, _ = parse_prompt(text)
    assert vp.title == "Ember forest" and vp.image_prompt.startswith("a forest of glowing ember trees")
    assert vp.palette == ["crimson", "black", "gold"] and vp.negative_prompt == "text, people"
    assert vp.description == "Fast and loud, so the forest burns. It never ends."


def test_three_line_answer_gets_palette_and_negative_and_loses_music_words():
    text = ("Title: Night harbour\nImage: a dark harbour, a melody of waves, red lanterns, silver moon, "
            "oil painting\nAbout: The slow music becomes a dark harbour.\n")
    vp, _ = parse_prompt(text, drop_music_words=True, default_negative="text, blurry")
    assert vp.image_prompt == "a dark harbour, red lanterns, silver moon, oil painting"
    assert vp.palette == ["red", "silver"] and vp.negative_prompt == "text, blurry"
    with pytest.raises(InvalidOutput, match="music or sound"):
        parse_prompt("Title: x\nImage: a song of light, notes in the air\nAbout: Music.\n", drop_music_words=True)


@pytest.mark.parametrize("text,reason,kind", [
    ("", "empty", "empty"),
    ("I would love to help with this music!", "no image_prompt", "invalid"),
    (json.dumps({**GOOD, "image_prompt": "a red door, " + "a red door in the rain, " * 8}), "loops", "loop"),
    ("I\u2019m sorry, but I can't help with that.", "^the model refused: I\u2019m sorry, but I can't help with that.$",
     "refusal"),
    ("Unfortunately, I cannot write image prompts.\n\nIs there something else?",
     "^the model refused: Unfortunately, I cannot write image prompts. Is there something else[?]$", "refusal"),
    (json.dumps([GOOD] * 4), "holds 4 prompts in a list, and m2i asks for one prompt per request", "invalid"),
    (json.dumps({"prompts": [GOOD] * 6}), "holds 6 prompts in a list", "invalid"),
    ("<think>\nThe clip is in A minor, so a harbour at night, or", "stops inside the model's reasoning", "cut_off"),
    ("<think>I will answer now.</think>\n", "holds only the model's reasoning", "empty"),
])
def test_unusable_answers_are_rejected_with_a_reason(text, reason, kind):
    with pytest.raises(InvalidOutput, match=reason) as info:
        parse_prompt(text)
    assert info.value.kind == kind


def test_the_answer_after_a_reasoning_block_opened_by_the_chat_template():
    """DeepSeek-R1's template opens ``<think>`` in the prompt, so the text holds only its end."""
    draft = json.dumps({**GOOD, "image_prompt": "a red sports car"})
    vp, _ = parse_prompt(f"Maybe {draft}? No.\n</think>\n{json.dumps(GOOD)}")
    assert vp.image_prompt == GOOD["image_prompt"]


def test_a_prompt_that_says_sorry_is_no_refusal():
    vp, _ = parse_prompt("I'm sorry for the wait! " + json.dumps(GOOD))
    assert vp.image_prompt == GOOD["image_prompt"]


def test_long_prompt_is_fitted_and_repeated_phrases_dropped():
    things = ("tower", "bridge", "kite", "river", "garden", "lantern", "mountain", "harbour", "forest", "field",
              "window", "staircase", "glacier", "desert", "orchard")
    words = ", ".join(f"a {c} {t}" for c, t in zip(("red", "blue", "green", "gold", "grey", "pink", "teal", "black",
                                                    "white", "violet", "amber", "ivory", "rust", "jade", "plum"),
                                                   things))
    vp, tokens = parse_prompt(json.dumps({**GOOD, "image_prompt": "a red door, a red door, " + words}))
    assert tokens <= 75 and vp.image_prompt.startswith("a red door, a red tower, a blue bridge")
    assert find_loop("one two three " * 4) == "one two three"


def test_importing_prompts_stays_light():
    code = ("import sys, m2i.prompts.generate, m2i.prompts.providers, m2i.prompts.batch; "
            "heavy = {'anthropic', 'openai', 'ollama', 'llama_cpp', 'torch', 'transformers', 'httpx'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_together_words_of_small_models_are_dropped():
    text = ("Title: Dark shore\nImage: a dark beach, shadowsthat are not so much ofthemaslice, a lone torch, "
            "izhitha ezgjha lasso, violet fog over water\nAbout: The slow piece becomes a dark beach.\n")
    vp, _ = parse_prompt(text, drop_gibberish=True)
    assert vp.image_prompt == "a dark beach, a lone torch, violet fog over water"
    with pytest.raises(InvalidOutput, match="invented words"):
        parse_prompt("Title: x\nImage: izhitha ezgjha, javamu thatsntnadc, a lamp\nAbout: Odd.\n", drop_gibberish=True)


def test_answer_without_title_gets_one_from_its_image_prompt():
    vp, _ = parse_prompt("Image: a grand cathedral, dark sky over the sea\nAbout: The upbeat music turns to stone.")
    assert vp.title == "A grand cathedral" and vp.description == "The upbeat music turns to stone."


def test_chord_chains_copied_from_the_features_are_dropped():
    from m2i.prompts.parse import drop_music_phrases

    assert drop_music_phrases("an island with waves. I-vi-V-I-M-i-C-A-T-E, dark shore") == "an island with waves, dark shore"
    assert drop_music_phrases("a serene valley, Mf-Mv-mF vi, only the light.") == "a serene valley, only the light"
    assert drop_music_phrases("a well-lit red-brick house, x-ray vision") == "a well-lit red-brick house, x-ray vision"
