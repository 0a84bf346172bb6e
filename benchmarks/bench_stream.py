"""Streaming throughput: raw httpx + a hand-written line parser vs the openai SDK vs Session.stream.

One run, one local server (another process), the same chunks for each client; figures are medians of
several alternating rounds, reported as ratios to raw httpx. Also: cold ``import oxen_notebook`` time.

    python benchmarks/bench_stream.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks._server import fake_server
from oxen_notebook import Session

MODEL = "test-model"
# Each client is made once and reused, as a notebook reuses its Session: the figures are per request.
_clients: dict[tuple[str, str], object] = {}


def raw_httpx(base_url: str, n: int) -> int:
    """The baseline: httpx's line iterator and json.loads, nothing else."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True, "fake_chunks": n}
    count = 0
    client = _clients.setdefault(("httpx", base_url), httpx.Client())
    with client.stream("POST", f"{base_url}/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            choices = chunk.get("choices")
            if choices and choices[0]["delta"].get("content"):
                count += 1
    return count


def openai_sdk(base_url: str, n: int) -> int:
    from openai import OpenAI

    client = _clients.setdefault(("openai", base_url), OpenAI(base_url=base_url, api_key="unused"))
    count = 0
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "go"}], stream=True, extra_body={"fake_chunks": n}
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            count += 1
    return count


def session_stream(base_url: str, n: int) -> int:
    session = _clients.setdefault(
        ("session", base_url),
        Session(model=MODEL, base_url=base_url, api_key="unused", validate_schema=False),
    )
    return sum(1 for _ in session.stream("go", history=False, extra_body={"fake_chunks": n}))


def measure(fn: Callable[[str, int], int], base_url: str, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    got = fn(base_url, n)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if got != n:
        raise SystemExit(f"{fn.__name__} saw {got} chunks, expected {n}")
    return n / wall, cpu / n * 1e6


def import_time(rounds: int) -> float:
    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    base = statistics.median(run("pass") for _ in range(rounds))
    full = statistics.median(run("import oxen_notebook") for _ in range(rounds))
    return (full - base) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    clients = {"raw httpx": raw_httpx, "openai SDK": openai_sdk, "Session.stream": session_stream}
    with fake_server("--chunks", "100") as base_url:
        for fn in clients.values():
            fn(base_url, 100)  # warm up
        print(f"{'chunks':>7} {'client':<15} {'chunks/s':>10} {'CPU µs/chunk':>13} {'vs raw httpx':>13}")
        for n in (2_000, 20_000):
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
            for _ in range(args.rounds):
                for name, fn in clients.items():
                    results[name].append(measure(fn, base_url, n))
            base_rate = statistics.median(r for r, _ in results["raw httpx"])
            for name, runs in results.items():
                rate = statistics.median(r for r, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                print(f"{n:>7} {name:<15} {rate:>10,.0f} {cpu:>13.1f} {rate / base_rate:>12.2f}x")
    ms = import_time(args.rounds * 2)
    print(f"cold `import oxen_notebook`: {ms:.0f} ms (target < 150 ms)")


if __name__ == "__main__":
    main()
