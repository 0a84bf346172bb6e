"""Session.evaluate: 4 variants x 1,000 rows against the fake API at 50 ms latency, 16 in flight.

In the same run, the anchor: Session.map run four times in a row over the same rows (one template
each), which is what a user does without evaluate. Reported: wall time against the ideal
(4,000 x 50 ms / 16 = 12.5 s), client CPU per request (scoring included; the fake API runs in its
own process), and evaluate's ratio to the four maps. Then the duplicate check: a data set with 30 %
repeated texts, where requests sent must equal the unique requests. Then the statistics alone:
the summary and a paired comparison of 1,000,000 rows x 4 variants (best of three).

Targets (issue 20): wall <= 1.10x ideal, CPU <= 1.2 ms a request, statistics < 1 s.

    python benchmarks/bench_evaluate.py [--rows 1000] [--concurrency 16] [--latency 0.05] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from benchmarks._server import fake_server
from oxen_notebook import EvalResult, Session, scorers
from oxen_notebook._eval._files import Settings

VARIANTS = {f"v{i}": f"Variant {i}: classify {{text}}" for i in range(4)}


def _session(base_url: str, concurrency: int) -> Session:
    return Session(model="test-model", base_url=base_url, api_key="k", validate_schema=False)


def timed(run):
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - start, time.process_time() - cpu


def data(rows: int, duplicates: float = 0.0) -> pd.DataFrame:
    unique = max(1, round(rows * (1 - duplicates)))
    texts = [f"text {i % unique}" for i in range(rows)]
    return pd.DataFrame({"text": texts, "label": ["Echo: x"] * rows})


def run_evaluate(base_url: str, frame: pd.DataFrame, concurrency: int) -> tuple[EvalResult, float, float]:
    s = _session(base_url, concurrency)
    return timed(
        lambda: s.evaluate(
            frame, VARIANTS, scorers=[scorers.regex("classify")], concurrency=concurrency, progress=False
        )
    )


def run_maps(base_url: str, frame: pd.DataFrame, concurrency: int) -> tuple[None, float, float]:
    s = _session(base_url, concurrency)

    def four() -> None:
        for template in VARIANTS.values():
            s.map(frame, template, concurrency=concurrency, progress=False)

    return timed(four)


def statistics_time(rows: int = 1_000_000, arms: int = 4) -> float:
    rng = np.random.default_rng(0)
    names = [f"v{j}" for j in range(arms)]
    n = rows * arms
    long = pd.DataFrame(
        {
            "row": np.tile(np.arange(rows), arms),
            "variant": pd.Categorical(np.repeat(names, rows), categories=names),
            "repeat": 0,
            "reply": pd.array(["x"] * n, dtype="string"),
            "error": pd.array([None] * n, dtype="string"),
            "prompt_tokens": pd.array(np.full(n, 10), dtype="Int64"),
            "completion_tokens": pd.array(np.full(n, 2), dtype="Int64"),
            "cost_usd": pd.array(np.full(n, 1e-5), dtype="Float64"),
            "latency_s": pd.array(rng.random(n), dtype="Float64"),
            "cached": pd.array(np.zeros(n, bool), dtype="boolean"),
            "shared": np.zeros(n, bool),
            "exact": pd.array(
                (rng.random(n) < np.repeat(np.linspace(0.7, 0.8, arms), rows)).astype(float), dtype="Float64"
            ),
        }
    )
    settings = Settings(
        {v: {"model": "m"} for v in names}, [{"name": "exact", "binary": True, "target": "t"}], "t", 1, 0
    )
    best = float("inf")
    for _ in range(3):
        result = EvalResult(pd.DataFrame({"t": np.zeros(rows)}), long, settings)
        start = time.perf_counter()
        _ = result.summary
        result.compare("v0", "v1")
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ideal = 4 * args.rows * args.latency / args.concurrency
    frame = data(args.rows)
    with fake_server("--latency", str(args.latency)) as base_url:
        run_evaluate(base_url, data(128), args.concurrency)  # warm up: imports, pools
        run_maps(base_url, data(32), args.concurrency)
        walls, cpus, map_walls, map_cpus = [], [], [], []
        for _ in range(args.rounds):
            result, wall, cpu = run_evaluate(base_url, frame, args.concurrency)
            assert result.summary["n"].tolist() == [args.rows] * 4
            walls.append(wall)
            cpus.append(cpu)
            _, wall, cpu = run_maps(base_url, frame, args.concurrency)
            map_walls.append(wall)
            map_cpus.append(cpu)
    requests = 4 * args.rows
    print(
        f"{requests:,} requests, {args.latency * 1000:.0f} ms latency, {args.concurrency} in flight; "
        f"ideal {ideal:.2f} s; {args.rounds} rounds (median, min-max)"
    )
    for name, wall, cpu in (("evaluate", walls, cpus), ("4 x map", map_walls, map_cpus)):
        print(
            f"  {name:9} wall {statistics.median(wall):6.2f} s ({min(wall):.2f}-{max(wall):.2f}) = "
            f"{statistics.median(wall) / ideal:.2f}x ideal; CPU {statistics.median(cpu) / requests * 1000:.2f} ms "
            f"a request ({min(cpu) / requests * 1000:.2f}-{max(cpu) / requests * 1000:.2f})"
        )
    ratio = statistics.median(w / m for w, m in zip(walls, map_walls, strict=True))
    print(f"  evaluate / 4 x map: wall {ratio:.2f}x (the maps wait for each other's last rows)")

    with fake_server("--latency", "0") as base_url:
        s = _session(base_url, args.concurrency)
        repeated = data(args.rows, duplicates=0.3)
        unique = repeated["text"].nunique()
        ev = s.evaluate(repeated, {"v0": VARIANTS["v0"]}, scorers=[scorers.regex("x")], progress=False)
        sent = int((~ev.rows["shared"]).sum())
        print(
            f"duplicates: {args.rows:,} rows, {unique:,} unique texts: {sent:,} requests sent "
            f"({'=' if sent == unique else '!='} unique)"
        )
    print(
        f"statistics, 1,000,000 rows x 4 variants (summary + a paired comparison): {statistics_time():.2f} s"
    )


if __name__ == "__main__":
    main()
