"""Chat panel: streaming a 5,000-delta reply, and opening a panel on a 500-message session.

Widget traffic is counted where a kernel would send it: every comm message the widgets publish
(opens, state updates, closes), as the JSON of its data. The reply is realistic Markdown (headings,
paragraphs, lists, fenced code) from the loopback fake API, paced like a fast model.

    python benchmarks/bench_panel.py [--deltas 5000] [--delay 0.001]

Targets: <= 20 transcript updates/s, bytes sent / reply bytes <= 3, open in < 1 s.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import comm
from comm.base_comm import BaseComm

from oxen_notebook import Session
from tests.fake_api import FakeAPI, Script

WORDS = [
    "the",
    "model",
    "streams",
    "tokens",
    "into",
    "a",
    "notebook",
    "while",
    "the",
    "kernel",
    "stays",
    "responsive",
    "and",
    "every",
    "finished",
    "block",
    "is",
    "sent",
    "once",
    "so",
    "the",
    "bytes",
    "on",
    "the",
    "wire",
    "grow",
    "with",
    "the",
    "reply",
    "not",
    "with",
    "its",
    "square",
    "data",
    "frame",
    "session",
    "history",
    "export",
    "widget",
    "render",
    "sanitize",
    "markdown",
    "paragraph",
    "list",
    "code",
]
CODE = [
    "def tokens(stream):",
    "    for chunk in stream:",
    "        if chunk.delta:",
    "            yield chunk.delta",
    "    return None",
    "",
    "frame = session.to_dataframe()",
    'print(frame[["role", "content"]].tail())',
]


class _Wire(BaseComm):
    """Counts what would go to the frontend."""

    messages: ClassVar[list[tuple[float, str, str, int]]] = []

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                    **keys: Any) -> None:  # fmt: skip
        size = len(json.dumps(data or {}, default=str))
        self.messages.append((time.perf_counter(), self.comm_id, msg_type, size))


def reply_deltas(n: int, seed: int = 0) -> list[str]:
    """About ``n`` word-sized deltas of Markdown shaped like a long model answer."""
    rng = random.Random(seed)
    out: list[str] = []

    def words(count: int) -> list[str]:
        return [rng.choice(WORDS) + " " for _ in range(count)]

    section = 0
    while len(out) < n:
        section += 1
        out += [f"## Part {section}\n\n"]
        for _ in range(rng.randint(1, 3)):
            out += words(rng.randint(50, 110))
            out[-1] = out[-1].rstrip() + ".\n\n"
        out += [f"- {''.join(words(rng.randint(6, 14))).strip()}\n" for _ in range(rng.randint(3, 6))]
        out += ["\n"]
        if section % 2:
            lines = [rng.choice(CODE) for _ in range(rng.randint(8, 20))]
            out += ["```python\n"] + [line + "\n" for line in lines] + ["```\n\n"]
    return out[:n]


def bench_stream(n: int, delay: float) -> dict[str, float]:
    from oxen_notebook._panel import ChatPanel

    deltas = reply_deltas(n)
    with FakeAPI() as api:
        session = Session(model="test-model", base_url=api.base_url, api_key="test-key")
        panel = ChatPanel(session)
        time.sleep(0.3)  # the model list arrives in the background
        api.enqueue(Script(chunks=deltas, delay=delay))
        _Wire.messages.clear()
        t0 = time.perf_counter()
        panel.send("Write a long answer.")
        while panel._transcript.live is None and panel.wait(0.001) is False:
            pass
        live = panel._transcript.live
        panel.wait(300)
        elapsed = time.perf_counter() - t0
        panel.close()
    wire = [m for m in _Wire.messages if m[0] <= t0 + elapsed]
    reply_bytes = len("".join(deltas).encode())
    sent = sum(size for *_, size in wire)
    # Transcript updates: the streaming message's block widgets added or changed (each is one
    # comm message; the children lists and the panel's controls are counted in the bytes).
    updates = live.sent_updates if live is not None else 0
    return {
        "deltas": len(deltas),
        "reply_bytes": reply_bytes,
        "seconds": elapsed,
        "comm_messages": len(wire),
        "messages_per_s": len(wire) / elapsed,
        "updates": updates,
        "updates_per_s": updates / elapsed,
        "bytes_sent": sent,
        "ratio": sent / reply_bytes,
    }


def bench_open(messages: int) -> dict[str, float]:
    from oxen_notebook._panel import ChatPanel

    session = Session(model="test-model", base_url="http://127.0.0.1:9/api/ai", api_key="k", max_retries=0)
    for i in range(messages // 2):
        session.add_message("user", f"Question {i}: how do I read `frame` in **pandas**?")
        session.add_message(
            "assistant",
            f"Answer {i}. Use this:\n\n```python\nimport pandas as pd\nframe = pd.read_csv('x.csv')\n```\n\n"
            "- then `frame.head()`\n- and `frame.describe()`\n",
        )
    _Wire.messages.clear()
    t0 = time.perf_counter()
    panel = ChatPanel(session)
    elapsed = time.perf_counter() - t0
    sent = sum(size for *_, size in _Wire.messages)
    t1 = time.perf_counter()
    panel._transcript.earlier.click()  # "Show 300 earlier messages"
    all_shown = time.perf_counter() - t1
    panel.close()
    return {"messages": messages, "seconds": elapsed, "bytes_sent": sent, "show_all_seconds": all_shown}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deltas", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.001, help="seconds between deltas")
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    comm.create_comm = _Wire
    stream = bench_stream(args.deltas, args.delay)
    burst = bench_stream(args.deltas, 0.0)
    opened = bench_open(args.messages)
    rows = [
        ("paced reply: deltas / reply bytes / seconds",
         f"{stream['deltas']} / {stream['reply_bytes']:,} / {stream['seconds']:.1f}", ""),
        ("paced reply: transcript updates per second", f"{stream['updates_per_s']:.1f}", "<= 20"),
        ("paced reply: comm messages per second (all widgets)", f"{stream['messages_per_s']:.1f}", ""),
        ("paced reply: bytes sent / reply bytes",
         f"{stream['bytes_sent']:,} / {stream['reply_bytes']:,} = {stream['ratio']:.2f}", "<= 3"),
        ("burst reply (no delay): seconds, transcript updates",
         f"{burst['seconds']:.2f}, {burst['updates']}", "<= 20/s + the final one"),
        ("burst reply: bytes sent / reply bytes", f"{burst['ratio']:.2f}", "<= 3"),
        (f"open a panel on {opened['messages']} messages (newest 200 drawn)",
         f"{opened['seconds'] * 1000:.0f} ms ({opened['bytes_sent']:,} bytes)", "< 1000 ms"),
        ("then draw the 300 earlier ones", f"{opened['show_all_seconds'] * 1000:.0f} ms", ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'value':<{value_width}}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {target}")


if __name__ == "__main__":
    main()
