"""The embedded local model: load time, time to first token, tokens/s, and the Session's overhead.

Same process, same loaded model, same prompt and settings (temperature 0, fixed seed, so every run
generates the same tokens): llama-cpp-python's own ``create_chat_completion(stream=True)`` against
``Session.stream`` and ``Session.astream`` (transport, SSE bytes, decoder, reply, records). The KV
cache is reset before every run so each one evaluates the whole prompt. Figures are medians of
alternating rounds (the order rotates each round); ratios are Session / direct (target: <= 1.05x).

On a shared machine the model's own speed swings from run to run, which swamps a few percent of
wall time. So the benchmark also times every step of llama-cpp-python's chunk iterator, in every
path, and reports the time spent outside it as a share of the time inside it: the Session's own
cost, whatever the machine's load.

    python benchmarks/bench_local.py [--rounds 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oxen_notebook import Session
from oxen_notebook._local import _model as _local

PROMPT = "Write a short story about a robot who learns to paint."
SEED = 7


class LlamaClock:
    """Adds up the seconds spent inside the model's ``create_chat_completion`` chunk iterator."""

    def __init__(self, model: Any) -> None:
        self.seconds = 0.0
        self._create = model.create_chat_completion
        model.create_chat_completion = self._timed  # this instance only, for this benchmark

    def _timed(self, *args: Any, **kwargs: Any) -> Any:
        chunks = self._create(*args, **kwargs)
        return self._iterate(chunks) if kwargs.get("stream") else chunks

    def _iterate(self, chunks: Iterator[Any]) -> Iterator[Any]:
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    chunk = next(chunks)
                finally:
                    self.seconds += time.perf_counter() - t0
                yield chunk
        except StopIteration:
            return
        finally:
            chunks.close()  # type: ignore[attr-defined]


def direct(model: Any, tokens: int) -> tuple[float, float, str]:
    """llama-cpp-python alone: (time to first token, total seconds, text)."""
    t0 = time.perf_counter()
    first = None
    parts = []
    for chunk in model.create_chat_completion(
        [{"role": "user", "content": PROMPT}], stream=True, temperature=0, seed=SEED, max_tokens=tokens
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
    for delta in session.stream(PROMPT, history=False, max_tokens=tokens):
        if first is None:
            first = time.perf_counter() - t0
        parts.append(delta)
    return first or 0.0, time.perf_counter() - t0, "".join(parts)


def session_astream(session: Session, tokens: int) -> tuple[float, float, str]:
    async def run() -> tuple[float, float, str]:
        t0 = time.perf_counter()
        first = None
        parts = []
        async for delta in session.astream(PROMPT, history=False, max_tokens=tokens):
            if first is None:
                first = time.perf_counter() - t0
            parts.append(delta)
        return first or 0.0, time.perf_counter() - t0, "".join(parts)

    return asyncio.run(run())


def import_ms(rounds: int) -> float:
    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    base = statistics.median(run("pass") for _ in range(rounds))
    return (statistics.median(run("import llama_cpp") for _ in range(rounds)) - base) * 1000


def load_s(path: Path, rounds: int) -> float:
    cls = _local._llama_class()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        model = cls(
            model_path=str(path),
            n_ctx=_local._N_CTX,
            n_threads=_local._THREADS,
            n_threads_batch=_local._THREADS,
            verbose=False,
        )
        times.append(time.perf_counter() - t0)
        model.close()
    return statistics.median(times)


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
        f"import llama_cpp: {import_ms(3):.0f} ms; model load: {load_s(path, 3) * 1000:.0f} ms (median of 3)"
    )

    model = _local.load_model(path)
    clock = LlamaClock(model)
    session = Session(model="local", temperature=0, seed=SEED)
    runners: dict[str, Callable[[], tuple[float, float, str]]] = {
        "llama-cpp-python": lambda: direct(model, args.tokens),
        "Session.stream": lambda: session_stream(session, args.tokens),
        "Session.astream": lambda: session_astream(session, args.tokens),
    }
    for run in runners.values():  # warm up: the first request also fetches the model's schema
        model.reset()
        run()
    completion = session.stream(PROMPT, history=False, max_tokens=args.tokens).consume().usage
    n = completion["completion_tokens"]

    # Per run: time to first token, wall, process CPU, seconds inside llama-cpp-python's iterator.
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in runners}
    texts: set[str] = set()
    names = list(runners)
    for round_ in range(args.rounds):
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            model.reset()  # no KV-cache reuse: every run evaluates the whole prompt
            cpu, clock.seconds = time.process_time(), 0.0
            ttft, wall, text = runners[name]()
            results[name].append((ttft, wall, time.process_time() - cpu, clock.seconds))
            texts.add(text)
    if len(texts) != 1:
        raise SystemExit("the runs generated different text; the comparison would not be fair")

    def median(name: str, field: int) -> float:
        return statistics.median(run[field] for run in results[name])

    def outside(name: str) -> float:
        """Median share of time spent outside llama-cpp-python, relative to the time inside it."""
        return statistics.median((wall - inside) / inside for _, wall, _, inside in results[name])

    base = [median("llama-cpp-python", field) for field in range(3)]
    print(
        f"\n{args.rounds} rounds, {completion['prompt_tokens']} prompt tokens, {n} completion tokens, "
        "temperature 0, medians"
    )
    print(
        f"{'path':<18} {'TTFT ms':>8} {'wall s':>7} {'tokens/s':>9} {'CPU s':>6} "
        f"{'TTFT ratio':>11} {'wall ratio':>11} {'CPU ratio':>10} {'outside llama':>14}"
    )
    for name in runners:
        ttft, wall, cpu = (median(name, field) for field in range(3))
        print(
            f"{name:<18} {ttft * 1000:>8.1f} {wall:>7.3f} {n / wall:>9.1f} {cpu:>6.3f} "
            f"{ttft / base[0]:>10.3f}x {wall / base[1]:>10.3f}x {cpu / base[2]:>9.3f}x "
            f"{outside(name) * 100:>13.2f}%"
        )
    sessions = [name for name in runners if name != "llama-cpp-python"]
    own = max(outside(name) for name in sessions) - outside("llama-cpp-python")
    wall = max(median(name, 1) for name in sessions) / base[1] - 1
    print(
        f"\nSession overhead over llama-cpp-python (worst path): {own * 100:+.2f}% of the model's time "
        f"(target <= +5%); end to end wall {wall * 100:+.1f}% (includes the machine's noise)"
    )


if __name__ == "__main__":
    main()
