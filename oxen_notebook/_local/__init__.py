"""The embedded local model, which plugs in only as an httpx transport.

``_model.py`` holds model names, files and llama.cpp's server (xllamacpp) loaded in-process;
``_weights.py`` finds or fetches the bundled model's GGUF file; ``_transport.py`` serves
``POST /chat/completions`` and ``GET /models[/id]`` in the hosted API's shapes, so the
Session's client, retries, SSE decoder and records serve both.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from .._errors import MissingDependencyError
from ._model import (
    INSTALL,
    LOCAL_BASE_URL,
    LOCAL_MODEL,
    is_local_model,
    load_model,
    local_model_entry,
    local_models,
    model_path,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "LOCAL_BASE_URL",
    "LOCAL_MODEL",
    "is_local_model",
    "load_model",
    "local_model_entry",
    "local_models",
    "local_transports",
    "model_path",
]


def local_transports() -> tuple[httpx.BaseTransport, httpx.AsyncBaseTransport]:
    """The sync and async httpx transports serving the local model at :data:`LOCAL_BASE_URL`.

    Raises :class:`MissingDependencyError` when xllamacpp is not installed.
    """
    if importlib.util.find_spec("xllamacpp") is None:
        raise MissingDependencyError(
            f"the local model needs xllamacpp (prebuilt llama.cpp, no compiler needed): run {INSTALL}."
        )
    from ._transport import AsyncLocalTransport, LocalTransport

    return LocalTransport(), AsyncLocalTransport()
