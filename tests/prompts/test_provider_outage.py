"""What a provider error is about (this request, the provider being unavailable, or the provider
refusing all work), and the one shared hold while a provider is unavailable; real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prompt_constants import ABC

from m2i.errors import ProviderError
from m2i.prompts.generate import write_prompt
from m2i.prompts.providers import RetryPolicy, get_provider

MSG = [{"role": "user", "content": "Reply with OK."}]


async def _complete(provider):
    return await provider.complete(MSG, temperature=0.4, seed=1, max_tokens=20)


@pytest.mark.parametrize("name", ["anthropic", "ollama", "openai"])
@pytest.mark.parametrize("status,scope", [(401, "provider"), (404, "provider"), (429, "unavailable"),
                                          (503, "unavailable"), (529, "unavailable"), (400, "request")])
async def test_each_provider_says_what_an_error_is_about(name, status, scope, anthropic_server, ollama_server,
                                                         openai_server):
    srv, path, kw = {
        "anthropic": (anthropic_server, "/v1/messages", {}),
        "ollama": (ollama_server, "/api/chat", {"model": "llama3.2"}),
        "openai": (openai_server, "/v1/chat/completions",
                   {"model": "qwen2.5-7b-instruct", "base_url": openai_server.url + "/v1"}),
    }[name]
    provider = get_provider(name, retry=RetryPolicy(max_attempts=1), **kw)
    srv.inject(path, {"status": status, "message": "injected"})
    with pytest.raises(ProviderError) as info:
        await _complete(provider)
    await provider.aclose()
    assert info.value.scope == scope
    assert info.value.retryable == (scope == "unavailable")


async def test_ollama_honours_retry_after_and_the_retry_line_reads_cleanly(ollama_server, caplog):
    """Ollama's client drops the response headers; the provider still waits what Retry-After says, and
    every request waits in the same hold (logged once per hold)."""
    caplog.set_level(logging.DEBUG, logger="m2i")
    provider = get_provider("ollama", model="llama3.2")
    ollama_server.inject("/api/chat", *[{"status": 429, "headers": {"retry-after": "0.6"}}] * 3)
    t0 = time.monotonic()
    rows = await asyncio.gather(*(
        write_prompt(provider, features={"key": "C"}, abc=ABC, mode="convergent", temperature=0.4, seed=i)
        for i in range(3)))
    elapsed = time.monotonic() - t0
    await provider.aclose()
    assert all(r["image_prompt"] for r in rows)
    holds = [r.getMessage() for r in caplog.records if "holding prompts" in r.getMessage()]
    assert holds and all(h == "ollama unavailable (429 rate limited); holding prompts for 0.6 s" for h in holds)
    assert elapsed >= 0.6
    assert not any(".;" in r.getMessage() for r in caplog.records)


async def test_a_provider_that_answers_nothing_for_the_limit_gives_up_in_one_sentence(anthropic_server):
    provider = get_provider("anthropic", model="claude-sonnet-4-6", retry=RetryPolicy(max_attempts=50, base_delay=0.1))
    provider.hold.limit_s = 1.0
    anthropic_server.inject("/v1/messages", *[{"status": 503}] * 200)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await _complete(provider)
    await provider.aclose()
    assert time.monotonic() - t0 < 5
    assert info.value.scope == "provider"
    msg = str(info.value)
    assert msg.startswith("anthropic has answered nothing for 1.") and "503" in msg and "llm_outage_s" in msg
    # a hold wakes one request first: the rest do not all hit the server at the end of every hold
    assert len(anthropic_server.posts("/v1/messages")) < 10


def test_a_base_url_password_is_masked_also_as_the_basic_auth_header_a_server_may_echo():
    """`--base-url http://alice:PASSWORD@host/v1` makes the HTTP client send `Authorization: Basic
    base64(alice:PASSWORD)`; a server that echoes that header in its error must not get the
    credentials into a log line or a prompt row's error."""
    import base64

    from m2i.prompts.providers.base import redact

    get_provider("openai", model="x", base_url="http://alice:PASSW0RD-XYZ-123@127.0.0.1:9/v1")
    basic = base64.b64encode(b"alice:PASSW0RD-XYZ-123").decode()
    echoed = redact(f"400: bad request (headers: Authorization: Basic {basic}; pw PASSW0RD-XYZ-123)")
    assert basic not in echoed and "PASSW0RD" not in echoed and echoed.count("***") == 2
