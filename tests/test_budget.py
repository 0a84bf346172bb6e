"""Session.estimate and map(max_cost_usd=): counts against what map sends, prices by method,
sampling, and a budget that stops starting rows at the right one."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from oxen_notebook import ParameterError, Session
from oxen_notebook._batch import _estimate
from oxen_notebook._batch._budget import PROMPT_MARGIN, Budget
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
    """Each reply costs exactly 100 prompt + 50 completion tokens; the first row is estimated at
    its counted prompt (PROMPT_MARGIN higher) + max_tokens, the others at the server's 100 prompt
    tokens (its ratio to our count is higher than the margin) + max_tokens. Rows start in order
    while spent + in flight + next ≤ budget, so with estimates that bound the cost, row k starts
    iff k * cost + estimate ≤ budget, at any concurrency: the rows in flight count at their
    estimate, and a row that does not fit waits for them."""
    fake_api.handler = fixed_replies()
    s = make_session(fake_api)
    rows = [f"row {i:03d}" for i in range(60)]  # every prompt counts the same
    budget, max_tokens = 0.01, 100
    actual = 100 * IN + 50 * OUT
    counted = count_messages([{"role": "user", "content": "Label: row 000"}])
    assert counted * (1 + PROMPT_MARGIN) < 100
    estimate = 100 * IN + max_tokens * OUT
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
    prompt = 10 * (1 + PROMPT_MARGIN)  # the counted prompt, taken PROMPT_MARGIN higher
    guess = Budget(1.0, pricing, lambda i: 10, 256, bound=False, total=3)
    assert guess.estimate(0) == pytest.approx(prompt * 1e-06 + 256e-05)
    assert guess.admit(0) and guess.in_flight == pytest.approx(guess.estimate(0))
    assert not guess.admit(1)  # the first row runs alone
    guess.finished(0, [reply(1000, 0.02)])
    assert (guess.in_flight, guess.spent) == (0, 0.02)
    assert guess.estimate(1) == pytest.approx(prompt * 1e-06 + 1000e-05)
    bound = Budget(1.0, pricing, lambda i: 10, 256, bound=True, total=3)
    assert bound.admit(0)
    bound.finished(0, [reply(1000, 0.02)])
    assert bound.estimate(1) == pytest.approx(prompt * 1e-06 + 256e-05)
    assert bound.admit(1) and bound.admit(2)  # then concurrently
    rowless = Budget(1.0, pricing, lambda i: None, 256, bound=True, total=1)
    assert rowless.estimate(0) == 0.0  # a row that sends nothing costs nothing


def test_the_servers_counts_raise_the_prompt_ratio_but_estimated_ones_do_not():
    pricing = Pricing(1e-06, 1e-05)
    budget = Budget(1.0, pricing, lambda i: 100, 10, bound=True, total=3)
    assert budget.admit(0)
    budget.finished(0, [Message("assistant", "x", prompt_tokens=110, cost_usd=0.0)])
    assert budget.prompt_scale == 1 + PROMPT_MARGIN  # 1.1 is within the margin
    assert budget.admit(1)
    budget.finished(1, [Message("assistant", "x", prompt_tokens=900, usage_estimated=True, cost_usd=0.0)])
    assert budget.prompt_scale == 1 + PROMPT_MARGIN  # our own count says nothing about the server's
    assert budget.admit(2)
    budget.finished(2, [Message("assistant", "x", prompt_tokens=150, cost_usd=0.0)])
    assert budget.prompt_scale == 1.5
    assert budget.estimate(3) == pytest.approx(150 * 1e-06 + 10 * 1e-05)


# -- what the server counts: attachments, other tokenizers ------------------------------------------


def _text_only(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p["text"] for p in content if p.get("type") == "text")
        out.append({**m, "content": content})
    return out


def _images(body: dict) -> int:
    return sum(
        1
        for m in body["messages"]
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    )


def priced_usage(text_scale: float = 1.0, per_image: int = 0, completion: int = 10):
    """A server that counts a prompt's text ``text_scale`` times o200k_base's count (a Llama-family
    tokenizer: 1.08), each image ``per_image`` tokens, and every reply ``completion`` tokens."""

    def handler(body: dict) -> Script:
        prompt = math.ceil(count_messages(_text_only(body["messages"])) * text_scale) + per_image * _images(
            body
        )
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return Script(text="ok", usage=usage, latency=0.02)

    return handler


def test_a_budget_counts_the_images_every_row_sends(fake_api):
    """map(max_tokens=10, max_cost_usd=..., images=[png]) used to estimate each row without its
    image: rows in flight then cost ten times their estimate and the budget was passed. A 1024 x
    1024 image is 765 tokens by OpenAI's published tile rule: the server counts that."""
    np = pytest.importorskip("numpy")
    fake_api.handler = priced_usage(per_image=765)
    s = make_session(fake_api)
    picture = np.zeros((1024, 1024, 3), dtype=np.uint8)
    rows = [f"row {i:03d}" for i in range(60)]
    budget = 0.01
    out = s.map(rows, "Describe {text}", images=[picture], max_tokens=10, max_cost_usd=budget,
                concurrency=8, progress=False)  # fmt: skip
    sent = fake_api.chat_requests()
    assert all(_images(b) == 1 for b in sent)
    assert out.attrs["cost_usd"] <= budget
    per_row = out["cost_usd"].dropna().iloc[0]
    assert per_row == pytest.approx((count_messages(_text_only(sent[0]["messages"])) + 765) * IN + 10 * OUT)
    assert len(sent) >= int(budget / per_row) - 4  # it still spends most of it
    assert out.attrs["budget_stopped"] is True

    est = s.estimate(rows, "Describe {text}", images=[picture], max_tokens=10)
    assert est.max_prompt_tokens >= count_messages(_text_only(sent[0]["messages"])) + 765


