"""Session.estimate and map(max_cost_usd=): counts against what map sends, prices by method,
sampling, and a budget that stops starting rows at the right one."""

from __future__ import annotations

import pandas as pd
import pytest

from oxen_notebook import ParameterError, Session
from oxen_notebook._batch import _estimate
from oxen_notebook._batch._budget import Budget
from oxen_notebook._pricing import Pricing, cost_of
from oxen_notebook._records import Message
from oxen_notebook._tokens import count_messages
from tests.conftest import TEST_KEY
from tests.fake_api import PRICING, Script, _prompt_text

GPT = "gpt-5-2-chat-latest"
IN, OUT = PRICING[GPT]["input_cost_per_token"], PRICING[GPT]["output_cost_per_token"]


def make_session(fake_api, model: str = GPT, **kwargs) -> Session:
    return Session(model=model, base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0, **kwargs)


def reviews(n: int) -> pd.DataFrame:
    words = ["great", "awful", "fine, I suppose", "ünïcödé ✓", "the box arrived crushed and late"]
    return pd.DataFrame(
        {
            "review": [f"{words[i % 5]} " * (i % 7 + 1) for i in range(n)],
            "stars": [i % 5 + 1 for i in range(n)],
        }
    )


def sent_prompt_tokens(fake_api) -> list[int]:
    return [count_messages(body["messages"]) for body in fake_api.chat_requests()]


# -- estimate -------------------------------------------------------------------------------------


def test_prompt_tokens_are_exactly_what_map_sends_counted_as_preview_counts(fake_api):
    """The estimate fills each row as map does (context_chars cuts included) and counts system +
    prompt with count_messages: the sum over the bodies map then sends, and preview's own count."""
    s = make_session(fake_api, system="You label reviews. Answer with one word.", context_chars=60)
    data = reviews(40)
    data.loc[3, "review"] = "a very long review " * 40  # cut to context_chars by the fill
    template = "Stars: {stars}\nReview: {review}\nLabel it."
    est = s.estimate(data, template)
    assert [r["path"] for r in fake_api.requests] == [f"/api/ai/models/{GPT}"]  # nothing else sent

    s.map(data, template, progress=False, concurrency=4)
    sent = sent_prompt_tokens(fake_api)
    assert len(sent) == 40
    assert est.prompt_tokens == sum(sent)
    assert est.max_prompt_tokens == max(sent)
    bodies = fake_api.chat_requests()
    assert all(len(_prompt_text(b)) < 200 for b in bodies)  # the long review was cut, as estimated
    previews = [s.preview(_prompt_text(b), history=False)["prompt_tokens"] for b in bodies]
    assert previews == sent
    assert (est.rows, est.counted, est.sampled, est.unfilled) == (40, 40, False, 0)
    assert est.prompt_tokens_margin is None
    assert est.token_counter == "o200k_base"


def test_reply_rule_and_cost_per_token(fake_api):
    s = make_session(fake_api)
    rows = [f"item {i}" for i in range(10)]
    prompts = sum(count_messages([{"role": "user", "content": f"Say {r}"}]) for r in rows)

    guess = s.estimate(rows, "Say {text}")
    assert (guess.completion_rule, guess.completion_tokens_per_row) == ("default", 256)
    assert guess.completion_tokens == 10 * _estimate.DEFAULT_REPLY_TOKENS
    assert guess.cost_usd == pytest.approx(prompts * IN + 2560 * OUT)
    assert guess.max_cost_usd is None
    assert "a guess" in str(guess) and f"≈ ${guess.cost_usd:,.4f}" in str(guess)

    bound = s.estimate(rows, "Say {text}", max_tokens=10)
    assert (bound.completion_rule, bound.completion_tokens) == ("max_tokens", 100)
    assert bound.cost_usd == bound.max_cost_usd == pytest.approx(prompts * IN + 100 * OUT)
    assert "≤ 100 reply tokens, at most 10 a row (max_tokens)" in str(bound)

    expected = s.estimate(rows, "Say {text}", max_tokens=100, expected_output_tokens=40)
    assert (expected.completion_rule, expected.completion_tokens) == ("expected_output_tokens", 400)
    assert expected.cost_usd == pytest.approx(prompts * IN + 400 * OUT)
    assert expected.max_cost_usd == pytest.approx(prompts * IN + 1000 * OUT)

    default = make_session(fake_api, max_tokens=7).estimate(rows, "Say {text}")  # the session's default
    assert (default.completion_rule, default.completion_tokens) == ("max_tokens", 70)

    d = bound.to_dict()
    assert d["prompt_tokens"] == prompts and d["pricing"] == "token" and d["model"] == GPT
    assert fake_api.chat_requests() == []
    with pytest.raises(ParameterError, match="expected_output_tokens"):
        s.estimate(rows, "Say {text}", expected_output_tokens=-1)
    with pytest.raises(ParameterError, match="unknown parameter"):
        s.estimate(rows, "Say {text}", temprature=0)
    with pytest.raises(ParameterError, match="no such column"):
        s.estimate(rows, "Say {missing}")


