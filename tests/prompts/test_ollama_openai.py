"""The ollama and openai providers against real local servers speaking their wire formats."""

from __future__ import annotations

import logging
import socket

import pytest
from prompt_constants import ABC, OPENAI_KEY, SLOTS
from wire_servers import client_timeout

from m2i.errors import ProviderError
from m2i.prompts.generate import write_prompt
from m2i.prompts.providers import RetryPolicy, get_provider
from m2i.prompts.template import PROMPT_JSON_SCHEMA


async def five_prompts(provider, features):
    return [
        await write_prompt(provider, features=features, abc=ABC, mode=mode, temperature=t, seed=seed)
        for _, mode, t, seed in SLOTS
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- ollama --------------------------------------------------------------------------------------


async def test_ollama_reads_temperature_and_seed_inside_options(ollama_server, features):
    provider = get_provider("ollama", model="llama3.2")
    await provider.check()
    rows = await five_prompts(provider, features)
    await provider.aclose()
    chats = ollama_server.posts("/api/chat")
    assert len(chats) == 5
    for (_, _, t, seed), req in zip(SLOTS, chats):
        body = req["body"]
        assert body["model"] == "llama3.2" and body["stream"] is False
        assert body["options"]["temperature"] == t
        assert body["options"]["seed"] == seed
        assert body["options"]["num_predict"] == 400
        assert "temperature" not in body and "seed" not in body  # the earlier system's mistake
        assert body["format"] == PROMPT_JSON_SCHEMA
        assert body["messages"][0]["role"] == "system"
    assert all(r["realised_by"] == "temperature" and r["provider"] == "ollama" for r in rows)
    assert all(r["cost_usd"] == 0.0 and r["tokens_in"] > 0 for r in rows)


async def test_ollama_missing_model_names_the_pull_command(ollama_server):
    provider = get_provider("ollama", model="mistral-small3.2")
    with pytest.raises(ProviderError, match=r"run `ollama pull mistral-small3.2`"):
        await provider.check()
    await provider.aclose()


@pytest.mark.parametrize("suffix", ["/v1", "/api"])
async def test_ollama_wrong_base_path_is_not_called_a_missing_model(ollama_server, suffix):
    """`--base-url http://host:11434/v1` (the OpenAI-compatible path) sends /v1/api/show, which Ollama
    answers "404 page not found": the address is wrong, there is nothing to pull."""
    provider = get_provider("ollama", model="llama3.2", base_url=ollama_server.url + suffix)
    with pytest.raises(ProviderError) as info:
        await provider.check()
    await provider.aclose()
    msg = str(info.value)
    assert "looks wrong" in msg and "without /api or /v1" in msg and "ollama pull" not in msg, msg
    assert info.value.scope == "provider"


async def test_ollama_unreachable_is_one_sentence(monkeypatch, fast_retry):
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{free_port()}")
    provider = get_provider("ollama", model="llama3.2", retry=fast_retry)
    with pytest.raises(ProviderError, match="Cannot reach Ollama") as info:
        await provider.check()
    assert info.value.retryable
    await provider.aclose()


@pytest.mark.parametrize("fault", [{"status": 429, "headers": {"retry-after": "0.1"}}, {"status": 500},
                                   {"status": 503}, "drop", "malformed", ("hang", 6.0)],
                         ids=["429", "500", "503", "dropped-connection", "malformed-body", "timeout"])
async def test_ollama_transient_faults_are_retried(ollama_server, features, fast_retry, fault):
    provider = get_provider("ollama", model="llama3.2", retry=fast_retry, timeout=client_timeout(fault))
    ollama_server.inject("/api/chat", fault)
    row = await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=5)
    await provider.aclose()
    assert row["llm_attempts"] == 2 and ollama_server.ok == 1 and row["image_prompt"]


async def test_ollama_empty_answer_then_good(ollama_server, features):
    provider = get_provider("ollama", model="llama3.2")
    ollama_server.inject("/api/chat", "empty")
    row = await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=5)
    await provider.aclose()
    seeds = [r["body"]["options"]["seed"] for r in ollama_server.posts("/api/chat")]
    assert seeds == [5, 1005], "an invalid answer is asked again with another seed"
    assert row["llm_attempts"] == 2


