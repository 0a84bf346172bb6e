"""Helpers that several test modules and the benchmarks share.

- :func:`long_reply`: a realistic Markdown reply cut into many deltas.
- :func:`free_port`: a free TCP port on loopback.
- :func:`checkout_env`: the environment a kernel or server needs to import this checkout and reach
  the loopback fake API.
- :class:`Kernel` / :class:`KernelRun`: a real IPython kernel and what one execution published.
- :class:`Jupyter`: a jupyter server (JupyterLab + Notebook 7) on loopback, isolated from the
  user's setup.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DISPLAY_TYPES = ("display_data", "update_display_data", "clear_output")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

__all__ = [
    "DISPLAY_TYPES",
    "ROOT",
    "Jupyter",
    "Kernel",
    "KernelRun",
    "checkout_env",
    "free_port",
    "long_reply",
]


def long_reply(deltas: int = 5000) -> list[str]:
    """A realistic Markdown reply cut into ``deltas`` pieces: headings, paragraphs, lists, code."""
    words = [
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
    ]
    pieces: list[str] = []
    section = 0
    while len(pieces) < deltas:
        section += 1
        pieces += [f"## Part {section}", "\n\n"]
        for i in range(60):
            pieces.append(("" if i == 0 else " ") + words[(section + i) % len(words)])
        pieces += [".", "\n\n"]
        for item in range(4):
            pieces += ["- ", "**item**", f" {item}:", " see", " [docs](https://docs.oxen.ai)", "\n"]
        pieces.append("\n")
        if section % 3 == 0:
            pieces += ["```python", "\n"]
            for line in range(6):
                pieces += [f"value_{line}", " = ", f"compute({line})", "  # step", "\n"]
            pieces += ["```", "\n\n"]
    return pieces[:deltas]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkout_env(base_url: str, api_key: str, config_dir: str) -> dict[str, str]:
    """This process's environment, plus this checkout on ``PYTHONPATH`` and the fake API's URL and key."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        OXEN_BASE_URL=base_url,
        OXEN_API_KEY=api_key,
        OXEN_CONFIG_DIR=config_dir,
    )
    return env


# -- a real kernel ------------------------------------------------------------------------------


def is_stylesheet(output: dict[str, Any]) -> bool:
    """Whether an output (or display message content) is the magic's stylesheet, shown before a
    reply (``_magics._views.show_stylesheet``): tests of what a cell shows set it aside."""
    return bool((output.get("metadata") or {}).get("oxen", {}).get("stylesheet"))


@dataclass
class KernelRun:
    """The iopub messages of one execution, and the output area they build."""

    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reply: dict[str, Any] | None = None

    @property
    def displays(self) -> list[tuple[float, dict[str, Any]]]:
        """The display messages of the reply: not a widget's (the code buttons' hidden widget)."""
        return [
            (t, m)
            for t, m in self.messages
            if m["msg_type"] in DISPLAY_TYPES and WIDGET_MIME not in m["content"].get("data", {})
        ]

    def display_bytes(self, *, whole: bool = False) -> int:
        """Bytes of the display messages: their content, or (``whole``) header and all."""
        keys = ("header", "parent_header", "metadata", "content") if whole else ("content",)
        return sum(len(json.dumps([m[k] for k in keys], default=str).encode()) for _, m in self.displays)

    def outputs(self) -> list[dict[str, Any]]:
        """The output area after every message, as a frontend would hold it."""
        outputs: list[dict[str, Any]] = []
        clear_pending = False
        for _, msg in self.messages:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "clear_output":
                if content.get("wait"):
                    clear_pending = True
                else:
                    outputs = []
                continue
            if kind == "update_display_data":
                display_id = content.get("transient", {}).get("display_id")
                for out in outputs:
                    if out.get("display_id") == display_id:
                        out.update(data=content["data"], metadata=content["metadata"])
                continue
            if kind in ("display_data", "stream", "error", "execute_result"):
                if is_stylesheet(content):
                    continue  # the stylesheet's output (_magics._views.show_stylesheet): set aside
                if clear_pending:
                    outputs, clear_pending = [], False
                out = {"type": kind, **content}
                out["display_id"] = content.get("transient", {}).get("display_id")
                outputs.append(out)
        return outputs

    def html(self) -> list[str]:
        return [
            o["data"]["text/html"]
            for o in self.outputs()
            if o["type"] == "display_data" and "text/html" in o["data"]
        ]

    def errors(self) -> list[dict[str, Any]]:
        return [o for o in self.outputs() if o["type"] == "error"]


