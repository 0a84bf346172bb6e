"""Peak memory of Session.map over generated rows, with and without ``checkpoint=``.

Each run is a fresh process (so one run's peak is not the next one's floor) against the fake API
in another process (``tests/fake_api.py``: short ``Echo:`` replies, no latency), concurrency 16.
It reports the peak RSS (``VmHWM``) above the process's RSS once everything is imported, the size
of the returned frame (``frame.memory_usage(deep=True)``), and the difference: what the run held
beyond the frame it returns. The target: with a checkpoint that difference does not grow with the
row count (it is the rows in flight, one part, and reading the parts back); without one it does
(every row's outcome and messages are held until the end, and the batch log keeps them).

    python benchmarks/bench_rss.py [--rows 20000 200000] [--runs 2] [--concurrency 16] [--modes yes no]

(``--modes yes`` and ``--modes no`` in two shells halve the wall time on a machine with spare cores;
RSS is per process, so only the seconds column feels the contention.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._server import fake_server

MB = 1024 * 1024


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(url: str, rows: int, concurrency: int, checkpoint: str | None) -> None:
    """In the measured process: one map over ``rows`` generated strings; a JSON line out."""
    import pandas  # noqa: F401 (imported before the baseline, as map would)
    import pyarrow.parquet  # noqa: F401

    from oxen_notebook import Session

    session = Session(model="test-model", base_url=url, api_key="bench")
    session.map(
        ["warm"] * concurrency, "{text}", concurrency=concurrency, progress=False
    )  # connections, loop
    base = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        base = _status("VmHWM")  # cannot reset: the peak so far is the floor
    start = time.perf_counter()
    out = session.map(
        (f"row {i}" for i in range(rows)), "{text}", concurrency=concurrency, progress=False,
        checkpoint=checkpoint,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    assert len(out) == rows and out["error"].isna().all(), "rows failed"
    assert out["reply"].iloc[-1] == f"Echo: row {rows - 1}", "wrong replies"
    peak = _status("VmHWM")
    frame = int(out.memory_usage(deep=True).sum())
    print(json.dumps({"base": base, "peak": peak, "frame": frame, "seconds": elapsed}))


def measure(url: str, rows: int, concurrency: int, checkpoint: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, __file__, "--child", "--url", url, "--rows", str(rows),
                   "--concurrency", str(concurrency)]  # fmt: skip
        if checkpoint:
            command += ["--checkpoint", str(Path(folder) / "run")]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--modes", nargs="+", choices=["yes", "no"], default=["yes", "no"], help="checkpoint or not"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.url, args.rows[0], args.concurrency, args.checkpoint)
        return

    print(f"| {'rows':>7} | {'checkpoint':<10} | run | peak above base MB | frame MB | peak - frame MB | s |")
    print(f"| {'-' * 7}: | {'-' * 10} | --: | -----------------: | -------: | --------------: | -: |")
    held: dict[tuple[int, bool], list[float]] = {}
    for rows in args.rows:
        for checkpoint in [mode == "yes" for mode in args.modes]:
            for run in range(1, args.runs + 1):
                with fake_server() as url:  # a fresh server: its request log is not carried over
                    r = measure(url, rows, args.concurrency, checkpoint)
                growth, frame = (r["peak"] - r["base"]) / MB, r["frame"] / MB
                held.setdefault((rows, checkpoint), []).append(growth - frame)
                print(
                    f"| {rows:>7,} | {'yes' if checkpoint else 'no':<10} | {run:>3} | {growth:18.1f} | "
                    f"{frame:8.1f} | {growth - frame:15.1f} | {r['seconds']:.0f} |",
                    flush=True,
                )
    small, large = min(args.rows), max(args.rows)
    if small != large:
        for checkpoint in [mode == "yes" for mode in args.modes]:
            a, b = min(held[(small, checkpoint)]), min(held[(large, checkpoint)])
            print(
                f"\n{'with' if checkpoint else 'without'} a checkpoint: beyond the frame, "
                f"{a:.1f} MB at {small:,} rows and {b:.1f} MB at {large:,} rows (best runs)"
            )
    if small != large and "yes" in args.modes:
        a, b = min(held[(small, True)]), min(held[(large, True)])
        verdict = "met" if b <= a + 10 else "NOT met"
        print(f"target (with a checkpoint, no growth beyond the frame, within 10 MB): {verdict}")


if __name__ == "__main__":
    main()
