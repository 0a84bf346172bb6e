"""Session.map over 1,000 rows, 50 ms of server latency each, 16 at a time.

Compared with the ideal (rows x latency / concurrency) and, in the same run, with an
``AsyncOpenAI`` + ``asyncio.Semaphore`` loop and a raw ``httpx.AsyncClient`` loop doing the same
streamed requests. The fake API runs in its own process so its CPU time is not the client's.

    python benchmarks/bench_map.py [--rows 1000] [--concurrency 16] [--latency 0.05] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._server import fake_server
from oxen_notebook import Session

MODEL = "test-model"


def run_map(url: str, prompts: list[str], concurrency: int) -> list[str]:
    session = Session(model=MODEL, base_url=url, api_key="bench")
    session.map(prompts[:concurrency], "{text}", concurrency=concurrency, progress=False)  # warm up
    start, cpu = time.perf_counter(), time.process_time()
    out = session.map(prompts, "{text}", concurrency=concurrency, progress=False)
    run_map.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]
    run_map.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
    return list(out["reply"])


def run_openai(url: str, prompts: list[str], concurrency: int) -> list[str]:
    from openai import AsyncOpenAI

    async def main() -> list[str]:
        client = AsyncOpenAI(base_url=url, api_key="bench", max_retries=2)
        semaphore = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> str:
            async with semaphore:
                stream = await client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": prompt}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                parts = []
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                return "".join(parts)

        await asyncio.gather(*(one(p) for p in prompts[:concurrency]))  # warm up
        start, cpu = time.perf_counter(), time.process_time()
        replies = await asyncio.gather(*(one(p) for p in prompts))
        run_openai.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]
        run_openai.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
        await client.close()
        return list(replies)

    return asyncio.run(main())


def run_httpx(url: str, prompts: list[str], concurrency: int) -> list[str]:
    import httpx

    async def main() -> list[str]:
        client = httpx.AsyncClient(base_url=url, headers={"Authorization": "Bearer bench"})
        semaphore = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> str:
            body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True}
            async with semaphore, client.stream("POST", "/chat/completions", json=body) as response:
                parts = []
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        parts.append(choices[0].get("delta", {}).get("content") or "")
                return "".join(parts)

        await asyncio.gather(*(one(p) for p in prompts[:concurrency]))  # warm up
        start, cpu = time.perf_counter(), time.process_time()
        replies = await asyncio.gather(*(one(p) for p in prompts))
        run_httpx.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]
        run_httpx.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
        await client.aclose()
        return list(replies)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    prompts = [f"row {i}" for i in range(args.rows)]
    expected = [f"Echo: {p}" for p in prompts]
    ideal = args.rows * args.latency / args.concurrency
    runners: dict[str, Callable[[str, list[str], int], list[str]]] = {
        "Session.map": run_map,
        "AsyncOpenAI + Semaphore": run_openai,
        "httpx.AsyncClient + Semaphore": run_httpx,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpus: dict[str, list[float]] = {name: [] for name in runners}
    with fake_server("--latency", str(args.latency)) as url:
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hurts all alike
            for name, run in runners.items():
                replies = run(url, prompts, args.concurrency)
                assert replies == expected, f"{name} returned wrong replies"
                times[name].append(run.elapsed)  # type: ignore[attr-defined]
                cpus[name].append(run.cpu)  # type: ignore[attr-defined]

    print(
        f"\n{args.rows} rows, {args.latency * 1000:.0f} ms server latency, concurrency {args.concurrency}, "
        f"{args.rounds} rounds; ideal {ideal:.3f} s\n"
    )
    openai_best = min(times["AsyncOpenAI + Semaphore"])
    print(f"| {'client':<30} | best s | median s | vs ideal | vs openai | client CPU ms/row |")
    print(f"| {'-' * 30} | -----: | -------: | -------: | --------: | ----------------: |")
    for name, values in times.items():
        best = min(values)
        print(
            f"| {name:<30} | {best:6.3f} | {statistics.median(values):8.3f} | "
            f"{best / ideal:7.2f}x | {best / openai_best:8.2f}x | "
            f"{1000 * statistics.median(cpus[name]) / args.rows:17.2f} |"
        )
    best_map = min(times["Session.map"])
    verdict = "met" if best_map <= 1.2 * ideal and best_map <= openai_best else "NOT met"
    print(f"\ntarget (<= 1.2x ideal and not slower than openai): {verdict}")


if __name__ == "__main__":
    main()
