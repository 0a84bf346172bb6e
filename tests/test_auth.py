"""Where the key comes from, and that it never leaks."""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from oxen_notebook import AuthenticationError, Session
from oxen_notebook._auth import Secret, find_api_key
from tests.fake_api import FakeAPI, Script

SECRET = "sk-oxen-SECRET-123456"


def test_argument_then_env_then_oxen_config(monkeypatch, tmp_path):
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path))
    (tmp_path / "auth_config.toml").write_text(
        'default_host = "hub.oxen.ai"\n\n[[host_configs]]\nhost = "other.host"\nauth_token = "other"\n\n'
        '[[host_configs]]\nhost = "hub.oxen.ai"\nauth_token = "from-config"\n'
    )
    url = "https://hub.oxen.ai/api/ai"
    assert find_api_key(url).reveal() == "from-config"
    assert find_api_key("https://other.host/api").reveal() == "other"
    assert find_api_key("https://unknown.host/api") is None
    monkeypatch.setenv("OXEN_API_KEY", "from-env")
    assert find_api_key(url).reveal() == "from-env"
    assert find_api_key(url, "from-arg").reveal() == "from-arg"


def test_config_key_is_used_for_requests(monkeypatch, tmp_path, fake_api: FakeAPI):
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path))
    host = fake_api.base_url.split("/")[2]
    (tmp_path / "auth_config.toml").write_text(
        f'[[host_configs]]\nhost = "{host}"\nauth_token = "test-key"\n'
    )
    s = Session(model="test-model", base_url=fake_api.base_url)
    assert s.ask("x").text == "Echo: x"


def test_secret_repr_and_pickle():
    secret = Secret(SECRET)
    assert SECRET not in repr(secret) and SECRET not in str(secret)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_key_never_in_repr_errors_logs_files_or_dataframe(fake_api: FakeAPI, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake_api.api_key = SECRET
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=SECRET, journal=tmp_path / "j.jsonl")
    s.ask("hello")
    # The server echoes the key in an error body: it must still not reach the user.
    fake_api.enqueue(Script(status=400, error={"error": {"message": f"bad key {SECRET} here"}}))
    with pytest.raises(Exception) as info:
        s.ask("again")
    s.api_key = "wrong"
    with pytest.raises(AuthenticationError) as auth_info:
        s.ask("third")
    s.save(tmp_path / "s.json")
    df = s.to_dataframe()
    df.to_csv(tmp_path / "s.csv")
    artefacts = [
        repr(s), str(s), repr(s.api_key), repr(s.clients.hosted), str(info.value), repr(info.value),
        str(auth_info.value), caplog.text, df.to_string(), json.dumps(s.defaults),
        (tmp_path / "s.json").read_text(), (tmp_path / "j.jsonl").read_text(), (tmp_path / "s.csv").read_text(),
        *(m.error or "" for m in s.messages),
    ]  # fmt: skip
    for artefact in artefacts:
        assert SECRET not in artefact
    assert "***" in str(info.value)
