"""``%%oxen`` in a real kernel: a 5,000-delta reply, counted on the kernel's iopub channel.

Every display message the kernel publishes for the cell (``display_data``, ``update_display_data``,
``clear_output``, the footer included) is counted, with its content's JSON size and its size on the
wire (header and all); updates/s is over the cell's run, and the busiest one-second window is shown.
"last token->final" runs from the fake API writing the last token to the final render's arrival. The reply is realistic Markdown (headings, paragraphs, lists with links, fenced code) from
the loopback fake API, once at full speed and once paced like a fast model.

    python benchmarks/bench_magic.py [--deltas 5000] [--delay 0.001]

Targets: <= 20 display updates/s, bytes sent / reply bytes <= 3.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oxen_notebook._render import render_markdown
from tests.fake_api import FakeAPI, Script
from tests.helpers import Kernel, long_reply

KEY = "bench-key"


class TimedAPI(FakeAPI):
    """The fake API, noting when it wrote the last token of a reply."""

    last_token_at = 0.0

    def _write_events(self, handler: Any, body: dict[str, Any], script: Script) -> None:
        super()._write_events(handler, body, script)
        self.last_token_at = time.monotonic()


def measure(kernel: Kernel, api: TimedAPI, deltas: list[str], delay: float) -> dict[str, Any]:
    text = "".join(deltas)
    api.enqueue(Script(chunks=deltas, delay=delay))
    started = time.monotonic()
    run = kernel.run("%%oxen --new\nWrite a long answer.", timeout=600)
    displays = run.displays
    last_reply = displays[-2][0]  # the last display is the footer
    times = [t for t, _ in displays]
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    reply_bytes = len(text.encode())
    return {
        "deltas": len(deltas),
        "reply KB": reply_bytes / 1024,
        "stream s": api.last_token_at - started,
        "cell s": run.messages[-1][0] - started,
        "updates": len(displays),
        "updates/s": len(displays) / (run.messages[-1][0] - started),
        "max in any 1 s": busiest,
        "sent KB": run.display_bytes() / 1024,
        "sent/reply": run.display_bytes() / reply_bytes,
        "wire/reply": run.display_bytes(whole=True) / reply_bytes,
        "last token->final ms": (last_reply - api.last_token_at) * 1000,
        "final exact": "".join(run.html()[:-1]) == render_markdown(text),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.001, help="seconds between deltas, paced run")
    args = parser.parse_args()
    deltas = long_reply(args.deltas)
    rows = []
    with TimedAPI() as api, tempfile.TemporaryDirectory() as config_dir:
        api.api_key = KEY
        kernel = Kernel(api.base_url, KEY, config_dir)
        try:
            measure(kernel, api, long_reply(200), 0.0)  # warm up imports and the connection
            rows.append(("full speed", measure(kernel, api, deltas, 0.0)))
            rows.append((f"paced {args.delay * 1000:g} ms", measure(kernel, api, deltas, args.delay)))
        finally:
            kernel.shutdown()
    keys = list(rows[0][1])
    width = max(len(k) for k in keys)
    print(f"{'':<{width}}  " + "  ".join(f"{name:>14}" for name, _ in rows))
    for key in keys:
        cells = []
        for _, row in rows:
            value = row[key]
            cells.append(f"{value:>14.2f}" if isinstance(value, float) else f"{value!s:>14}")
        print(f"{key:<{width}}  " + "  ".join(cells))
    # The byte budget: 3x the reply, plus 8 KB per second of streaming (StreamingMarkdown's pace).
    ok = all(
        r["max in any 1 s"] <= 20
        and r["sent KB"] <= 3 * r["reply KB"] + 8 * r["stream s"]
        and r["final exact"]
        for _, r in rows
    )
    print(
        "targets (<= 20 updates in any second, sent <= 3x reply + 8 KB/s, exact final):",
        "met" if ok else "MISSED",
    )


if __name__ == "__main__":
    main()
