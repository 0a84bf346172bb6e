"""The embedded local model: load time, time to first token, tokens/s, and the Session's overhead.

Same process, same GGUF, same prompt and settings (temperature 0, fixed seed, so every run
generates the same tokens), the same threads: the bare binding (xllamacpp's
``Server.handle_chat_completions`` streaming into a callback) against ``Session.stream`` and
``Session.astream`` (transport, worker thread, SSE bytes, decoder, reply, records). When
llama-cpp-python is installed too, its ``create_chat_completion(stream=True)`` runs alongside:
the binding the local model used before. Every run evaluates the whole prompt (``cache_prompt``
off; llama-cpp-python's cache is reset). Figures are medians of alternating rounds (the order
rotates each round); ratios are against the bare xllamacpp binding (Session target: <= 1.05x).

    python benchmarks/bench_local.py [--rounds 7] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oxen_notebook import Session
from oxen_notebook._local import _model as _local

PROMPT = "Write a short story about a robot who learns to paint."
MESSAGES = [{"role": "user", "content": PROMPT}]
SEED = 7
NO_CACHE = {"cache_prompt": False}
Run = Callable[[], tuple[float, float, str]]


def bare_xllamacpp(server: Any, tokens: int) -> tuple[float, float, str]:
    """xllamacpp alone: (time to first token, total seconds, text)."""
    t0 = time.perf_counter()
    first: list[float] = []
    parts: list[str] = []

    def on_chunk(raw: str) -> bool:
        chunk = json.loads(raw)
        content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
        if content:
            if not first:
                first.append(time.perf_counter() - t0)
            parts.append(content)
        return False

    body = {"messages": MESSAGES, "stream": True, "temperature": 0, "seed": SEED, "max_tokens": tokens}
    server.handle_chat_completions(json.dumps({**body, **NO_CACHE}), on_chunk)
    return (first or [0.0])[0], time.perf_counter() - t0, "".join(parts)


def llama_cpp_python(model: Any, tokens: int) -> tuple[float, float, str]:
    """llama-cpp-python alone, as the local model ran before."""
    model.reset()
    t0 = time.perf_counter()
    first = None
    parts = []
    for chunk in model.create_chat_completion(
        MESSAGES, stream=True, temperature=0, seed=SEED, max_tokens=tokens
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            if first is None:
                first = time.perf_counter() - t0
            parts.append(content)
    return first or 0.0, time.perf_counter() - t0, "".join(parts)


def session_stream(session: Session, tokens: int) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    first = None
    parts = []
    for delta in session.stream(PROMPT, history=False, max_tokens=tokens, extra_body=NO_CACHE):
        if first is None:
            first = time.perf_counter() - t0
        parts.append(delta)
    return first or 0.0, time.perf_counter() - t0, "".join(parts)


def session_astream(session: Session, tokens: int) -> tuple[float, float, str]:
    async def run() -> tuple[float, float, str]:
        t0 = time.perf_counter()
        first = None
        parts = []
        async for delta in session.astream(PROMPT, history=False, max_tokens=tokens, extra_body=NO_CACHE):
            if first is None:
                first = time.perf_counter() - t0
            parts.append(delta)
        return first or 0.0, time.perf_counter() - t0, "".join(parts)

    return asyncio.run(run())


def import_ms(module: str, rounds: int) -> float:
    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    base = statistics.median(run("pass") for _ in range(rounds))
    return (statistics.median(run(f"import {module}") for _ in range(rounds)) - base) * 1000


def load_ms(path: Path) -> float:
    """A fresh process: import xllamacpp and load the model into a server."""
    code = (
        "import time, sys; t0 = time.perf_counter()\n"
        "from oxen_notebook._local import _model\n"
        "_model.load_model(_model.model_path('local')); print(time.perf_counter() - t0)"
    )
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root)
    return float(out.stdout) * 1000


def old_binding(path: Path) -> Any | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    import llama_cpp

    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=_local._N_CTX,
        n_threads=_local._THREADS,
        n_threads_batch=_local._THREADS,
        verbose=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()

    path = _local.model_path("local")
    print(
        f"model: {path.name} ({path.stat().st_size / 1e6:.0f} MB), n_ctx {_local._N_CTX}, {_local._THREADS} thread(s)"
    )
    print(
        f"import xllamacpp: {import_ms('xllamacpp', 3):.0f} ms; import + model load: {load_ms(path):.0f} ms"
    )

    server = _local.load_model(path)
    session = Session(model="local", temperature=0, seed=SEED)
    runners: dict[str, Run] = {
        "xllamacpp (bare)": lambda: bare_xllamacpp(server, args.tokens),
        "Session.stream": lambda: session_stream(session, args.tokens),
        "Session.astream": lambda: session_astream(session, args.tokens),
    }
    old = old_binding(path)
    if old is not None:
        runners["llama-cpp-python (before)"] = lambda: llama_cpp_python(old, args.tokens)
    for run in runners.values():  # warm up: the first request also fetches the model's schema
        run()
    completion = session.stream(PROMPT, history=False, max_tokens=args.tokens).consume().usage
    n = completion["completion_tokens"]

    # Per run: time to first token, wall, process CPU.
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runners}
    texts: dict[str, set[str]] = {name: set() for name in runners}
    names = list(runners)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            cpu = time.process_time()
            ttft, wall, text = runners[name]()
            results[name].append((ttft, wall, time.process_time() - cpu))
            texts[name].add(text)
    ours = set().union(*(texts[name] for name in runners if "before" not in name))
    if len(ours) != 1:
        raise SystemExit("the runs generated different text; the comparison would not be fair")

    def median(name: str, field: int) -> float:
        return statistics.median(run[field] for run in results[name])

    base = [median("xllamacpp (bare)", field) for field in range(3)]
    print(
        f"\n{args.rounds} rounds, {completion['prompt_tokens']} prompt tokens, {n} completion tokens, "
        "temperature 0, medians"
    )
    print(
        f"{'path':<26} {'TTFT ms':>8} {'wall s':>7} {'tokens/s':>9} {'CPU s':>6} "
        f"{'TTFT ratio':>11} {'wall ratio':>11} {'CPU ratio':>10}"
    )
    for name in runners:
        ttft, wall, cpu = (median(name, field) for field in range(3))
        print(
            f"{name:<26} {ttft * 1000:>8.1f} {wall:>7.3f} {n / wall:>9.1f} {cpu:>6.3f} "
            f"{ttft / base[0]:>10.3f}x {wall / base[1]:>10.3f}x {cpu / base[2]:>9.3f}x"
        )
    sessions = ("Session.stream", "Session.astream")
    cpu = max(median(name, 2) for name in sessions) / base[2] - 1
    wall = max(median(name, 1) for name in sessions) / base[1] - 1
    # Process CPU includes llama.cpp's threads: on a shared machine it is the steadier measure.
    print(
        f"\nSession overhead over the bare binding (worst path): CPU {cpu * 100:+.1f}% (target <= +5%); "
        f"wall {wall * 100:+.1f}% (includes the machine's noise)"
    )


if __name__ == "__main__":
    main()