def test_a_server_that_counts_prompts_higher_cannot_pass_the_budget(fake_api):
    """The README's own figure: a Llama-family tokenizer counts 6-8 % more than o200k_base, and a
    $0.50 budget spent $0.5052. One row at a time, the budget is set exactly where the old estimate
    (our count, no margin) let one more row start: that row passed it. Now the prompt is taken
    PROMPT_MARGIN higher."""
    fake_api.handler = priced_usage(text_scale=1.08, completion=5)
    s = make_session(fake_api)
    rows = [("the review goes on and on about the box " * 30) + f"#{i:03d}" for i in range(40)]
    prompt = count_messages([{"role": "user", "content": f"Label: {rows[0]}"}])
    counted = prompt * IN + 5 * OUT  # the old estimate of a row
    actual = math.ceil(prompt * 1.08) * IN + 5 * OUT
    budget = 9 * actual + counted  # the old rule starts a 10th row: 10 * actual > budget
    assert 10 * actual > budget
    out = s.map(rows, "Label: {text}", max_tokens=5, max_cost_usd=budget, concurrency=1, progress=False)
    assert out.attrs["cost_usd"] <= budget
    assert len(fake_api.chat_requests()) == 9


def test_the_first_row_runs_alone_and_calibrates_the_rest(fake_api):
    """A server that counts half as much again as we do (a chat template's overhead, say): the
    first row runs alone, its count sets the ratio the others are taken at, and eight rows in
    flight cannot pass the budget."""
    fake_api.handler = priced_usage(text_scale=1.5, completion=5)
    s = make_session(fake_api)
    rows = [("a long enough prompt to matter " * 40) + f"#{i:03d}" for i in range(80)]
    prompt = count_messages([{"role": "user", "content": f"Label: {rows[0]}"}])
    actual = math.ceil(prompt * 1.5) * IN + 5 * OUT
    budget = 30.5 * actual  # not on a row's edge: the sums are floats
    fake_api.track_in_flight()
    out = s.map(rows, "Label: {text}", max_tokens=5, max_cost_usd=budget, concurrency=8, progress=False)
    assert out.attrs["cost_usd"] <= budget
    assert 25 <= len(fake_api.chat_requests()) <= 30
    assert fake_api.max_in_flight > 1  # after the first row, the rows run concurrently again
    assert fake_api.chat_requests()[0]["messages"][-1]["content"].endswith("#000")


def test_attachment_tokens_follow_the_published_rules():
    from oxen_notebook._tokens import count_part, image_size, image_tokens

    assert [image_tokens(1024, 1024, "gpt-4o"), image_tokens(100, 100, "gpt-4o")] == [1399, 258]
    # OpenAI's documented examples, where its rule is the largest: 2048 x 4096 is 1,105 tokens, and
    # gpt-4o-mini's 1024 x 1024 is 2,833 + 4 x 5,667.
    assert image_tokens(1024, 1024, "gpt-4o-mini") == 25_501
    assert image_tokens(None, None) >= max(image_tokens(768, 2048), image_tokens(1092, 1092))
    PIL = pytest.importorskip("PIL.Image")
    import io

    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        buffer = io.BytesIO()
        PIL.new("RGB", (1234, 567)).save(buffer, fmt)
        assert image_size(buffer.getvalue()) == (1234, 567), fmt
    wav = io.BytesIO()
    import wave

    with wave.open(wav, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000 * 3)  # three seconds
    from oxen_notebook._attachments import attach

    assert count_part(attach(wav.getvalue()).part) == 3 * 32
