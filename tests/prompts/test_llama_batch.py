"""The local provider decodes the answers asked for at the same time together (tiny GGUF model)."""

from __future__ import annotations

import asyncio
import re

import pytest

pytest.importorskip("llama_cpp")

from tiny_gguf import write_tiny_llama  # noqa: E402

from m2i.errors import ProviderError  # noqa: E402
from m2i.prompts.providers import get_provider  # noqa: E402

LINES = re.compile(r"^Title: [A-Za-z][a-z]*( [A-Za-z][a-z]*)*\nImage: .+\nAbout: [A-Z].*\.\n$")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


def ask(n: int) -> list[dict]:
    return [{"role": "user", "content": f"Describe a picture for clip {n}: slow, minor, soft."}]


async def test_answers_asked_together_are_decoded_together(tiny_model):
    # the runner asks for a sample's five prompts at once; they share decoding steps (one llama_decode
    # for all of them) and the start of their prompt, which is decoded once
    provider = get_provider("local", model_path=tiny_model, parallel=5, grammar="never")
    system = "You write image prompts for music. " * 8
    answers = await asyncio.gather(*[
        provider.complete(ask(n), system=system, temperature=0.8, seed=n, max_tokens=40) for n in range(5)])
    engine = provider._batched
    await provider.aclose()
    assert all(a.text and a.tokens_out > 0 for a in answers)
    assert len({a.text for a in answers}) == 5, "each answer has its own sampler and seed"
    assert engine.most_in_step == 5, "all five were sampled from one decoding step"
    tokens_out = sum(a.tokens_out for a in answers)
    assert engine.steps < tokens_out / 2, f"{engine.steps} steps for {tokens_out} tokens"
    # the system prompt's ~290 tokens are decoded for the first answer only
    assert engine.prefix_reused >= 4 * 280
    assert engine.tokens_decoded < sum(a.tokens_in for a in answers) - 4 * 280 + tokens_out


async def test_the_prompt_is_the_models_chat_template_and_the_answer_stops_where_asked(tiny_model):
    provider = get_provider("local", model_path=tiny_model, grammar="always")
    tokens, stop = await asyncio.to_thread(provider._prompt, [{"role": "system", "content": "Be brief."},
                                                             *ask(1)])
    llm = provider._load()
    chatml = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
              "Describe a picture for clip 1: slow, minor, soft.<|im_end|>\n<|im_start|>assistant\n")
    assert tokens == llm.tokenize(chatml.encode(), add_bos=False, special=True)
    assert "<|im_end|>" in stop and "\n\n" in stop  # the template's end of turn and the provider's stops

    grammar = provider._grammar(None)
    whole = provider._submit(tokens, stop, max_tokens=400, temperature=0.8, seed=3, grammar=grammar).result(60)
    assert LINES.match(whole["choices"][0]["message"]["content"]), "the grammar holds for every token"
    assert whole["choices"][0]["finish_reason"] == "stop"
    cut = provider._submit(tokens, ["\nImage:"], max_tokens=400, temperature=0.8, seed=3,
                           grammar=grammar).result(60)
    assert cut["choices"][0]["message"]["content"] == whole["choices"][0]["message"]["content"].split("\nImage:")[0]
    short = provider._submit(tokens, stop, max_tokens=5, temperature=0.8, seed=3, grammar=grammar).result(60)
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 5 and short["usage"]["prompt_tokens"] == len(tokens)
    await provider.aclose()


async def test_answers_that_do_not_fit_the_context_together_wait_their_turn(tiny_model):
    # each answer reserves its prompt and max_tokens in the shared cache; what does not fit waits
    provider = get_provider("local", model_path=tiny_model, parallel=3, n_ctx=256, grammar="never")
    answers = await asyncio.gather(*[
        provider.complete(ask(n), temperature=0.8, seed=n, max_tokens=120) for n in range(3)])
    assert all(a.tokens_out > 0 for a in answers)
    assert provider._batched.most_in_step == 1
    with pytest.raises(ProviderError, match=r"exceed context window of 256.*raise n_ctx"):
        await provider.complete([{"role": "user", "content": "x" * 400}], temperature=0.8, seed=1, max_tokens=8)
    await provider.aclose()


def endless(provider):
    """A grammar that never lets the answer end, and the prompt tokens for it."""
    from llama_cpp import LlamaGrammar

    tokens, _ = provider._prompt(ask(1))
    return tokens, LlamaGrammar.from_string("root ::= [a-z] root", verbose=False)


