"""The embedded local model: model names, GGUF files, and llama.cpp's server loaded in-process.

Model names: ``"local"`` is SmolLM2-135M-Instruct (its GGUF file: see ``_weights.py``);
``"local:/path/to/model.gguf"`` is any GGUF file. A model loads lazily on its first request
into an ``xllamacpp.Server`` (llama.cpp's own server, built as a Python extension with prebuilt
wheels) and stays loaded for the life of the process. That server is thread-safe and queues
requests for its one slot, so generations run one at a time (several slots batch, but measured
on 2 cores they gained 5-12 % and a shared cache changed temperature-0 replies: not worth it).

Nothing here imports xllamacpp or httpx until a request needs them.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .._errors import MissingDependencyError
from .._params import range_schema
from ._weights import bundled_path

__all__ = [
    "INSTALL",
    "LOCAL_BASE_URL",
    "LOCAL_MODEL",
    "LocalRequestError",
    "is_local_model",
    "load_model",
    "local_model_entry",
    "local_models",
    "model_path",
]

#: Base URL of the in-process local model; the ``.invalid`` host can never reach a network.
LOCAL_BASE_URL = "http://local.invalid/api/ai"
#: The bundled model's name.
LOCAL_MODEL = "local"

_PREFIX = "local:"
INSTALL = "pip install 'oxen-notebook[local]'"
_N_CTX = 4096
# llama.cpp spins a thread per core; when the cores are shared (a kernel, a browser, other work)
# spinning threads made prompts 10-30x slower here. Half the cores keeps both steady.
_THREADS = max(1, (os.cpu_count() or 2) // 2)


def is_local_model(model: object) -> bool:
    """True for ``"local"`` and ``"local:/path/to/model.gguf"``."""
    return isinstance(model, str) and (model == LOCAL_MODEL or model.startswith(_PREFIX))


class LocalRequestError(Exception):
    """A request the local model refuses; the transport turns it into an Oxen-shaped error body."""

    def __init__(self, status: int, type: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail

    @classmethod
    def invalid(cls, detail: str) -> LocalRequestError:
        """A 400 ``invalid_params`` error."""
        return cls(400, "invalid_params", "Invalid parameters", detail)

    def body(self) -> dict[str, Any]:
        return {
            "error": {"type": self.type, "title": self.title, "detail": self.detail},
            "status": "error",
            "status_message": self.detail,
        }


def model_path(model: str, *, fetch: bool = True) -> Path:
    """The GGUF file behind a local model name; a missing file is a 404 like an unknown model.

    ``"local"`` fetches its file on first use unless ``fetch`` is false (then it raises
    :class:`MissingDependencyError` when the file is not there yet)."""
    if model == LOCAL_MODEL:
        path = bundled_path(fetch=fetch)
        if path is None:
            raise MissingDependencyError("the bundled local model's weights are not fetched yet.")
        return path
    raw = model[len(_PREFIX) :]
    path = Path(raw).expanduser()
    if not raw or not path.is_file():
        raise LocalRequestError(
            404, "resource_not_found", "Model not found", f"local model file not found: {raw}"
        )
    return path


def local_model_entry(model: str) -> dict[str, Any]:
    """The ``/models`` entry for a local model, in the hosted API's shape (pricing is zero).

    Cheap: the bundled model's weights are not fetched for it."""
    bundled = model == LOCAL_MODEL
    path = bundled_path(fetch=False) if bundled else model_path(model)
    return {
        "id": model,
        "object": "model",
        "display_name": "SmolLM2-135M-Instruct (local)" if bundled else f"{path.name} (local)",
        "description": "Runs in this process with llama.cpp: no API key, no network, no cost.",
        "developer": {"name": "HuggingFaceTB" if bundled else "local"},
        "owned_by": "local",
        "capabilities": {"input": ["text"], "output": ["text"]},
        "pricing": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
        "context_length": _N_CTX,
        "deployments": [{"provider": "local", "path": str(path) if path else None}],
        "request_schema": _REQUEST_SCHEMA,
    }


def local_models() -> list[dict[str, Any]]:
    """``/models`` entries for the bundled model when the ``local`` extra is installed, else none.

    Cheap: it looks for the package without importing it."""
    if importlib.util.find_spec("xllamacpp") is None:
        return []
    return [local_model_entry(LOCAL_MODEL)]


_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **range_schema(),
        "seed": {"type": "integer"},
        "stop": {"type": ["string", "array"]},
        "response_format": {"type": "object"},
        "logit_bias": {"type": "object"},
        "logprobs": {"type": "boolean"},
        "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
        "tools": {"type": "array"},
        "tool_choice": {"type": ["string", "object"]},
    },
}

_servers: dict[Path, Any] = {}
_load_lock = threading.Lock()


def load_model(path: Path) -> Any:
    """The ``xllamacpp.Server`` for a GGUF file; loads it on first use, once per process."""
    key = path.resolve()
    server = _servers.get(key)
    if server is not None:
        return server
    try:
        import xllamacpp
    except (ImportError, OSError) as exc:
        raise MissingDependencyError(
            f"the local model needs a working xllamacpp ({type(exc).__name__}: {exc}): run {INSTALL}."
        ) from exc
    with _load_lock:
        server = _servers.get(key)
        if server is None:
            params = xllamacpp.CommonParams()
            params.model.path = str(key)
            params.n_ctx = _N_CTX
            params.n_parallel = 1
            params.cpuparams.n_threads = params.cpuparams_batch.n_threads = _THREADS
            params.verbosity = -1  # llama.cpp logs nothing to the notebook's stderr
            params.endpoint_metrics = True  # requests_processing: what "stopped" is checked against
            # Requests never use its HTTP listener; on POSIX it binds a Unix socket in a private
            # folder, so no TCP port opens (Windows: 127.0.0.1 on a free port).
            if sys.platform != "win32":
                folder = tempfile.mkdtemp(prefix="oxen-local-")
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
                params.hostnames = [os.path.join(folder, "llama.sock")]
            try:
                server = xllamacpp.Server(params)
            except RuntimeError as exc:
                raise LocalRequestError.invalid(f"cannot load local model {path}: {exc}") from None
            _servers[key] = server
    return server
