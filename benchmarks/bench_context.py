"""``{df}`` in a prompt: the time and the size of the text for frames of 100 to 10,000,000 rows.

Each frame has six columns of mixed dtypes (int, float with NaN, string with missing values,
datetime, category, bool); ``{df}`` is filled through ``_values.fill``, the one path the magic and
``map``/``compare`` use, with the default budget (20 rows, 4,000 characters). Each size is filled
``--repeats`` times; the median, the spread (min to max) and the ratio of the median to the
100-row anchor measured in the same run are shown. Then the per-row cost of filling a ``map``
template of short strings, against ``str.format`` (what a row cost before).

    python benchmarks/bench_context.py [--repeats 7] [--sizes 100,100000,1000000,10000000]

Targets: the 10,000,000-row text no larger than 4,000 characters and within 10 % of the anchor's
size; its time under 100 ms; filling a map row of short strings within 2 µs of the str.format it replaced.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from oxen_notebook._batch._templates import fill as fill_row
from oxen_notebook._values import fill


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    price = rng.random(rows) * 100
    price[::50] = np.nan
    names = np.array(["alpha", "beta", "gamma", "delta"])[rng.integers(0, 4, rows)]
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "price": price,
            "name": pd.array(np.where(np.arange(rows) % 97 == 0, None, names), dtype="str"),
            "when": pd.date_range("2024-01-01", periods=rows, freq="s"),
            "kind": pd.Categorical(names),
            "flag": rng.random(rows) < 0.5,
        }
    )


def measure(data: pd.DataFrame, repeats: int) -> tuple[list[float], int]:
    namespace = {"df": data}
    text = fill("{df}", namespace)  # warm up
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        text = fill("{df}", namespace)
        times.append(time.perf_counter() - start)
    return times, len(text)


def per_row(repeats: int) -> tuple[float, float]:
    """Microseconds to fill one ``map`` row of short strings: now, and as a row was filled before
    (``str.format`` over the row's fields)."""
    template = "Classify this review of {product} ({stars} stars): {review}"
    row = {"review": "The soup was cold and the waiter rude.", "stars": 2, "product": "soup", "text": ""}
    assert fill_row(template, row, False) == template.format(**row)
    number = 20_000
    now = min(timeit.repeat(lambda: fill_row(template, row, False), number=number, repeat=repeats))
    before = min(
        timeit.repeat(
            lambda: template.format(**{str(k): v for k, v in row.items()}), number=number, repeat=repeats
        )
    )
    return now / number * 1e6, before / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="100,100000,1000000,10000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for rows in sizes:
        data = frame(rows)
        times, chars = measure(data, args.repeats)
        results.append((rows, times, chars))
        del data
    anchor_time = statistics.median(results[0][1])
    anchor_chars = results[0][2]
    print(
        f"{'rows':>12}  {'median ms':>10}  {'min-max ms':>15}  {'x anchor':>9}  {'chars':>6}  {'x anchor':>9}"
    )
    for rows, times, chars in results:
        median = statistics.median(times)
        spread = f"{min(times) * 1000:.2f}-{max(times) * 1000:.2f}"
        print(
            f"{rows:>12,}  {median * 1000:>10.2f}  {spread:>15}  {median / anchor_time:>9.2f}  "
            f"{chars:>6,}  {chars / anchor_chars:>9.2f}"
        )
    ours, theirs = per_row(args.repeats)
    print(
        f"map row of short strings: {ours:.2f} µs now, {theirs:.2f} µs before (str.format) (+{ours - theirs:.2f} µs)"
    )
    rows, times, chars = results[-1]
    ok = (
        chars <= 4000 and chars <= anchor_chars * 1.1 and statistics.median(times) < 0.1 and ours - theirs < 2
    )
    print(f"targets ({rows:,} rows: <= 4,000 chars, within 10 % of the anchor, < 100 ms; row +< 2 µs):",
          "met" if ok else "MISSED")  # fmt: skip


if __name__ == "__main__":
    main()
