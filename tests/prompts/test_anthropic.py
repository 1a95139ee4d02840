"""The anthropic provider against a real local server speaking the Messages and Batches API."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prompt_constants import ABC, API_KEY, SLOTS
from wire_servers import client_timeout

from m2i.errors import ProviderError
from m2i.prompts.generate import prompt_from_completion, write_prompt
from m2i.prompts.providers import BatchError, BatchRequest, Completion, get_provider
from m2i.prompts.template import MODE_INSTRUCTIONS, build_request


async def five_prompts(provider, features):
    return [
        await write_prompt(provider, features=features, abc=ABC, mode=mode, temperature=t, seed=seed)
        for _, mode, t, seed in SLOTS
    ]


async def test_temperature_reaches_claude_where_the_api_reads_it(anthropic_server, features, caps):
    provider = get_provider("anthropic", model="claude-sonnet-4-6", capabilities=caps)
    assert await provider.check() == "answers a 1-token request"  # what `m2i doctor` says it checked
    assert provider.realisation == "temperature"
    rows = await five_prompts(provider, features)
    await provider.aclose()

    sent = anthropic_server.posts("/v1/messages")[1:]  # the first one is check()'s probe
    assert [r["body"]["temperature"] for r in sent] == [0.4, 0.4, 0.4, 0.8, 0.8]
    for r in sent:
        assert r["headers"]["anthropic-version"] == "2023-06-01"
        assert r["body"]["model"] == "claude-sonnet-4-6"
        assert r["body"]["max_tokens"] == 400
        system = r["body"]["system"]
        assert system[0]["cache_control"] == {"type": "ephemeral"}
        assert len(system) == 1, "no mode instruction when the temperature is sent"
    assert all(row["realised_by"] == "temperature" for row in rows)
    assert caps.get("anthropic", "claude-sonnet-4-6") == "temperature"
    # the shared system prompt is written to the cache once, then read
    assert rows[0]["tokens_in"] > 0 and rows[0]["cost_usd"] > rows[1]["cost_usd"]


async def test_model_refusing_sampling_gets_its_five_prompts_by_instruction(anthropic_server, features, caps):
    provider = get_provider("anthropic", model="claude-opus-4-7", capabilities=caps)
    rows = await five_prompts(provider, features)
    await provider.aclose()

    assert len(rows) == 5 and all(r["image_prompt"] for r in rows)
    assert [r["realised_by"] for r in rows] == ["instruction"] * 5
    assert caps.get("anthropic", "claude-opus-4-7") == "instruction"
    assert "deprecated" in caps.data[("anthropic", "claude-opus-4-7")][1]

    sent = anthropic_server.posts("/v1/messages")
    assert "temperature" in sent[0]["body"]  # the first request learned it from the 400
    answered = sent[1:]
    assert len(answered) == 5 and all("temperature" not in r["body"] for r in answered)
    assert all(r["headers"]["anthropic-version"] != "2023-06-01" for r in answered)
    instructions = [r["body"]["system"][1]["text"] for r in answered]
    assert instructions == [MODE_INSTRUCTIONS["convergent"]] * 3 + [MODE_INSTRUCTIONS["divergent"]] * 2
    assert rows[0]["llm_attempts"] == 2 and all(r["llm_attempts"] == 1 for r in rows[1:])

    # A new provider with the same store (a restarted runner) never sends a temperature again.
    again = get_provider("anthropic", model="claude-opus-4-7", capabilities=caps)
    await again.check()
    assert again.realisation == "instruction"
    await write_prompt(again, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=9)
    await again.aclose()
    assert all("temperature" not in r["body"] for r in anthropic_server.posts("/v1/messages")[6:])


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "headers": {"retry-after": "0.3"}},
        {"status": 500},
        {"status": 529},
        "drop",
        ("hang", 6.0),
        "malformed",
    ],
    ids=["429-retry-after", "500", "529-overloaded", "dropped-connection", "timeout", "malformed-body"],
)
async def test_transient_fault_is_retried_and_the_prompt_done_once(anthropic_server, features, fast_retry, fault):
    provider = get_provider("anthropic", model="claude-sonnet-4-6", retry=fast_retry, timeout=client_timeout(fault))
    anthropic_server.inject("/v1/messages", fault)
    t0 = time.perf_counter()
    row = await write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=1)
    elapsed = time.perf_counter() - t0
    await provider.aclose()
    assert row["image_prompt"] and row["llm_attempts"] == 2
    assert anthropic_server.ok == 1, "exactly one successful completion, no duplicate"
    assert len(anthropic_server.posts("/v1/messages")) == 2
    if isinstance(fault, dict) and "retry-after" in fault.get("headers", {}):
        assert elapsed >= 0.3, "Retry-After was honoured"


async def test_persistent_server_error_fails_retryably_with_the_error_kept(anthropic_server, features, fast_retry):
    provider = get_provider("anthropic", model="claude-sonnet-4-6", retry=fast_retry)
    anthropic_server.inject("/v1/messages", *[{"status": 503, "message": "upstream down"}] * 10)
    with pytest.raises(ProviderError) as info:
        await write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=1)
    await provider.aclose()
    assert info.value.retryable
    assert "503" in str(info.value) and "upstream down" in str(info.value)
    assert info.value.attempts == 4
    assert len(anthropic_server.posts("/v1/messages")) == 4 and anthropic_server.ok == 0


@pytest.mark.parametrize("fault", ["cut", "empty", ("text", "Sure! Here is a lovely image idea for you.")])
async def test_unusable_answer_is_asked_again(anthropic_server, features, fault):
    provider = get_provider("anthropic", model="claude-sonnet-4-6")
    anthropic_server.inject("/v1/messages", fault)
    row = await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=1)
    await provider.aclose()
    assert row["image_prompt"].startswith("a quiet harbour")
    assert row["llm_attempts"] == 2 and anthropic_server.ok == 2
    assert row["tokens_out"] > 0


async def test_a_refusal_fails_at_once_with_the_reason(anthropic_server, features):
    provider = get_provider("anthropic", model="claude-sonnet-4-6")
    anthropic_server.inject("/v1/messages", "refusal", "refusal", "refusal")
    with pytest.raises(ProviderError) as info:
        await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=1)
    await provider.aclose()
    assert not info.value.retryable
    assert str(info.value) == ("anthropic model claude-sonnet-4-6 gave no visual prompt; "
                               "the model refused: I can't help with that request.")
    assert '"stop_reason":"refusal"' in info.value.raw
    assert info.value.attempts == 1 and len(anthropic_server.posts("/v1/messages")) == 1


async def test_no_prompt_lost_or_duplicated_under_concurrent_faults(anthropic_server, features, fast_retry):
    # a timeout long enough that only the hung request times out, even on a busy machine
    provider = get_provider("anthropic", model="claude-sonnet-4-6", retry=fast_retry, timeout=3.0)
    anthropic_server.inject("/v1/messages", {"status": 429, "headers": {"retry-after": "0.05"}}, {"status": 500},
                            "drop", "malformed", ("hang", 4.0), "empty", {"status": 529}, "cut")
    rows = await asyncio.gather(*[
        write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=i)
        for i in range(40)
    ])
    await provider.aclose()
    assert len(rows) == 40 and all(r["image_prompt"] for r in rows)
    # two content failures (empty, cut off) cost one extra completion each
    assert anthropic_server.ok == 42
    assert sum(r["llm_attempts"] for r in rows) == len(anthropic_server.posts("/v1/messages"))


async def test_missing_key_is_one_sentence_before_any_request(anthropic_server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    provider = get_provider("anthropic", model="claude-sonnet-4-6")
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY is not set") as info:
        await provider.check()
    assert str(info.value).count(". ") == 0 and not info.value.retryable
    assert anthropic_server.requests == []


async def test_rejected_key_and_unknown_model_are_clear(anthropic_server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-000000")
    provider = get_provider("anthropic", model="claude-sonnet-4-6")
    with pytest.raises(ProviderError, match="rejected the key in ANTHROPIC_API_KEY") as info:
        await provider.check()
    assert "sk-ant-wrong-key-000000" not in str(info.value)
    await provider.aclose()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    provider = get_provider("anthropic", model="claude-nonexistent-1")
    with pytest.raises(ProviderError, match="no model 'claude-nonexistent-1'"):
        await provider.check()
    await provider.aclose()


async def test_a_base_url_ending_in_v1_is_not_called_a_missing_model(anthropic_server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_server.url + "/v1")
    provider = get_provider("anthropic", model="claude-sonnet-4-6")
    with pytest.raises(ProviderError, match=r"^Nothing answers at .*/v1/v1/messages \(404: .*\): the base URL "
                                            r".*/v1 looks wrong; ANTHROPIC_BASE_URL .* without /v1") as info:
        await provider.check()
    assert "no model" not in str(info.value) and not info.value.retryable
    await provider.aclose()


async def test_batch_submit_status_collect(anthropic_server, features, caps):
    provider = get_provider("anthropic", model="claude-sonnet-4-6", capabilities=caps)
    reqs = []
    for slot, mode, t, seed in SLOTS:
        r = build_request(features, ABC, mode=mode, temperature=t, seed=seed)
        reqs.append(BatchRequest(custom_id=f"prompt-{slot}", messages=r.messages, temperature=t, seed=seed,
                                 max_tokens=r.max_tokens, system=r.system, instruction=r.instruction))
    batch_id = await provider.submit_batch(reqs)
    assert batch_id.startswith("msgbatch_")
    create = anthropic_server.posts("/v1/messages/batches")[0]
    assert create["headers"]["anthropic-version"] == "2023-06-01"
    assert [q["params"]["temperature"] for q in create["body"]["requests"]] == [0.4, 0.4, 0.4, 0.8, 0.8]
    assert await provider.batch_status(batch_id) == "ended"
    await provider.aclose()

    # a restarted runner collects from the stored id alone, without resubmitting
    fresh = get_provider("anthropic", model="claude-sonnet-4-6", capabilities=caps)
    results = await fresh.collect_batch(batch_id)
    await fresh.aclose()
    assert sorted(results) == [f"prompt-{i}" for i in range(5)]
    assert len(anthropic_server.posts("/v1/messages/batches")) == 1
    comp = results["prompt-3"]
    assert isinstance(comp, Completion)
    row = prompt_from_completion(comp, provider="anthropic")
    assert row["image_prompt"] and row["cost_usd"] is not None


def test_a_batch_answer_cut_off_or_refused_is_not_stored(monkeypatch):
    from wire_servers import default_answer

    full = default_answer({"temperature": 0.4}, 1)
    cut = Completion(text=full[: full.index("becomes") + 12], model="claude-sonnet-4-6", stop_reason="max_tokens")
    with pytest.raises(ProviderError, match=r"cut off at the token limit \(max_tokens 400\)") as info:
        prompt_from_completion(cut, provider="anthropic")
    assert info.value.retryable, "sent again"
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    refused = Completion(text=f"I can't help with that request ({API_KEY}).", model="claude-sonnet-4-6",
                         stop_reason="refusal", refusal=True)
    with pytest.raises(ProviderError) as info:
        prompt_from_completion(refused, provider="anthropic")
    assert not info.value.retryable
    assert str(info.value) == "claude-sonnet-4-6 gave no visual prompt; the model refused: I can't help with that request (***)."


async def test_batch_for_a_sampling_refuser(anthropic_server, features, caps):
    # unknown capability: the batch is sent with temperatures, the items error, the store learns
    provider = get_provider("anthropic", model="claude-opus-4-7", capabilities=caps)
    r = build_request(features, ABC, mode="divergent", temperature=0.8, seed=1)
    req = BatchRequest(custom_id="p1", messages=r.messages, temperature=0.8, seed=1, max_tokens=300,
                       system=r.system, instruction=r.instruction)
    first = await provider.collect_batch(await provider.submit_batch([req]))
    assert isinstance(first["p1"], BatchError) and first["p1"].retryable
    assert caps.get("anthropic", "claude-opus-4-7") == "instruction"
    # resubmitted: instruction instead of temperature
    second = await provider.collect_batch(await provider.submit_batch([req]))
    await provider.aclose()
    assert isinstance(second["p1"], Completion) and second["p1"].realised_by == "instruction"
    params = anthropic_server.posts("/v1/messages/batches")[1]["body"]["requests"][0]["params"]
    assert "temperature" not in params and params["system"][1]["text"] == MODE_INSTRUCTIONS["divergent"]


async def test_api_key_never_leaks(anthropic_server, features, fast_retry, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    provider = get_provider("anthropic", model="claude-sonnet-4-6", retry=fast_retry)
    # a server that echoes the key back in its error and in its answer
    anthropic_server.inject("/v1/messages", {"status": 500, "message": f"bad upstream for key {API_KEY}"},
                            ("text", '{"title": "t", "image_prompt": "a red fox in snow", "negative_prompt": "",'
                                     ' "palette": ["red"], "description": "key ' + API_KEY + '"}'))
    row = await write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=1)
    anthropic_server.inject("/v1/messages", *[{"status": 500, "message": f"still {API_KEY}"}] * 4)
    with pytest.raises(ProviderError) as info:
        await write_prompt(provider, features=features, abc=ABC, mode="convergent", temperature=0.4, seed=2)
    await provider.aclose()
    assert API_KEY not in str(info.value) and "***" in str(info.value)
    assert API_KEY not in row["raw"] and API_KEY not in repr(row)
    assert API_KEY not in caplog.text


async def test_generate_batch_stores_the_id_before_waiting_and_a_restart_collects(anthropic_server, features, caps):
    from m2i.prompts.batch import BatchItem, generate_batch

    anthropic_server.batch_polls = 2  # in progress at the first poll
    items = [BatchItem(prompt_id=100 + slot, features=features, abc=ABC, mode=mode, temperature=t, seed=seed)
             for slot, mode, t, seed in SLOTS]
    stored: list[tuple[str, list[int]]] = []

    async def store(batch_id, prompt_ids):
        assert anthropic_server.batches[batch_id]["polls"] == 0, "stored before any waiting"
        stored.append((batch_id, prompt_ids))

    provider = get_provider("anthropic", model="claude-sonnet-4-6", capabilities=caps)
    rows = await generate_batch(provider, items, on_submitted=store, poll_s=0.01)
    assert stored and stored[0][1] == [100, 101, 102, 103, 104]
    assert sorted(rows) == [100, 101, 102, 103, 104]
    assert all(isinstance(r, dict) and r["image_prompt"] and r["realised_by"] == "temperature" for r in rows.values())

    # the runner restarts with the stored id: nothing is submitted again
    again = await generate_batch(provider, items, batch_id=stored[0][0], poll_s=0.01)
    await provider.aclose()
    assert len(anthropic_server.posts("/v1/messages/batches")) == 1
    assert {k: v["image_prompt"] for k, v in again.items()} == {k: v["image_prompt"] for k, v in rows.items()}
    assert anthropic_server.ok == 5


async def test_generate_batch_needs_a_batch_api(ollama_server, features):
    from m2i.prompts.batch import BatchItem, generate_batch

    provider = get_provider("ollama", model="llama3.2")
    with pytest.raises(ProviderError, match="no batch API: run without --batch"):
        await generate_batch(provider, [BatchItem(1, features, ABC, "convergent", 0.4, 1)])
    await provider.aclose()
