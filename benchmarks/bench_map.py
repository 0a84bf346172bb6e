"""Session.map over 1,000 rows, 50 ms of server latency each, 16 at a time.

Compared with the ideal (rows x latency / concurrency) and, in the same run, with an
``AsyncOpenAI`` + ``asyncio.Semaphore`` loop and a raw ``httpx.AsyncClient`` loop doing the same
streamed requests. The fake API runs in its own process so its CPU time is not the client's.

Then ``Session.map(..., schema=Row)`` against plain ``Session.map``, round by round: each row's
prompt is a ``Row`` as JSON and a second fake API answers each prompt with itself, so both runs
send and read the same text and differ only by the schema (``response_format`` in each body, the
validation, the typed columns). The target there: client CPU per row within 15 % of the plain run's
(the median of the rounds' ratios).

    python benchmarks/bench_map.py [--rows 1000] [--concurrency 16] [--latency 0.05] [--rounds 3]
                                   [--schema-only]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel

from benchmarks._server import fake_server
from oxen_notebook import Session

MODEL = "test-model"


class Row(BaseModel):
    name: str
    age: int


def serve_prompts(latency: float) -> None:
    """In the child process: the fake API, answering each request with its prompt."""
    from tests.fake_api import FakeAPI, Script, _prompt_text

    server = FakeAPI(port=0)
    server.api_key = None
    server.handler = lambda body: Script(text=_prompt_text(body), latency=latency)
    print(server.base_url, flush=True)
    server.httpd.serve_forever()


@contextlib.contextmanager
def prompt_server(latency: float) -> Iterator[str]:
    """The base URL of :func:`serve_prompts` running in another process."""
    command = [sys.executable, __file__, "--serve-prompts", "--latency", str(latency)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()  # printed once it listens
    finally:
        proc.terminate()
        proc.wait(5)


def run_map(url: str, prompts: list[str], concurrency: int) -> list[str]:
    session = Session(model=MODEL, base_url=url, api_key="bench")
    session.map(prompts[:concurrency], "{text}", concurrency=concurrency, progress=False)  # warm up
    gc.collect()  # the previous client's garbage is not this one's CPU
    start, cpu = time.perf_counter(), time.process_time()
    out = session.map(prompts, "{text}", concurrency=concurrency, progress=False)
    run_map.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]
    run_map.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
    return list(out["reply"])


def run_map_schema(url: str, prompts: list[str], concurrency: int) -> list[str]:
    session = Session(model=MODEL, base_url=url, api_key="bench")
    session.map(prompts[:concurrency], "{text}", concurrency=concurrency, progress=False, schema=Row)
    gc.collect()  # the previous client's garbage is not this one's CPU
    start, cpu = time.perf_counter(), time.process_time()
    out = session.map(prompts, "{text}", concurrency=concurrency, progress=False, schema=Row)
    run_map_schema.elapsed = time.perf_counter() - start  # type: ignore[attr-defined]
    run_map_schema.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
    assert out["error"].isna().all() and list(out["age"]) == list(range(len(prompts))), "rows did not parse"
    assert str(out["age"].dtype) == "Int64"
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
        gc.collect()  # the previous client's garbage is not this one's CPU
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
        gc.collect()  # the previous client's garbage is not this one's CPU
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
    parser.add_argument("--schema-only", action="store_true", help="only schema=Row against plain map")
    parser.add_argument("--serve-prompts", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_prompts:
        serve_prompts(args.latency)
        return
    if not args.schema_only:
        compare_clients(args)
    compare_schema(args)


def compare_clients(args: argparse.Namespace) -> None:
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


def compare_schema(args: argparse.Namespace) -> None:
    rows = [Row(name=f"row {i}", age=i).model_dump_json() for i in range(args.rows)]
    plain, typed = [], []
    with prompt_server(args.latency) as url:
        for _ in range(args.rounds):
            for run, cpu in ((run_map, plain), (run_map_schema, typed)):
                assert run(url, rows, args.concurrency) == rows, f"{run.__name__} returned wrong replies"
                cpu.append(run.cpu)  # type: ignore[attr-defined]
    ratios = [t / p for p, t in zip(plain, typed, strict=True)]  # each round's pair ran back to back
    print("\nclient CPU ms/row, schema=Row vs none, per round:")
    for i, (p, t, r) in enumerate(zip(plain, typed, ratios, strict=True), 1):
        print(f"  round {i}: {1000 * p / args.rows:.3f} vs {1000 * t / args.rows:.3f} ms/row ({r - 1:+.1%})")
    # Each round's pair ran back to back, so a neighbour's load hits both alike: the median of the
    # rounds' ratios is the figure (one lucky round moves the ratio of the best runs a lot).
    median = statistics.median(ratios)
    best = min(typed) / min(plain)
    print(f"median of the rounds' ratios {median - 1:+.1%}; best run of each {best - 1:+.1%}")
    verdict = "met" if median <= 1.15 else "NOT met"
    print(f"target (schema= within 15 % of the plain run's CPU per row): {verdict}")


if __name__ == "__main__":
    main()
