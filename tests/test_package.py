"""The package's public surface and import cost."""

from __future__ import annotations

import subprocess
import sys

import oxen_notebook


def test_exported_names():
    assert set(oxen_notebook.__all__) >= {
        "Session", "Reply", "AsyncReply", "Message", "ChatPanel", "default_session", "list_models",
        "model_info", "load_ipython_extension", "OxenError", "APIError", "APIStatusError",
        "AuthenticationError", "InsufficientCreditsError", "NotFoundError", "BadRequestError",
        "RateLimitError", "ServerError", "APIConnectionError", "APITimeoutError", "StreamError",
        "ParameterError", "MissingAPIKeyError", "ReplyConsumedError", "SessionBusyError", "Event",
        "SchemaError",
    }  # fmt: skip
    for name in oxen_notebook.__all__:
        assert getattr(oxen_notebook, name) is not None


def test_error_tree():
    e = oxen_notebook
    assert issubclass(e.APITimeoutError, e.APIConnectionError)
    for cls in (e.AuthenticationError, e.InsufficientCreditsError, e.NotFoundError, e.BadRequestError,
                e.RateLimitError, e.ServerError):  # fmt: skip
        assert issubclass(cls, e.APIStatusError) and issubclass(cls, e.OxenError)
    assert issubclass(e.StreamError, e.APIError)
    assert issubclass(e.ParameterError, ValueError)


def test_import_does_not_load_pandas_ipywidgets_llama_or_pydantic():
    modules = (
        "pandas",
        "ipywidgets",
        "xllamacpp",
        "IPython",
        "pydantic",
        "jsonschema",
        "httpx",
        "asyncio",
        "bpe_openai",
    )
    code = f"import sys, oxen_notebook; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_session_construction_makes_no_request_and_needs_no_key():
    s = oxen_notebook.Session()
    assert s.model == "gpt-5-2-chat-latest"
    assert s.base_url == "https://hub.oxen.ai/api/ai"
    assert "Session(model='gpt-5-2-chat-latest'" in repr(s)
