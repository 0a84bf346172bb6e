from __future__ import annotations

import pytest

from oxen_notebook import NotFoundError, Session, list_models, model_info
from oxen_notebook._client import Client


def test_list_models_dataframe(fake_api):
    fake_api.api_key = None
    df = list_models(client=Client(fake_api.base_url, api_key=None, key_required=False))
    assert list(df["id"])[:3] == ["gpt-5-2-chat-latest", "test-model", "cheap-model"]  # then "local"
    row = df.set_index("id").loc["gpt-5-2-chat-latest"]
    assert row["developer"] == "Fake"
    assert row["input"] == "text,image"
    assert row["output_cost_per_token"] == pytest.approx(1e-05)
    assert str(df["input_cost_per_token"].dtype) == "Float64"


def test_model_info_reads_either_schema_key(fake_api, monkeypatch):
    s = Session(base_url=fake_api.base_url, api_key="test-key")
    info = s.model_info()
    assert info["request_schema"]["properties"]["max_tokens"]["maximum"] == 16384
    assert s.model_info("test-model")["request_schema"] is None
    monkeypatch.setenv("OXEN_BASE_URL", fake_api.base_url)
    monkeypatch.setenv("OXEN_API_KEY", "test-key")
    assert model_info("cheap-model")["pricing"]["input_cost_per_token"] == 1e-07
    with pytest.raises(NotFoundError, match="list_models"):
        model_info("nope")


def test_json_request_schema_key_is_read():
    import httpx

    def handler(request):
        return httpx.Response(200, json={"id": "m", "json_request_schema": {"properties": {}}})

    client = Client("http://x", key_required=False, transport=httpx.MockTransport(handler))
    assert model_info("m", client=client)["request_schema"] == {"properties": {}}
