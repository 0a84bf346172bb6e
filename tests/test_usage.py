"""Usage and cost: prices from the model catalogue, unknown when absent, totals per model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oxen_notebook import ServerError, Session
from oxen_notebook._pricing import Pricing, cost_of, pricing_from_info
from oxen_notebook._tokens import count_messages
from oxen_notebook._usage import USAGE_COLUMNS
from tests.conftest import TEST_KEY
from tests.fake_api import PRICING, Script

GPT = "gpt-5-2-chat-latest"


def make_session(fake_api, **kwargs) -> Session:
    return Session(model=GPT, base_url=fake_api.base_url, api_key=TEST_KEY, **kwargs)


def test_cost_arithmetic():
    pricing = Pricing(input_cost_per_token=1.25e-06, output_cost_per_token=1e-05)
    assert cost_of(1000, 500, pricing) == pytest.approx(0.00125 + 0.005)
    assert cost_of(0, 0, pricing) == 0.0
    assert cost_of(None, 5, pricing) is None
    assert cost_of(5, 5, None) is None


def test_pricing_from_info():
    assert pricing_from_info({"pricing": PRICING[GPT]}) == Pricing(1.25e-06, 1e-05)
    assert pricing_from_info({"pricing": {"input_cost_per_token": "2e-6", "output_cost_per_token": 0}}) == (
        Pricing(2e-06, 0.0)
    )
    assert pricing_from_info({"pricing": {"input_cost_per_token": 1e-6}}) is None
    assert pricing_from_info({"pricing": {"input_cost_per_token": -1, "output_cost_per_token": 1}}) is None
    assert pricing_from_info({"pricing": None}) is None
    assert pricing_from_info({}) is None


def test_reply_cost_on_records_and_in_exports(fake_api):
    fake_api.enqueue(Script(text="one two three", usage={"prompt_tokens": 1200, "completion_tokens": 300}))
    s = make_session(fake_api)
    reply = s.ask("price me")
    expected = 1200 * 1.25e-06 + 300 * 1e-05
    assert reply.message.cost_usd == pytest.approx(expected)
    frame = s.to_dataframe()
    assert frame["cost_usd"].dtype == "Float64"
    assert pd.isna(frame["cost_usd"][0]) and frame["cost_usd"][1] == pytest.approx(expected)
    usage = s.usage().set_index("model").loc[GPT]
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 1200, 300)
    assert usage["total_tokens"] == 1500
    assert usage["cost_usd"] == pytest.approx(expected)
    assert usage["input_cost_per_token"] == 1.25e-06
    assert s.usage_summary() == f"1 request · 1,500 tokens · ${expected:.4f}"


def test_prices_are_fetched_once_per_model(fake_api):
    s = make_session(fake_api, validate_schema=False)
    for _ in range(3):
        s.ask("x", history=False)
    s.ask("x", history=False, model="cheap-model")
    gets = [r["path"] for r in fake_api.requests if r["method"] == "GET"]
    assert sorted(gets) == ["/api/ai/models/cheap-model", f"/api/ai/models/{GPT}"]


def test_unknown_prices_are_not_zero(fake_api):
    s = make_session(fake_api)
    reply = s.ask("x", model="test-model")  # the fake catalogue has no prices for it
    assert reply.message.cost_usd is None
    row = s.usage().set_index("model").loc["test-model"]
    assert pd.isna(row["cost_usd"]) and pd.isna(row["input_cost_per_token"])
    assert row["total_tokens"] == 3
    assert s.usage_summary() == "1 request · 3 tokens · cost unknown"
    s.ask("y", history=False)
    assert s.usage_summary().endswith("+ unknown (test-model)")
    assert s.usage_summary().startswith("2 requests · ")


def test_unreachable_catalogue_means_unknown(fake_api, monkeypatch):
    monkeypatch.setattr(fake_api, "models", [*fake_api.models, "ghost-model"])  # gone after the test
    s = make_session(fake_api, validate_schema=False)
    fake_api.enqueue(Script(text="a"))
    s.ask("x", history=False, model="ghost-model")  # /models/ghost-model answers 404
    assert pd.isna(s.usage().set_index("model").loc["ghost-model", "cost_usd"])


def test_missing_usage_is_counted_here_and_errors_are_counted(fake_api):
    s = make_session(fake_api, max_retries=0)
    fake_api.enqueue(Script(text="no usage", usage=None), Script(status=500))
    reply = s.ask("a", history=False)
    message = reply.message
    assert message.usage_estimated is True
    assert (message.prompt_tokens, message.completion_tokens) == (
        count_messages([{"role": "user", "content": "a"}]),
        2,
    )
    assert message.cost_usd == pytest.approx(message.prompt_tokens * 1.25e-06 + 2 * 1e-05)
    with pytest.raises(ServerError):
        s.ask("b", history=False)
    row = s.usage().set_index("model").loc[GPT]
    assert (row["requests"], row["errors"], row["no_usage"], row["estimated"]) == (2, 1, 1, 1)
    assert row["total_tokens"] == message.total_tokens
    assert row["cost_usd"] == pytest.approx(message.cost_usd) and row["cost_estimated"]
    tokens = message.total_tokens
    assert (
        s.usage_summary() == f"2 requests · ~{tokens} tokens (1 counted locally) · ~${message.cost_usd:.4f}"
    )


def test_usage_frame_columns_and_types(fake_api):
    s = make_session(fake_api)
    s.ask("x")
    frame = s.usage()
    old = ["model", "requests", "cache_hits", "errors", "no_usage", "prompt_tokens", "completion_tokens",
           "total_tokens", "cost_usd", "input_cost_per_token", "output_cost_per_token"]  # fmt: skip
    assert set(old) <= set(frame.columns)
    assert list(frame.columns) == USAGE_COLUMNS
    dtypes = {name: str(dtype) for name, dtype in frame.dtypes.items()}
    assert dtypes["estimated"] == "Int64" and dtypes["cost_estimated"] == "boolean"
    assert dtypes["pricing_method"] == "string" and dtypes["cost_per_second"] == "Float64"
    row = frame.set_index("model").loc[GPT]
    assert (row["pricing_method"], row["estimated"], row["cost_estimated"]) == ("token", 0, False)
    assert pd.isna(row["cost_per_second"])


def test_time_priced_model_costs_its_duration(fake_api, monkeypatch):
    monkeypatch.setattr(fake_api, "models", [*fake_api.models, "time-model"])
    s = make_session(fake_api, max_retries=0)
    fake_api.enqueue(Script(text="slow answer", latency=0.05))
    message = s.ask("x", model="time-model").message
    rate = PRICING["time-model"]["cost_per_second"]
    assert message.duration_s > 0
    assert message.cost_usd == pytest.approx(message.duration_s * rate)
    assert message.usage_estimated is False  # the tokens came from the server; the cost is estimated
    row = s.usage().set_index("model").loc["time-model"]
    assert (row["pricing_method"], row["cost_per_second"], row["cost_estimated"]) == ("time", rate, True)
    assert pd.isna(row["input_cost_per_token"])
    assert row["cost_usd"] == pytest.approx(message.cost_usd)
    assert s.usage_summary() == f"1 request · {message.total_tokens} tokens · ~${message.cost_usd:.4f}"
    with pytest.raises(ServerError):  # a failed request is not priced by its time
        fake_api.enqueue(Script(status=500))
        s.ask("y", model="time-model")
    assert s.messages[-1].cost_usd is None
    assert s.usage().set_index("model").loc["time-model", "cost_usd"] == pytest.approx(message.cost_usd)


def test_per_image_model_has_no_price_for_a_text_reply(fake_api, monkeypatch):
    monkeypatch.setattr(fake_api, "models", [*fake_api.models, "image-model"])
    s = make_session(fake_api)
    message = s.ask("x", model="image-model").message
    assert message.cost_usd is None
    row = s.usage().set_index("model").loc["image-model"]
    assert (
        row["pricing_method"] == "per_image" and pd.isna(row["cost_usd"]) and pd.isna(row["cost_estimated"])
    )
    assert s.usage_summary().endswith("· cost unknown")


def test_pricing_methods_from_info():
    assert pricing_from_info({"pricing": {"method": "time", "cost_per_second": "0.001"}}) == Pricing(
        method="time", cost_per_second=0.001
    )
    assert pricing_from_info({"pricing": {"method": "time"}}) is None
    token = {"method": "token", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    assert pricing_from_info({"pricing": token}) == Pricing(1e-6, 2e-6)
    image = pricing_from_info({"pricing": {"method": "per_image", "cost_per_image": 0.04}})
    assert (image.method, image.cost_per_unit) == ("per_image", 0.04)
    assert cost_of(10, 10, image) is None
    time_priced = Pricing(method="time", cost_per_second=0.5)
    assert time_priced.estimated and cost_of(None, None, time_priced, duration_s=3.0) == 1.5
    assert cost_of(None, None, time_priced) is None


def test_cache_hits_cost_nothing_and_spend_no_tokens(fake_api, tmp_path):
    s = make_session(fake_api, cache=tmp_path / "c.sqlite", temperature=0)
    paid = s.ask("same", history=False)
    free = s.ask("same", history=False)
    assert paid.message.cost_usd > 0
    assert free.message.cached and free.message.cost_usd == 0.0
    row = s.usage().set_index("model").loc[GPT]
    assert (row["requests"], row["cache_hits"]) == (1, 1)
    assert row["total_tokens"] == paid.message.prompt_tokens + paid.message.completion_tokens
    assert row["cost_usd"] == pytest.approx(paid.message.cost_usd)
    assert "1 request (1 cached)" in s.usage_summary()


def test_map_cost_column_matches_usage(fake_api):
    s = make_session(fake_api)
    out = s.map([f"w{i}" for i in range(20)], "{text}", model="cheap-model", progress=False)
    per_row = out["prompt_tokens"] * 1e-07 + out["completion_tokens"] * 2e-07
    assert list(out["cost_usd"]) == pytest.approx(list(per_row))
    total = s.usage().set_index("model").loc["cheap-model", "cost_usd"]
    assert total == pytest.approx(out["cost_usd"].sum())
    assert s.usage()["model"].tolist() == ["cheap-model"]


BAD_USAGE = [
    {"prompt_tokens": 12.5, "completion_tokens": 3, "total_tokens": 15.5},
    {"prompt_tokens": "12", "completion_tokens": "3", "total_tokens": "15"},
    {"prompt_tokens": 2**63, "completion_tokens": 3, "total_tokens": 2**63 + 3},
    {"prompt_tokens": -5, "completion_tokens": 3, "total_tokens": -2},
    {"prompt_tokens": True, "completion_tokens": [3], "total_tokens": {"n": 4}},
    [12, 3, 15],
    "12 tokens",
]


@pytest.mark.parametrize("usage", BAD_USAGE, ids=lambda u: repr(u)[:24])
def test_usage_that_is_not_a_count_is_missing_and_counted_here(fake_api, usage):
    """Counts that are not non-negative integers are missing: counted here and marked estimated.
    A streamed reply, then a map whose every row was paid for: the rows all come back, and the
    session's DataFrames and usage keep working."""
    s = make_session(fake_api)
    fake_api.handler = lambda body: Script(text="three word reply", usage=usage)
    reply = s.ask("hello")
    prompt = count_messages([{"role": "user", "content": "hello"}])
    server_completion = isinstance(usage, dict) and usage["completion_tokens"] == 3
    completion = 3 if server_completion else reply.message.completion_tokens
    assert (reply.message.prompt_tokens, reply.message.completion_tokens) == (prompt, completion)
    assert reply.message.usage_estimated is True and reply.message.total_tokens == prompt + completion
    out = s.map(["a", "b", "c"], "Say {}")
    assert list(out["reply"]) == ["three word reply"] * 3 and out["error"].isna().all()
    assert out["prompt_tokens"].notna().all() and str(out["prompt_tokens"].dtype) == "Int64"
    frame = s.to_dataframe()
    assert list(frame["prompt_tokens"].dropna()) == [prompt]
    assert len(s.to_dataframe(batch=True)) == 6
    row = s.usage().set_index("model").loc[GPT]
    assert (row["requests"], row["estimated"], row["no_usage"]) == (4, 4, 0)
    assert row["cost_usd"] > 0 and row["cost_estimated"]
    s.ask("still usable")


