"""``%reload_ext oxen_notebook`` keeps the conversations (the registry module is not reloaded)."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import oxen_notebook
from oxen_notebook import _registry
from tests.conftest import TEST_KEY


@pytest.fixture
def ip(fake_api, monkeypatch):
    monkeypatch.setenv("OXEN_BASE_URL", fake_api.base_url)
    monkeypatch.setenv("OXEN_API_KEY", TEST_KEY)
    monkeypatch.setattr(_registry, "sessions", {})
    shell = InteractiveShell.instance()
    shell.magics_manager.registry.pop("OxenMagics", None)
    shell.run_line_magic("load_ext", "oxen_notebook")
    yield shell
    shell.run_line_magic("unload_ext", "oxen_notebook")


def test_reload_ext_keeps_the_default_and_named_sessions(ip, fake_api):
    with capture_output():
        ip.run_cell_magic("oxen", "", "remember me")
        ip.run_cell_magic("oxen", "--session side", "and me")
    default, side = oxen_notebook.default_session(), oxen_notebook.named_session("side")
    with capture_output():
        ip.run_line_magic("reload_ext", "oxen_notebook")
    reloaded = __import__("oxen_notebook")
    assert reloaded.default_session() is default
    assert reloaded.named_session("side") is side
    assert [m.content for m in default.messages] == ["remember me", "Echo: remember me"]
    with capture_output():
        ip.run_cell_magic("oxen", "", "still here?")
    sent = fake_api.chat_requests()[-1]["messages"]
    assert [m["content"] for m in sent] == ["remember me", "Echo: remember me", "still here?"]
    assert len(side.messages) == 2