class Kernel:
    """A real IPython kernel with oxen_notebook loaded, talking to ``base_url`` with ``api_key``."""

    def __init__(self, base_url: str, api_key: str, config_dir: str) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(
            kernel_name="python3", env=checkout_env(base_url, api_key, config_dir), startup_timeout=60
        )
        run = self.run("%load_ext oxen_notebook")
        assert run.reply and run.reply["status"] == "ok", run.reply

    def run(self, code: str, *, timeout: float = 60.0, on_message: Any = None) -> KernelRun:
        msg_id = self.kc.execute(code)
        run = KernelRun()
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no idle after {timeout} s running {code[:40]!r}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            run.messages.append((time.monotonic(), msg))
            if on_message is not None:
                on_message(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        while run.reply is None:
            reply = self.kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                run.reply = reply["content"]
        return run

    def value(self, expression: str) -> Any:
        """``json.loads`` of what ``print(json.dumps(expression))`` prints in the kernel."""
        run = self.run(f"import json as _j, oxen_notebook; print(_j.dumps({expression}))")
        text = "".join(m["content"]["text"] for _, m in run.messages if m["msg_type"] == "stream")
        return json.loads(text)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


# -- a real jupyter server ----------------------------------------------------------------------


class Jupyter:
    """A jupyter server (JupyterLab + Notebook 7) on loopback, isolated from the user's setup.

    Every config, runtime, data, settings, workspace, IPython and Oxen directory is under ``base``;
    JupyterLab's news and update checks are off; the kernels it starts reach ``base_url`` with
    ``api_key`` and import this checkout. The server log is ``base / "server.log"``.
    """

    def __init__(self, base: Path, base_url: str, api_key: str) -> None:
        self.root = base / "notebooks"
        self.root.mkdir()
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = base / "lab-settings"
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        for name in ("config", "runtime", "data", "ipython", "workspaces", "oxen"):
            (base / name).mkdir()
        env = checkout_env(base_url, api_key, str(base / "oxen"))
        env.update(
            JUPYTER_CONFIG_DIR=str(base / "config"),
            JUPYTER_RUNTIME_DIR=str(base / "runtime"),
            JUPYTER_DATA_DIR=str(base / "data"),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
            IPYTHONDIR=str(base / "ipython"),
        )
        self.log = (base / "server.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}", "--allow-root",
             f"--ServerApp.root_dir={self.root}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_up()

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}?token={self.token}", timeout=5) as response:
            return json.load(response)

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: see {self.log.name}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.25)
        raise RuntimeError("jupyter lab did not start within 60 s")

    def notebook(self, name: str, *cells: str) -> str:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nbformat.write(nb, self.root / name)
        return name

    def wait_for_kernel(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for session in self.api("/api/sessions"):
                if session.get("path") == name and session["kernel"]["execution_state"] == "idle":
                    return
            time.sleep(0.25)
        raise AssertionError(f"the kernel for {name} did not become idle")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# -- classic Notebook 6.5 + ipywidgets 7.8, in a second virtual environment ----------------------

#: The environment ``.ci/widgets7-env`` builds: classic Notebook 6.5, ipywidgets 7.8, this checkout.
WIDGETS7_VENV = ROOT / ".venv-widgets7"


def widgets7_python() -> Path:
    """The ipywidgets 7 environment's Python; fails (never skips) when it was not built."""
    python = WIDGETS7_VENV / "bin" / "python"
    if not python.exists():
        import pytest

        pytest.fail("no .venv-widgets7 (classic Notebook 6.5 + ipywidgets 7.8): run bash .ci/widgets7-env")
    return python


class ClassicNotebook(Jupyter):
    """A classic Notebook 6.5 server (``jupyter notebook``) from the ipywidgets 7 environment,
    isolated as :class:`Jupyter` is; its kernels run that environment's Python."""

    def __init__(self, base: Path, base_url: str, api_key: str) -> None:
        self.root = base / "notebooks"
        self.root.mkdir()
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for name in ("config", "runtime", "data", "ipython", "oxen"):
            (base / name).mkdir()
        env = checkout_env(base_url, api_key, str(base / "oxen"))
        env.update(
            JUPYTER_CONFIG_DIR=str(base / "config"),
            JUPYTER_RUNTIME_DIR=str(base / "runtime"),
            JUPYTER_DATA_DIR=str(base / "data"),
            IPYTHONDIR=str(base / "ipython"),
        )
        bin_dir = widgets7_python().parent
        env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
        self.log = (base / "server.log").open("w")
        self.process = subprocess.Popen(
            [str(bin_dir / "jupyter-notebook"), "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--port-retries=0", f"--NotebookApp.token={self.token}", "--allow-root",
             f"--notebook-dir={self.root}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_up()
