"""Session.map over 1,000 rows, 50 ms of server latency each, 16 at a time.

Compared with the ideal (rows x latency / concurrency) and, in the same run, with plain
``asyncio.Semaphore`` loops doing the same requests (unstreamed, as map sends them; ``--stream``
streams every client): bare ``aiohttp``, ``httpx`` on ``httpx-aiohttp``'s transport, a raw
``httpx.AsyncClient`` and ``AsyncOpenAI``. The fake API runs in its own process, so the CPU time
(``time.process_time()``) is the client's alone. Several rounds, alternating and in turn order; the
table shows medians and the spread. The target: Session.map <= 1.10x ideal and <= 1.1 ms client
CPU per row, and ahead of every anchor but bare aiohttp.

Then ``Session.map(..., schema=Row)`` against plain ``Session.map``, round by round: each row's
prompt is a ``Row`` as JSON and a second fake API answers each prompt with itself, so both runs
send and read the same text and differ only by the schema (``response_format`` in each body, the
validation, the typed columns). The target there: client CPU per row within 15 % of the plain run's
(the median of the rounds' ratios).

    python benchmarks/bench_map.py [--rows 1000] [--concurrency 16] [--latency 0.05] [--rounds 5]
                                   [--stream] [--clients-only | --schema-only]
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
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel

from benchmarks._server import fake_server
from oxen_notebook import Session

MODEL = "test-model"
WARM_UP = 128  # rows
Run = tuple[list[str], float, float]  # the replies, wall seconds, client CPU seconds


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


def _timed(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """``run()``'s result, wall seconds and this process's CPU seconds (the server is elsewhere)."""
    gc.collect()  # the previous client's garbage is not this one's CPU
    start, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - start, time.process_time() - cpu


def run_map(url: str, prompts: list[str], concurrency: int, stream: bool = False) -> Run:
    session = Session(model=MODEL, base_url=url, api_key="bench")
    options = {"concurrency": concurrency, "progress": False, "stream": stream}
    # Warmed up on enough rows for the batch pool (aiohttp, from 100 rows): its import is not timed,
    # as the anchors' imports are not.
    session.map(prompts[:WARM_UP], "{text}", **options)
    out, elapsed, cpu = _timed(lambda: session.map(prompts, "{text}", **options))
    return list(out["reply"]), elapsed, cpu


def run_map_schema(url: str, prompts: list[str], concurrency: int) -> Run:
    session = Session(model=MODEL, base_url=url, api_key="bench")
    options = {"concurrency": concurrency, "progress": False, "schema": Row}
    session.map(prompts[:WARM_UP], "{text}", **options)
    out, elapsed, cpu = _timed(lambda: session.map(prompts, "{text}", **options))
    assert out["error"].isna().all() and list(out["age"]) == list(range(len(prompts))), "rows did not parse"
    assert str(out["age"].dtype) == "Int64"
    return list(out["reply"]), elapsed, cpu


def _loop(
    open_client: Callable[[], Any],
    one: Callable[[Any, str], Awaitable[str]],
    close: Callable[[Any], Awaitable[Any]],
    prompts: list[str],
    concurrency: int,
) -> Run:
    """A plain ``asyncio.Semaphore`` loop of ``one(client, prompt)`` over the prompts: warmed up on
    as many rows as run at once, then timed on all of them."""

    async def main() -> Run:
        client = open_client()
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(prompt: str) -> str:
            async with semaphore:
                return await one(client, prompt)

        await asyncio.gather(*(bounded(p) for p in prompts[:concurrency]))
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        replies = await asyncio.gather(*(bounded(p) for p in prompts))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        await close(client)
        return list(replies), elapsed, cpu

    return asyncio.run(main())


def _body(prompt: str, stream: bool) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream}


def _sse_text(lines: list[str]) -> str:
    parts = []
    for line in lines:
        if line.startswith("data: {"):
            choices = json.loads(line[6:]).get("choices") or [{}]
            parts.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(parts)


def _completion_text(body: bytes) -> str:
    return json.loads(body)["choices"][0]["message"]["content"]


def run_openai(url: str, prompts: list[str], concurrency: int, stream: bool = False) -> Run:
    from openai import AsyncOpenAI

    async def one(client: Any, prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            completion = await client.chat.completions.create(model=MODEL, messages=messages)
            return completion.choices[0].message.content
        chunks = await client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        parts = []
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    def open_client() -> Any:
        return AsyncOpenAI(base_url=url, api_key="bench", max_retries=2)

    return _loop(open_client, one, lambda c: c.close(), prompts, concurrency)


def _httpx_loop(transport: Callable[[], Any] | None, url: str, prompts: list[str], concurrency: int,
                stream: bool) -> Run:  # fmt: skip
    import httpx

    async def one(client: httpx.AsyncClient, prompt: str) -> str:
        if not stream:
            response = await client.post("/chat/completions", json=_body(prompt, False))
            return _completion_text(response.content)
        async with client.stream("POST", "/chat/completions", json=_body(prompt, True)) as response:
            return _sse_text([line async for line in response.aiter_lines()])

    def open_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": "Bearer bench"},
            transport=transport() if transport is not None else None,
        )

    return _loop(open_client, one, lambda c: c.aclose(), prompts, concurrency)


def run_httpx(url: str, prompts: list[str], concurrency: int, stream: bool = False) -> Run:
    return _httpx_loop(None, url, prompts, concurrency, stream)


def run_httpx_aiohttp(url: str, prompts: list[str], concurrency: int, stream: bool = False) -> Run:
    from httpx_aiohttp import AiohttpTransport

    return _httpx_loop(AiohttpTransport, url, prompts, concurrency, stream)


def run_aiohttp(url: str, prompts: list[str], concurrency: int, stream: bool = False) -> Run:
    import aiohttp

    endpoint = f"{url}/chat/completions"
    headers = {"Authorization": "Bearer bench"}

    async def one(client: aiohttp.ClientSession, prompt: str) -> str:
        async with client.post(endpoint, json=_body(prompt, stream), headers=headers) as response:
            if not stream:
                return _completion_text(await response.read())
            return _sse_text([line.decode().rstrip("\r\n") async for line in response.content])

    return _loop(aiohttp.ClientSession, one, lambda c: c.close(), prompts, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stream", action="store_true", help="every client streams (map(stream=True))")
    parser.add_argument("--clients-only", action="store_true", help="skip schema=Row against plain map")
    parser.add_argument("--schema-only", action="store_true", help="only schema=Row against plain map")
    parser.add_argument("--serve-prompts", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_prompts:
        serve_prompts(args.latency)
        return
    if not args.schema_only:
        compare_clients(args)
    if not args.clients_only:
        compare_schema(args)


MAP = "Session.map"
ANCHORS: dict[str, Callable[..., Run]] = {
    MAP: run_map,
    "aiohttp.ClientSession": run_aiohttp,
    "httpx + httpx-aiohttp transport": run_httpx_aiohttp,
    "httpx.AsyncClient": run_httpx,
    "AsyncOpenAI": run_openai,
}


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def compare_clients(args: argparse.Namespace) -> None:
    prompts = [f"row {i}" for i in range(args.rows)]
    expected = [f"Echo: {p}" for p in prompts]
    ideal = args.rows * args.latency / args.concurrency
    ratio: dict[str, list[float]] = {name: [] for name in ANCHORS}
    cpu_ms: dict[str, list[float]] = {name: [] for name in ANCHORS}
    with fake_server("--latency", str(args.latency)) as url:
        for i in range(args.rounds):  # interleaved, and in turn order, so a noisy neighbour hurts all alike
            names = list(ANCHORS)
            for name in names[i % len(names) :] + names[: i % len(names)]:
                replies, elapsed, cpu = ANCHORS[name](url, prompts, args.concurrency, args.stream)
                assert replies == expected, f"{name} returned wrong replies"
                ratio[name].append(elapsed / ideal)
                cpu_ms[name].append(1000 * cpu / args.rows)

    kind = "streamed" if args.stream else "unstreamed"
    print(
        f"\n{args.rows} {kind} rows, {args.latency * 1000:.0f} ms server latency, concurrency "
        f"{args.concurrency}, {args.rounds} rounds; ideal {ideal:.3f} s; medians (min-max)\n"
    )
    print(f"| {'client':<32} | wall vs ideal | (spread)  | client CPU ms/row | (spread)  |")
    print(f"| {'-' * 32} | ------------: | --------- | ----------------: | --------- |")
    for name in ANCHORS:
        print(
            f"| {name:<32} | {statistics.median(ratio[name]):12.2f}x | {_spread(ratio[name]):<9} | "
            f"{statistics.median(cpu_ms[name]):17.2f} | {_spread(cpu_ms[name]):<9} |"
        )
    wall, cpu = statistics.median(ratio[MAP]), statistics.median(cpu_ms[MAP])
    behind = [
        name
        for name in ANCHORS
        if name not in (MAP, "aiohttp.ClientSession")
        and (statistics.median(ratio[name]) < wall or statistics.median(cpu_ms[name]) < cpu)
    ]
    met = wall <= 1.10 and cpu <= 1.1 and not behind
    print(
        f"\ntarget (<= 1.10x ideal, <= 1.1 ms CPU/row, ahead of all but bare aiohttp): "
        f"{'met' if met else 'NOT met'}{f' (behind {behind})' if behind else ''}"
    )


def compare_schema(args: argparse.Namespace) -> None:
    rows = [Row(name=f"row {i}", age=i).model_dump_json() for i in range(args.rows)]
    plain, typed = [], []
    with prompt_server(args.latency) as url:
        for _ in range(args.rounds):
            for run, cpus in ((run_map, plain), (run_map_schema, typed)):
                replies, _, cpu = run(url, rows, args.concurrency)
                assert replies == rows, f"{run.__name__} returned wrong replies"
                cpus.append(cpu)
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
