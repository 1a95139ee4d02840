"""Benchmark of the prompt stage (issue 4). Not run by CI.

1. Throughput against a remote API: 500 prompts through ``write_prompt`` with ``asyncio.gather``
   and a semaphore (the runner's default concurrency, 32), against the local HTTP server from
   ``tests/prompts/wire_servers.py`` that speaks the Anthropic Messages API and answers each
   request after 1.0 s. Sequential calls would take >= 500 s. The server's own count of
   successful requests must be exactly 500.
2. The embedded local model (SmolLM2-135M-Instruct, llama.cpp, CPU): tokens/s and seconds per
   5-prompt sample (3 convergent at 0.4, 2 divergent at 0.8), on real clip features of the earlier
   system's run, the prompts asked for as the runner asks (in slot order, ``parallel`` in flight, so
   that the model decodes them together; ``--parallel 1`` for one at a time). Seconds per sample is
   the wall time over the number of samples. Timings depend on what else runs on the machine: the
   1-minute load average is printed with them.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_prompts.py [--prompts 500] [--samples 6] [--parallel N]
        [--concurrency 32] [--latency 1.0] [--skip-remote] [--skip-local]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "prompts"))

from wire_servers import AnthropicServer  # noqa: E402

from m2i.prompts.generate import write_prompt  # noqa: E402
from m2i.prompts.providers import get_provider  # noqa: E402

SLOTS = [("convergent", 0.4), ("convergent", 0.4), ("convergent", 0.4), ("divergent", 0.8), ("divergent", 0.8)]


def load_samples() -> list[dict]:
    data = json.loads((ROOT / "tests" / "prompts" / "data" / "legacy_samples.json").read_text())
    return data["samples"]


async def bench_remote(n: int, concurrency: int, latency: float) -> bool:
    samples = load_samples()
    with AnthropicServer(latency=latency) as srv:
        os.environ["ANTHROPIC_API_KEY"] = srv.api_key
        os.environ["ANTHROPIC_BASE_URL"] = srv.url
        provider = get_provider("anthropic", model="claude-sonnet-4-6")
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> dict:
            s = samples[i % len(samples)]
            mode, temp = SLOTS[i % 5]
            async with sem:
                return await write_prompt(provider, features=s["musical_features"], abc=s["abc_notation"],
                                          mode=mode, temperature=temp, seed=i)

        t0 = time.perf_counter()
        rows = await asyncio.gather(*[one(i) for i in range(n)])
        wall = time.perf_counter() - t0
        await provider.aclose()
        ok = srv.ok
    done = sum(1 for r in rows if r["image_prompt"])
    print(f"remote_prompts: {done} of {n} done (concurrency {concurrency}, server latency {latency:.1f} s)")
    print(f"remote_wall_s: {wall:.1f} (target <= 60; sequential would take >= {n * latency:.0f})")
    print(f"remote_prompts_per_s: {n / wall:.1f}")
    print(f"remote_server_successful_requests: {ok} (target exactly {n})")
    return wall <= 60 and ok == n and done == n


async def bench_local(n_samples: int, parallel: int | None) -> bool:
    samples = load_samples()
    provider = get_provider("local", parallel=parallel)
    t0 = time.perf_counter()
    await provider.check()
    print(f"local_model: {provider.model} ({provider.n_threads} thread(s), {provider.parallel} answer(s) decoded "
          f"together); load_s: {time.perf_counter() - t0:.2f}")
    # as the runner asks: the prompts in slot order, `parallel` of them in flight (GenerateStage's concurrency)
    sem = asyncio.Semaphore(provider.parallel)
    finished: dict[int, float] = {}
    failed = 0

    async def one(k: int, slot: int) -> dict | None:
        nonlocal failed
        s = samples[k % len(samples)]
        mode, temp = SLOTS[slot]
        async with sem:
            try:
                row = await write_prompt(provider, features=s["musical_features"], abc=s["abc_notation"],
                                         mode=mode, temperature=temp, seed=1000 * k + slot)
            except Exception as exc:  # noqa: BLE001 - counted and shown
                failed += 1
                print(f"  failed: {exc}")
                return None
        finished[k] = time.perf_counter()
        print(f"  sample {k} slot {slot} {mode}: {row['latency_ms'] / 1000:.1f} s, {row['tokens_out']} tokens, "
              f"{row['llm_attempts']} call(s): {row['image_prompt']}")
        return row

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    rows = [r for r in await asyncio.gather(*[one(k, slot) for k in range(n_samples) for slot in range(5)]) if r]
    wall = time.perf_counter() - t0
    engine = provider._batched
    steps, decoded, reused = engine.steps, engine.tokens_decoded, engine.prefix_reused
    await provider.aclose()
    tokens_out = sum(r["tokens_out"] or 0 for r in rows)
    print(f"local_wall_s: {wall:.1f} for {n_samples} samples (1-min load average at start {load:.1f} on "
          f"{os.cpu_count()} cores); sample k done at {', '.join(f'{finished[k] - t0:.1f}' for k in sorted(finished))} s")
    print(f"local_tokens_per_s: {tokens_out / wall:.1f} ({tokens_out} generated, {sum(r['llm_attempts'] for r in rows)} "
          f"calls; llama.cpp steps {steps}, tokens decoded {decoded}, prompt tokens reused from the cache {reused})")
    print(f"local_s_per_sample: {wall / n_samples:.1f} (target <= 8)")
    print(f"local_failed_prompts: {failed} of {5 * n_samples}")
    return wall / n_samples <= 8.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=None, help="answers the local model decodes together "
                    "(default: the provider's, 5; 1 is one at a time)")
    ap.add_argument("--skip-remote", action="store_true")
    ap.add_argument("--skip-local", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ok = True
    if not args.skip_remote:
        ok &= asyncio.run(bench_remote(args.prompts, args.concurrency, args.latency))
    if not args.skip_local:
        ok &= asyncio.run(bench_local(args.samples, args.parallel))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