def test_pricing_methods(fake_api):
    fake_api.models += ["time-model", "image-model"]
    s = make_session(fake_api)
    rows = ["a", "b"]
    cheap = s.estimate(rows, "{text}", model="cheap-model", max_tokens=5)
    assert cheap.pricing == "token" and cheap.cost_usd == pytest.approx(
        cost_of(cheap.prompt_tokens, 10, Pricing(1e-07, 2e-07))
    )
    timed = s.estimate(rows, "{text}", model="time-model")
    assert (timed.pricing, timed.cost_usd, timed.max_cost_usd) == ("time", None, None)
    assert (
        timed.cost_note
        == "time-model is billed by time ($0.002 a second): its cost cannot be estimated before it runs"
    )
    assert timed.prompt_tokens > 0  # the tokens are still counted
    image = s.estimate(rows, "{text}", model="image-model")
    assert (image.pricing, image.cost_usd) == ("per_image", None)
    assert "no price applies to a text reply" in image.cost_note
    unpriced = s.estimate(rows, "{text}", model="test-model")
    assert (unpriced.pricing, unpriced.cost_usd, unpriced.cost_note) == (
        None,
        None,
        "test-model has no published prices",
    )
    assert "cost unknown: test-model has no published prices" in str(unpriced)
    s.estimate(rows, "{text}", model="time-model")  # details are fetched once per model per session
    paths = [r["path"] for r in fake_api.requests]
    assert sorted(paths) == sorted(
        f"/api/ai/models/{m}" for m in ("cheap-model", "time-model", "image-model", "test-model")
    )


def test_rows_that_cannot_be_filled_are_counted_apart(fake_api):
    s = make_session(fake_api)
    est = s.estimate([{"a": "x"}, {"b": "y"}, {"a": "z"}], "{a}", max_tokens=3)
    assert (est.rows, est.unfilled, est.completion_tokens) == (3, 1, 6)
    assert est.prompt_tokens == sum(count_messages([{"role": "user", "content": t}]) for t in "xz")


class Counted:
    """A cell value that counts how often a template renders it."""

    renders = 0

    def __init__(self, i: int) -> None:
        self.i = i

    def _render(self) -> str:
        Counted.renders += 1
        return f"value {self.i} " * (self.i % 9 + 1)

    __str__ = __repr__ = _render

    def __format__(self, spec: str) -> str:
        return self._render()


def test_sample_counts_only_the_sampled_rows_and_scales(fake_api):
    s = make_session(fake_api)
    n = 5_000
    frame = pd.DataFrame({"v": [Counted(i) for i in range(n)]})
    Counted.renders = 0
    est = s.estimate(frame, "Describe {v}", sample=500, max_tokens=1)
    assert Counted.renders <= 500 * 2  # only the sampled rows were filled
    assert (est.rows, est.counted, est.sampled) == (n, 500, True)
    assert est.completion_tokens == n
    exact = sum(
        count_messages([{"role": "user", "content": "Describe " + f"value {i} " * (i % 9 + 1)}])
        for i in range(n)
    )
    assert est.prompt_tokens != exact  # scaled from a sample, not counted whole
    # The margin is a 95 % half-width: this seed's sample falls just outside it (z = 2.0).
    assert abs(est.prompt_tokens - exact) <= 1.5 * est.prompt_tokens_margin < exact * 0.05
    assert "500 of 5,000 rows counted and scaled" in str(est) and f"(±{est.prompt_tokens_margin:,})" in str(
        est
    )
    again = s.estimate(frame, "Describe {v}", sample=500, max_tokens=1)
    assert again.prompt_tokens == est.prompt_tokens  # a seeded sample: the same rows every time
    whole = s.estimate(frame, "Describe {v}", sample=n)
    assert (whole.prompt_tokens, whole.sampled) == (exact, False)
    with pytest.raises(ParameterError, match="sample"):
        s.estimate(frame, "{v}", sample=0)


def test_large_data_is_sampled_by_default_and_says_so(fake_api, monkeypatch):
    monkeypatch.setattr(_estimate, "EXACT_ROWS", 1_000)
    monkeypatch.setattr(_estimate, "AUTO_SAMPLE", 100)
    s = make_session(fake_api)
    small = s.estimate([f"r{i}" for i in range(1_000)], "{text}")
    assert (small.counted, small.sampled) == (1_000, False)
    large = s.estimate([f"r{i}" for i in range(1_001)], "{text}")
    assert (large.rows, large.counted, large.sampled) == (1_001, 100, True)


# -- the budget -----------------------------------------------------------------------------------

FIXED_USAGE = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}


def fixed_replies(latency: float = 0.05):
    return lambda body: Script(text=f"Echo: {_prompt_text(body)}", usage=FIXED_USAGE, latency=latency)