async def test_an_invalid_answer_is_logged_with_the_prompt_and_sample_it_belongs_to(ollama_server, features,
                                                                                   tmp_path, caplog):
    """The log line names the prompt row and its clip, so `m2i sql` can find them."""
    from types import SimpleNamespace

    import numpy as np

    from m2i.runner import RunContext
    from m2i.stages import GenerateStage
    from m2i.store import open_store, ops

    store = open_store(tmp_path / "m2i.db")
    run_id = ops.create_run(store, name="log", config={"seed": 1})
    clips = [SimpleNamespace(source=f"clip{i}.wav", meta={}, pcm=np.full(1600, 0.01 * (i + 1), np.float32), error=None)
             for i in range(2)]
    ops.add_samples(store, run_id, clips)
    analysed = ops.claim(store, "analyze", worker="t", n=2, run_id=run_id)
    ops.complete_many(store, "analyze", [(r["id"], {"features": features, "abc": ABC}) for r in analysed], worker="t")
    second = max(r["id"] for r in analysed)
    row = next(r for r in ops.claim(store, "generate", worker="t", n=10, run_id=run_id)
               if r["sample_id"] == second and r["slot"] == 3)

    caplog.set_level(logging.DEBUG, logger="m2i")  # a retry during a shared hold is logged at DEBUG, the hold once
    stage = GenerateStage(llm="ollama", model="llama3.2", base_url=None, settings={})
    ctx = RunContext(store=store, run=ops.get_run(store, run_id), worker="t")
    await stage.setup(ctx)
    stage.provider.retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
    ollama_server.inject("/api/chat", "empty")
    ollama_server.inject("/api/chat", {"status": 503})  # then a transient failure, retried by the provider
    [outcome] = await stage.process([row], ctx)
    await stage.close()
    assert outcome.error is None and outcome.values["llm_attempts"] == 3
    which = f"prompt {row['id']} (sample {second}, slot 3)"
    invalid = [r.getMessage() for r in caplog.records if "invalid" in r.getMessage()]
    assert invalid == [f"ollama llama3.2 answer 1 of 3 for {which} invalid: the answer was empty"]
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 1 and retried[0].startswith(f"ollama llama3.2 for {which} failed (attempt 1 of 3): ")
    holds = [r.getMessage() for r in caplog.records if "holding prompts" in r.getMessage()]
    assert holds == ["ollama unavailable (503 service unavailable); holding prompts for 0.01 s"]


# -- openai-compatible ---------------------------------------------------------------------------


async def test_openai_compatible_fields_on_the_wire(openai_server, features):
    provider = get_provider("openai", model="qwen2.5-7b-instruct", base_url=openai_server.url + "/v1")
    await provider.check()
    rows = await five_prompts(provider, features)
    await provider.aclose()
    reqs = openai_server.posts("/v1/chat/completions")
    for (_, _, t, seed), req in zip(SLOTS, reqs):
        body = req["body"]
        assert body["temperature"] == t and body["seed"] == seed and body["max_tokens"] == 400
        assert body["model"] == "qwen2.5-7b-instruct"
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == PROMPT_JSON_SCHEMA
    assert all(r["realised_by"] == "temperature" and r["cost_usd"] is None for r in rows)


async def test_openai_base_url_from_environment_and_key(monkeypatch, features):
    from wire_servers import OpenAIServer

    with OpenAIServer(models=("llama-3.1-8b",), api_key=OPENAI_KEY) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-000000")
        provider = get_provider("openai", model="llama-3.1-8b")
        with pytest.raises(ProviderError, match="rejected the key in OPENAI_API_KEY") as info:
            await provider.check()
        assert "sk-wrong-000000" not in str(info.value)
        await provider.aclose()
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        provider = get_provider("openai", model="llama-3.1-8b")
        await provider.check()
        row = await write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=2)
        await provider.aclose()
        assert srv.posts("/v1/chat/completions")[0]["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
        assert OPENAI_KEY not in row["raw"]


async def test_openai_unknown_model_lists_the_served_ones(openai_server):
    provider = get_provider("openai", model="gpt-9", base_url=openai_server.url + "/v1")
    with pytest.raises(ProviderError, match="no model 'gpt-9'.*qwen2.5-7b-instruct"):
        await provider.check()
    await provider.aclose()


def test_openai_without_server_is_one_sentence(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ProviderError, match="pass --base-url"):
        get_provider("openai", model="x")


@pytest.mark.parametrize("fault", [{"status": 429, "headers": {"retry-after": "0.1"}}, {"status": 502}, "drop",
                                   "malformed", ("hang", 6.0), "cut", "empty"],
                         ids=["429", "502", "dropped-connection", "malformed-body", "timeout", "cut-off", "empty"])
async def test_openai_faults_end_done_exactly_once(openai_server, features, fast_retry, fault):
    provider = get_provider("openai", model="qwen2.5-7b-instruct", base_url=openai_server.url + "/v1",
                            retry=fast_retry, timeout=client_timeout(fault))
    openai_server.inject("/v1/chat/completions", fault)
    row = await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=5)
    await provider.aclose()
    assert row["llm_attempts"] == 2 and row["image_prompt"]
    content_fault = fault in ("cut", "empty")
    assert openai_server.ok == (2 if content_fault else 1)