def test_a_record_holding_a_bad_count_does_not_break_the_dataframe():
    from oxen_notebook._records import Message, messages_to_dataframe

    def counts(values):
        messages = [Message(role="assistant", content="x", prompt_tokens=v) for v in values]
        return list(messages_to_dataframe(messages)["prompt_tokens"].astype(object))

    assert counts([12.5, "12", 2**63, -5, True, 7, np.int64(8)]) == [pd.NA] * 5 + [7, 8]  # an object column
    assert counts([2**63, -5, 7, None, 7.0]) == [pd.NA, pd.NA, 7, pd.NA, 7]  # a numeric column


def test_reply_usage_has_the_counts_made_here_marked_estimated(fake_api, tmp_path):
    s = make_session(fake_api, cache=tmp_path / "c.sqlite", temperature=0)
    fake_api.enqueue(Script(text="no usage here", usage=None))
    reply = s.ask("a", history=False)
    m = reply.message
    counts = {name: getattr(m, name) for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert m.usage_estimated and m.completion_tokens == 3
    assert reply.usage == {**counts, "estimated": True}
    again = s.ask("a", history=False)  # from the cache, which keeps what the server sent: counted here again
    assert again.message.cached and again.usage == {**counts, "estimated": True}
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    fake_api.enqueue(Script(text="with usage", usage=usage))
    sent = s.ask("b")
    assert sent.usage == usage
    assert sent.message.usage_estimated is False


def test_async_reply_usage_is_marked_estimated_too(fake_api):
    import asyncio

    s = make_session(fake_api)
    fake_api.enqueue(Script(text="no usage", usage=None))
    reply = asyncio.run(s.aask("a"))
    assert reply.usage["estimated"] is True and reply.usage["total_tokens"] == reply.message.total_tokens