def test_budget_stops_starting_rows_at_the_right_one(fake_api, capsys):
    """Each reply costs exactly 100 prompt + 50 completion tokens; each row is estimated at its
    counted prompt + max_tokens. Rows start in order while spent + in flight + next ≤ budget, so
    with estimates that bound the cost, row k starts iff k * cost + estimate ≤ budget, at any
    concurrency: the rows in flight count at their estimate, and a row that does not fit waits
    for them."""
    fake_api.handler = fixed_replies()
    s = make_session(fake_api)
    rows = [f"row {i:03d}" for i in range(60)]  # every prompt counts the same
    budget, max_tokens = 0.01, 100
    actual = 100 * IN + 50 * OUT
    estimate = count_messages([{"role": "user", "content": "Label: row 000"}]) * IN + max_tokens * OUT
    assert estimate > actual
    expected = next(k for k in range(len(rows)) if k * actual + estimate > budget)
    assert 8 < expected < 60

    out = s.map(rows, "Label: {text}", concurrency=8, max_tokens=max_tokens, max_cost_usd=budget)

    assert len(fake_api.chat_requests()) == expected
    sent = sorted(int(_prompt_text(b).split()[-1]) for b in fake_api.chat_requests())
    assert sent == list(range(expected))  # a prefix, in order
    assert out["reply"].notna().sum() == expected
    assert list(out["reply"][:expected]) == [f"Echo: Label: {r}" for r in rows[:expected]]
    unsent = out.iloc[expected:]
    assert set(unsent["error"]) == {"not sent: the budget of $0.01 would be passed"}
    assert set(unsent["finish_reason"]) == {"interrupted"} and unsent["cost_usd"].isna().all()
    assert out.attrs["budget_stopped"] is True and out.attrs["interrupted"] is False
    assert out.attrs["cost_usd"] == pytest.approx(expected * actual)
    assert out.attrs["cost_usd"] <= budget
    assert s.usage()["cost_usd"].sum() == pytest.approx(out.attrs["cost_usd"])
    err = capsys.readouterr().err
    assert (
        f"stopped by the budget: ${expected * actual:,.4f} of $0.01 spent, {60 - expected} rows not sent"
        in err
    )


def test_budget_that_is_not_reached_sends_every_row(fake_api):
    fake_api.handler = fixed_replies(latency=0)
    s = make_session(fake_api)
    out = s.map([f"r{i}" for i in range(20)], "{text}", max_cost_usd=5.0, progress=False)
    assert len(fake_api.chat_requests()) == 20 and out["error"].isna().all()
    assert out.attrs["budget_stopped"] is False
    assert out.attrs["cost_usd"] == pytest.approx(20 * (100 * IN + 50 * OUT))


def test_a_budget_smaller_than_one_row_sends_nothing(fake_api):
    fake_api.handler = fixed_replies(latency=0)
    s = make_session(fake_api)
    out = s.map(["a", "b"], "{text}", max_tokens=1000, max_cost_usd=0.001, progress=False)
    assert fake_api.chat_requests() == []
    assert out.attrs["budget_stopped"] is True and out.attrs["cost_usd"] is None
    assert out["error"].str.startswith("not sent: the budget").all()


def test_a_budget_needs_per_token_prices_and_is_refused_before_anything_is_sent(fake_api):
    fake_api.models += ["time-model"]
    s = make_session(fake_api, model="test-model")
    with pytest.raises(ParameterError) as info:
        s.map(["a"], "{text}", max_cost_usd=5.0, progress=False)
    assert str(info.value) == (
        "max_cost_usd=5.0 cannot be kept: test-model has no published prices; drop max_cost_usd, "
        "or use a model priced per token (oxen_notebook.list_models())."
    )
    with pytest.raises(ParameterError, match="time-model is billed by time"):
        s.map(["a"], "{text}", model="time-model", max_cost_usd=5.0, progress=False)
    for bad in (0, -1, "5", True, float("nan")):
        with pytest.raises(ParameterError, match="max_cost_usd"):
            s.map(["a"], "{text}", max_cost_usd=bad, progress=False)
    assert fake_api.chat_requests() == []
    # Without a budget the unpriced model runs as before.
    assert s.map(["a"], "{text}", progress=False).attrs["cost_usd"] is None


def test_the_reply_guess_grows_to_the_longest_reply_unless_max_tokens_bounds_it():
    def reply(tokens: int, cost: float) -> Message:
        return Message("assistant", "x", completion_tokens=tokens, cost_usd=cost)

    pricing = Pricing(1e-06, 1e-05)
    guess = Budget(1.0, pricing, lambda i: 10, 256, bound=False, total=3)
    assert guess.estimate(0) == pytest.approx(10e-06 + 256e-05)
    assert guess.admit(0) and guess.in_flight == pytest.approx(guess.estimate(0))
    guess.finished(0, [reply(1000, 0.02)])
    assert (guess.in_flight, guess.spent) == (0, 0.02)
    assert guess.estimate(1) == pytest.approx(10e-06 + 1000e-05)
    bound = Budget(1.0, pricing, lambda i: 10, 256, bound=True, total=3)
    assert bound.admit(0)
    bound.finished(0, [reply(1000, 0.02)])
    assert bound.estimate(1) == pytest.approx(10e-06 + 256e-05)
    rowless = Budget(1.0, pricing, lambda i: None, 256, bound=True, total=1)
    assert rowless.estimate(0) == 0.0  # a row that sends nothing costs nothing
