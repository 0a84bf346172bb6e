"""Where the key comes from, and that it never leaks."""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from oxen_notebook import APIConnectionError, APIError, AuthenticationError, Session
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


def test_a_key_the_server_echoes_is_redacted_everywhere_before_it_is_cut(fake_api: FakeAPI, tmp_path):
    """A hostile or careless server echoes the key it was sent: in an in-stream error event (streamed,
    and as an unstreamed body with status 200), in a 401's title and detail, in a request-id header,
    and at the end of a detail longer than the 300 characters a detail is cut to. Neither the key nor
    the part of it a cut would leave reaches the exception, history, the DataFrames, the journal, the
    save file or map's result."""
    key = "oxk-7Q9vZ2Lm4Np8Rt1Ws6Yb3Cd"
    fake_api.api_key = None  # the server takes any key, and says it back
    echo = {"type": "unknown_error", "title": f"Upstream failed for {key}", "detail": f"key={key}"}
    unauthenticated = {
        "type": "unauthenticated",
        "title": f"Bad key {key}",
        "detail": f"Invalid API key: {key}",
    }
    long_detail = {"type": "invalid_params", "title": "Bad Request", "detail": "x" * 290 + key}
    scripts = [
        Script(chunks=["partial", " more"], error_event_after=1, error_event={"error": echo}),
        Script(status=401, error={"error": unauthenticated}),
        Script(status=400, headers={"x-request-id": key}, error={"error": long_detail}),
        Script(status=400, error={"error": f"{'y' * 295}{key}", "status_message": f"{key}\n{key}"}),
        Script(raw=f'data: {{"choices": "{"z" * 40}{key}\n\n'.encode()),  # malformed: quoted in the error
    ]
    journal = tmp_path / "j.jsonl"
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=key, max_retries=0, journal=journal)
    errors = []
    for script in scripts:
        fake_api.enqueue(script)
        with pytest.raises(APIError) as info:
            s.ask("hello")
        errors.append(info.value)
    fake_api.enqueue(Script(text="x", error_event_after=0, error_event={"error": echo}))  # unstreamed
    out = s.map(["a"], "{}")
    s.save(tmp_path / "s.json")
    # Every server-provided field, in every place it is kept or shown.
    fields = [
        getattr(e, name, None)
        for e in errors
        for name in ("message", "title", "detail", "type", "request_id")
    ]
    records = [text for m in s.messages for text in (m.error, m.note)]
    frames = [s.to_dataframe().to_csv(), s.to_dataframe(batch=True).to_csv(), out.to_csv()]
    files = [journal.read_text(), (tmp_path / "s.json").read_text()]
    artefacts = [*map(str, errors), *map(repr, errors), *fields, *records, *frames, *files]
    assert [m.finish_reason for m in s.messages if m.role == "assistant"] == ["error"] * 5
    for artefact in artefacts:
        assert key[:8] not in (artefact or "")
    assert out["error"][0].startswith("Upstream failed for ***: key=***")
    assert "Bad key ***: Invalid API key: ***" in str(errors[1])
    assert errors[2].detail.endswith("***")
    assert errors[2].request_id.endswith(", ***")  # after the fake's own request id
    assert errors[3].detail.endswith("***")


def test_a_key_the_server_echoes_in_a_broken_response_is_redacted(fake_api: FakeAPI, tmp_path):
    """An answer that is not HTTP (here a header line quoting the key) becomes a connection error
    whose text quotes what the server sent: redacted, on one line."""
    key = "oxk-7Q9vZ2Lm4Np8Rt1Ws6Yb3Cd"
    fake_api.api_key = None
    fake_api.enqueue(Script(raw_response=f"HTTP/1.1 200 OK\r\nbad header {key}\r\n\r\n".encode()))
    journal = tmp_path / "j.jsonl"
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=key, max_retries=0, journal=journal)
    with pytest.raises(APIConnectionError) as info:
        s.ask("hello")
    assert "illegal header line" in str(info.value) and "***" in str(info.value)
    for artefact in (str(info.value), s.messages[-1].error, journal.read_text()):
        assert key[:8] not in artefact