async def test_openai_server_without_structured_output_is_asked_plainly(features, caplog):
    from wire_servers import OpenAIServer

    caplog.set_level(logging.INFO)
    with OpenAIServer(models=("m",), rejects_response_format=True) as srv:
        provider = get_provider("openai", model="m", base_url=srv.url + "/v1")
        row = await write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=1)
        await write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=2)
        await provider.aclose()
        bodies = [r["body"] for r in srv.posts("/v1/chat/completions")]
    assert "response_format" in bodies[0] and all("response_format" not in b for b in bodies[1:])
    assert len(bodies) == 3 and row["llm_attempts"] == 2


def test_unknown_provider_name():
    with pytest.raises(ProviderError, match="unknown: use one of anthropic, local, ollama, openai"):
        get_provider("gemini")


async def test_openai_model_taking_only_its_default_temperature_gets_its_modes_by_instruction(features, caps):
    """OpenAI's reasoning models answer 400 to any temperature but 1: like Claude's, the first such 400
    is remembered for the model and its modes are realised by the documented instructions."""
    from wire_servers import OpenAIServer

    with OpenAIServer(models=("gpt-5",), default_temperature_only=("gpt-5",)) as srv:
        provider = get_provider("openai", model="gpt-5", base_url=srv.url + "/v1", capabilities=caps)
        assert await provider.check() == "is listed by the server (GET /v1/models; no completion sent)"
        assert provider.realisation is None  # listing the models tells nothing about sampling
        rows = await five_prompts(provider, features)
        await provider.aclose()
        assert [r["realised_by"] for r in rows] == ["instruction"] * 5
        assert [r["llm_attempts"] for r in rows] == [2, 1, 1, 1, 1]  # the refused request counts
        assert caps.get("openai", "gpt-5") == "instruction" and provider.realisation == "instruction"
        bodies = [r["body"] for r in srv.posts("/v1/chat/completions")]
        assert bodies[0]["temperature"] == 0.4 and all("temperature" not in b for b in bodies[1:])
        systems = [b["messages"][0]["content"] for b in bodies[1:]]
        assert [("Mode: divergent" in s, "Mode: convergent" in s) for s in systems] == [
            (mode == "divergent", mode == "convergent") for _, mode, _, _ in SLOTS]
        # a later provider of the same store (another run) asks by instruction from its first request
        again = get_provider("openai", model="gpt-5", base_url=srv.url + "/v1", capabilities=caps)
        row = await write_prompt(again, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=9)
        await again.aclose()
        assert row["realised_by"] == "instruction" and row["llm_attempts"] == 1
        assert "temperature" not in srv.posts("/v1/chat/completions")[-1]["body"]


async def test_openai_model_that_wants_max_completion_tokens_gets_it(features, caps):
    """OpenAI's reasoning models refuse `max_tokens` ("Use 'max_completion_tokens' instead") as well as
    a temperature: the provider learns both from the 400s and every prompt is written."""
    from wire_servers import OpenAIServer

    with OpenAIServer(models=("gpt-5",), default_temperature_only=("gpt-5",), rejects_max_tokens=("gpt-5",)) as srv:
        provider = get_provider("openai", model="gpt-5", base_url=srv.url + "/v1", capabilities=caps)
        rows = await five_prompts(provider, features)
        await provider.aclose()
        assert [r["realised_by"] for r in rows] == ["instruction"] * 5 and all(r["image_prompt"] for r in rows)
        last = srv.posts("/v1/chat/completions")[-1]["body"]
        assert "max_tokens" not in last and last["max_completion_tokens"] > 0


async def test_openai_wrong_base_url_is_not_called_a_missing_model(openai_server, features):
    root = openai_server.url  # without /v1
    provider = get_provider("openai", model="qwen2.5-7b-instruct", base_url=root)
    with pytest.raises(ProviderError, match=rf"Nothing answers at {root}/models \(404\): the base URL {root} looks "
                                            rf"wrong \(try {root}/v1\)") as info:
        await provider.check()
    assert "no model" not in str(info.value)
    with pytest.raises(ProviderError, match=r"/chat/completions \(404\): the base URL .* looks wrong"):
        await provider.complete([{"role": "user", "content": "hi"}], temperature=0.4, seed=1, max_tokens=8)
    await provider.aclose()
    # an unknown model on the right URL is still called one, when asked for a completion too
    provider = get_provider("openai", model="gpt-9", base_url=root + "/v1")
    with pytest.raises(ProviderError, match="has no model 'gpt-9'"):
        await provider.complete([{"role": "user", "content": "hi"}], temperature=0.4, seed=1, max_tokens=8)
    await provider.aclose()
