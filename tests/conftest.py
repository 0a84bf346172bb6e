"""Shared fixtures: the loopback fake API and sessions pointed at it, isolated from the user's setup."""

from __future__ import annotations

import signal

import pytest

from oxen_notebook import Session
from tests.fake_api import FakeAPI

TEST_KEY = "test-key"

# Tests send real SIGINTs (Ctrl-C). A run started as a background job of a non-interactive shell
# inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: restore it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def _server():
    with FakeAPI() as server:
        yield server


@pytest.fixture
def fake_api(_server: FakeAPI) -> FakeAPI:
    """The loopback API server, with an empty queue and request log for each test."""
    _server.reset()
    _server.api_key = TEST_KEY
    yield _server
    _server.reset()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's key, Oxen config, base URL or proxies (every server is loopback)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("OXEN_API_KEY", raising=False)
    monkeypatch.delenv("OXEN_BASE_URL", raising=False)
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path_factory.mktemp("oxen-config")))


@pytest.fixture
def session(fake_api: FakeAPI) -> Session:
    """A Session on the fake API with fast retries."""
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=5.0)
    yield s


@pytest.fixture
def ip(fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch):
    """An IPython shell with the extension loaded, fresh sessions, the fake API as the endpoint, and
    the magic drawing HTML (as in a notebook)."""
    from IPython.core.interactiveshell import InteractiveShell

    from oxen_notebook import _registry

    monkeypatch.setenv("OXEN_BASE_URL", fake_api.base_url)
    monkeypatch.setenv("OXEN_API_KEY", TEST_KEY)
    monkeypatch.setattr(_registry, "sessions", {})
    shell = InteractiveShell.instance()
    shell.magics_manager.registry.pop("OxenMagics", None)
    shell.run_line_magic("load_ext", "oxen_notebook")
    shell.magics_manager.registry["OxenMagics"].display = "html"
    yield shell
    shell.run_line_magic("unload_ext", "oxen_notebook")
    shell.config.pop("OxenMagics", None)
    shell.rl_next_input = None
