"""Start the fake API in a subprocess, so its CPU time is not the client's."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def fake_server(*args: str) -> Iterator[str]:
    """Yield the base URL of ``tests/fake_api.py`` running with ``args`` in another process."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_api.py"), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdout.readline()  # "listening on ..."
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/api/ai"
    finally:
        proc.terminate()
        proc.wait(5)
