"""What becomes of answers cut off at the token limit, refusals and lists of prompts: the runner's
generate stage against real local servers speaking each API, read back from the run store."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
from prompt_constants import ABC
from wire_servers import default_answer

from m2i.runner import Runner
from m2i.stages import GenerateStage
from m2i.store import open_store, ops

# provider -> (server fixture, chat path, model, base_url from the server)
PROVIDERS = {
    "anthropic": ("anthropic_server", "/v1/messages", "claude-sonnet-4-6", lambda srv: None),
    "ollama": ("ollama_server", "/api/chat", "llama3.2", lambda srv: None),
    "openai": ("openai_server", "/v1/chat/completions", "qwen2.5-7b-instruct", lambda srv: srv.url + "/v1"),
}
FULL = json.loads(default_answer({"temperature": 0.8}, 1))
COLUMNS = ("status", "image_prompt", "text", "llm_attempts", "error")


@pytest.fixture(params=sorted(PROVIDERS))
def llm(request, tmp_path, features):
    """One divergent prompt of one analysed clip in a fresh run store, and the provider's server."""
    fixture, path, model, base_url = PROVIDERS[request.param]
    srv = request.getfixturevalue(fixture)
    store = open_store(tmp_path / "m2i.db")
    run_id = ops.create_run(store, name="answers", config={
        "seed": 1, "modes": [{"mode": "divergent", "count": 1, "temperature": 0.8}]})
    ops.add_samples(store, run_id, [SimpleNamespace(source="clip0.wav", meta={}, pcm=np.full(1600, 0.01, np.float32),
                                                    error=None)])
    [sample] = ops.claim(store, "analyze", worker="t", n=1, run_id=run_id)
    ops.complete_many(store, "analyze", [(sample["id"], {"features": features, "abc": ABC})], worker="t")
    if request.param == "anthropic":
        srv.inject(path, None)  # the key and model check's 1-token probe gets a plain answer

    async def generate(*answers):
        """Serve ``answers`` (wire-server faults) in turn, run the generate stage, return the stored row."""
        srv.inject(path, *answers)
        stage = GenerateStage(llm=request.param, model=model, base_url=base_url(srv), settings={})
        await Runner(store, run_id, [stage], poll_s=0.02).run()
        with sqlite3.connect(tmp_path / "m2i.db") as con:
            [row] = con.execute(f"SELECT {', '.join(COLUMNS)} FROM prompt").fetchall()
        return dict(zip(COLUMNS, row))

    chats = lambda: [r["body"] for r in srv.posts(path) if r["body"].get("max_tokens") != 1]  # noqa: E731
    return SimpleNamespace(name=request.param, srv=srv, generate=generate, chats=chats)


async def test_an_answer_cut_off_at_the_token_limit_is_asked_afresh_and_never_stored(llm):
    row = await llm.generate("cut")
    assert row["status"] == "done" and row["llm_attempts"] == 2
    assert row["text"] == FULL["description"], "the whole description is stored, not 'clip becomes a fog'"
    first, second = llm.chats()
    assert second["messages"] == first["messages"], "asked afresh: no repair turn quoting the cut answer"
    if llm.name != "anthropic":  # Claude takes no seed
        seed = [b.get("seed", (b.get("options") or {}).get("seed")) for b in (first, second)]
        assert seed[1] == seed[0] + 1000, "with another seed"


async def test_answers_cut_off_every_time_fail_the_row_naming_the_token_limit(llm):
    row = await llm.generate("cut", "cut", "cut")
    assert row["status"] == "failed" and row["image_prompt"] is None and row["text"] is None
    assert "the model's answers were cut off at the token limit (max_tokens 400) 3 times; raise max_tokens" \
        in row["error"]
    assert len(llm.chats()) == 3, "the attempt budget is kept: 1 + max_output_retries answers"


async def test_a_thinking_models_reasoning_is_not_the_answer(llm):
    """qwen3 or DeepSeek-R1 served without a reasoning parser write ``<think>...</think>`` before
    the answer; a draft JSON object in the reasoning must not become the prompt."""
    draft = json.dumps({**FULL, "image_prompt": "a red sports car on a motorway"})
    row = await llm.generate(("text", f"<think>\nA first idea: {draft}. No, the clip is slow and minor.\n</think>\n\n"
                                      f"{json.dumps(FULL)}"))
    assert row["status"] == "done" and row["llm_attempts"] == 1
    assert row["image_prompt"] == FULL["image_prompt"]


async def test_answers_that_end_inside_the_reasoning_fail_saying_so(llm):
    thinking = "<think>\nThe key is A minor and the tempo slow, so perhaps a harbour, or a forest, or"
    row = await llm.generate(*[("cut_text", thinking)] * 3)
    assert row["status"] == "failed" and row["image_prompt"] is None
    assert "cut off at the token limit (max_tokens 400) 3 times, spent on its reasoning: raise max_tokens" \
        in row["error"]


@pytest.mark.parametrize("llm", ["ollama", "openai"], indirect=True)
async def test_answers_whose_tokens_all_went_to_a_separate_reasoning_field_say_so(llm):
    """Ollama's ``thinking`` and vLLM's ``reasoning_content`` keep the reasoning beside an empty answer."""
    row = await llm.generate(*[("thinking_cut", "The clip is slow and in A minor, so perhaps")] * 3)
    assert row["status"] == "failed"
    assert "3 times, spent on its reasoning: raise max_tokens well above what it reasons" in row["error"]


async def test_a_plain_text_refusal_fails_the_row_at_once_with_the_models_words(llm):
    row = await llm.generate(("text", "I'm sorry, but I can't help with that."))
    assert row["status"] == "failed" and row["image_prompt"] is None
    assert row["error"].endswith("gave no visual prompt; the model refused: I'm sorry, but I can't help with that.")
    assert len(llm.chats()) == 1, "no repair turn and no second answer"


@pytest.mark.parametrize("llm", ["anthropic", "openai"], indirect=True)  # Ollama has no refusal signal
async def test_the_providers_refusal_signal_fails_the_row_at_once(llm):
    row = await llm.generate("refusal")  # Anthropic stop_reason "refusal", OpenAI's refusal field
    assert row["status"] == "failed" and row["image_prompt"] is None
    assert row["error"].endswith("gave no visual prompt; the model refused: I can't help with that request.")
    assert len(llm.chats()) == 1


@pytest.mark.parametrize("wrapped", [{"prompts": [FULL]}, [FULL]], ids=["under-a-key", "bare-list"])
async def test_one_prompt_in_a_list_is_that_prompt(llm, wrapped):
    row = await llm.generate(("text", json.dumps(wrapped)))
    assert row["status"] == "done" and row["llm_attempts"] == 1
    assert row["image_prompt"] == FULL["image_prompt"] and row["text"] == FULL["description"]


async def test_several_prompts_in_a_list_are_not_cut_down_to_the_first(llm):
    four = json.dumps([{**FULL, "image_prompt": f"{FULL['image_prompt']}, view {i}"} for i in range(4)])
    row = await llm.generate(*[("text", four)] * 3)
    assert row["status"] == "failed" and row["image_prompt"] is None
    assert row["error"].endswith("the answer holds 4 prompts in a list, and m2i asks for one prompt per request.")
    repair = llm.chats()[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": four}
    assert "m2i asks for one prompt per request" in repair[-1]["content"]