async def test_a_cancelled_answer_frees_its_place(tiny_model):
    provider = get_provider("local", model_path=tiny_model, parallel=1, grammar="never")
    tokens, grammar = endless(provider)
    long = asyncio.wrap_future(provider._submit(tokens, [], max_tokens=1500, temperature=0.8, seed=1,
                                                grammar=grammar))
    while not any(provider._batched._slots):
        await asyncio.sleep(0.01)
    long.cancel()
    # with one place only, this answer comes as soon as the cancelled one has left it
    quick = await asyncio.wait_for(provider.complete(ask(2), temperature=0.8, seed=2, max_tokens=4), 30)
    assert quick.tokens_out == 4 and long.cancelled()
    await provider.aclose()


async def test_closing_the_provider_ends_answers_in_progress(tiny_model):
    from m2i.prompts.providers.llama_batch import BatchError

    provider = get_provider("local", model_path=tiny_model)
    tokens, grammar = endless(provider)
    answer = provider._submit(tokens, [], max_tokens=1500, temperature=0.8, seed=1, grammar=grammar)
    while not any(provider._batched._slots):
        await asyncio.sleep(0.01)
    await asyncio.wait_for(provider.aclose(), 30)
    with pytest.raises(BatchError, match="the model was closed"):
        answer.result(5)
    assert provider._batched is None and provider._llm is None


async def test_finished_answers_give_their_cache_up_to_new_ones(tiny_model):
    # a finished answer keeps its tokens for a prompt that starts the same way; one that does not
    # must not leave a new answer without room (each answer here runs to max_tokens: its grammar
    # never lets it end)
    provider = get_provider("local", model_path=tiny_model, parallel=2, n_ctx=512)
    _, grammar = endless(provider)

    def answer(n: int, max_tokens: int):
        tokens, _ = provider._prompt([{"role": "user", "content": f"{n} " * 20}])
        return asyncio.wrap_future(provider._submit(tokens, [], max_tokens=max_tokens, temperature=0.8, seed=n,
                                                    grammar=grammar))

    first = await asyncio.gather(answer(1, 150), answer(2, 150))
    assert provider._batched.most_in_step == 2
    assert sum(len(c) for c in provider._batched._cached) > 400, "both kept their tokens"
    # 62 prompt tokens and 300 answer tokens: not beside both earlier answers in 512 cells
    last = await asyncio.wait_for(answer(3, 300), 30)
    assert [a["usage"]["completion_tokens"] for a in (*first, last)] == [150, 150, 300]
    await provider.aclose()


async def test_a_context_llama_cpp_cannot_make_is_one_sentence_each_time(tiny_model, monkeypatch):
    # what llama.cpp does when the cache does not fit in memory (n_ctx too large): no context
    import llama_cpp.llama_cpp as lib

    real = lib.llama_init_from_model
    monkeypatch.setattr(lib, "llama_init_from_model",
                        lambda model, params: None if params.n_ctx == 1 << 20 else real(model, params))
    provider = get_provider("local", model_path=tiny_model, n_ctx=1 << 20)
    for _ in range(2):  # nothing half-loaded is left behind
        with pytest.raises(ProviderError, match=r"^llama\.cpp cannot make a context of 1048576 tokens for "
                                                r"tiny-llama\.gguf \(Failed to create llama_context\); lower n_ctx\.$"):
            await provider.complete(ask(1), temperature=0.8, seed=1, max_tokens=4)
    assert provider._llm is None


async def test_a_chat_template_that_refuses_the_chat_is_one_sentence(tmp_path):
    # some models' templates refuse a system message (raise_exception in the template)
    refusing = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    model = write_tiny_llama(tmp_path / "no-system.gguf", chat_template=refusing)
    provider = get_provider("local", model_path=model)
    with pytest.raises(ProviderError, match=r"^The chat template of no-system\.gguf refuses m2i's chat \(System "
                                            r"role not supported\); use a GGUF chat model whose template takes"):
        await provider.complete(ask(1), system="You write image prompts.", temperature=0.8, seed=1, max_tokens=4)
    await provider.aclose()


def test_parallel_must_be_positive(tiny_model):
    with pytest.raises(ProviderError, match="parallel must be at least 1, not 0"):
        get_provider("local", model_path=tiny_model, parallel=0)
