"""Session.evaluate through the loopback server: a model whose accuracy per variant is known."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from oxen_notebook import EvalResult, ParameterError, Variant, scorers
from tests.fake_api import Script, _prompt_text

LABELS = ["positive", "negative", "mixed"]


def labelled(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame(
        {"review": [f"review {i}" for i in range(n)], "label": [LABELS[i % 3] for i in range(n)]}
    )


def classifier(body):
    """Variant A's prompts ("A: review i") are always right; B's ("B: review i") right on even i;
    C's right when i % 3 != 2. The answer is the label, in varying case and punctuation."""
    prompt = _prompt_text(body)
    match = re.search(r"(\w+): review (\d+)", prompt)
    kind, i = match.group(1), int(match.group(2))
    right = {"A": True, "B": i % 2 == 0, "C": i % 3 != 2}.get(kind, False)
    label = LABELS[i % 3] if right else LABELS[(i + 1) % 3]
    return Script(text=f"  {label.title()}." if i % 4 == 0 else label)


@pytest.fixture
def classifying(fake_api):
    fake_api.handler = classifier
    return fake_api


VARIANTS = {"a": "A: {review}", "b": "B: {review}", "c": "C: {review}"}


def test_known_accuracies_with_wilson_intervals_and_a_marked_best(session, classifying):
    ev = session.evaluate(
        labelled(), VARIANTS, target="label", models=["gpt-5-2-chat-latest"], progress=False
    )
    summary = ev.summary.set_index("variant")
    assert summary.loc["a", "exact"] == 1.0
    assert summary.loc["b", "exact"] == 0.5
    assert summary.loc["c", "exact"] == pytest.approx(40 / 60)
    for name, k in (("a", 60), ("b", 30), ("c", 40)):
        low, high = proportion_confint(k, 60, method="wilson")
        assert summary.loc[name, "exact_low"] == pytest.approx(low, abs=1e-6)
        assert summary.loc[name, "exact_high"] == pytest.approx(high, abs=1e-6)
        assert summary.loc[name, "n"] == 60 and summary.loc[name, "errors"] == 0
    assert summary["best"].tolist() == [True, False, False]
    assert summary.loc["b", "p_vs_best"] < 0.05 and "worse than the best" in summary.loc["b", "note"]
    assert len(classifying.chat_requests()) == 180
    assert summary.loc["a", "cost_usd"] > 0 and summary.loc["a", "prompt_tokens"] > 0
    assert summary.loc["b", "cost_per_correct"] == pytest.approx(summary.loc["b", "cost_usd"] / 30)
    assert summary.loc["a", "latency_p50_s"] > 0
    text = str(ev)
    assert "★" in text and "evaluation · 60 rows × 3 variants" in text


def test_compare_is_paired_mcnemar_on_the_rows_both_answered(session, classifying):
    ev = session.evaluate(labelled(), VARIANTS, target="label", progress=False)
    got = ev.compare("b", "c")
    b = np.array([i % 2 == 0 for i in range(60)])
    c = np.array([i % 3 != 2 for i in range(60)])
    wins, losses = int((c & ~b).sum()), int((b & ~c).sum())
    assert (got.wins, got.losses, got.ties, got.n) == (wins, losses, 60 - wins - losses, 60)
    table = [[int((b & c).sum()), losses], [wins, int((~b & ~c).sum())]]
    assert got.p_value == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-6)
    assert got.difference == pytest.approx(c.mean() - b.mean())
    assert "no real difference shown" in got.verdict() and "rows would tell" in got.verdict()
    versus = ev.versus("a").set_index("b")
    assert versus.loc["b", "verdict"] == "worse" and versus.loc["b", "p_holm"] >= versus.loc["b", "p_value"]


def test_disagreements_list_the_rows_with_both_replies(session, classifying):
    ev = session.evaluate(labelled(12), VARIANTS, target="label", progress=False)
    rows = ev.disagreements("a", "b")
    assert rows["review"].tolist() == [f"review {i}" for i in range(12) if i % 2 == 1]
    assert (rows["exact_a"] == 1.0).all() and (rows["exact_b"] == 0.0).all()
    assert rows["reply_a"].tolist() == [LABELS[i % 3] for i in range(12) if i % 2 == 1]


def test_one_pool_interleaved_across_variants(session, classifying):
    classifying.track_in_flight()
    classifying.handler = lambda body: Script(text=classifier(body).text, latency=0.05)
    ev = session.evaluate(labelled(30), VARIANTS, target="label", concurrency=4, progress=False)
    assert classifying.max_in_flight <= 4
    first = [re.match(r"(\w):", _prompt_text(b)).group(1) for b in classifying.chat_requests()[:6]]
    assert set(first) == {"A", "B", "C"}  # rows interleaved: every variant starts at once
    assert ev.summary["n"].tolist() == [30, 30, 30]


def test_identical_requests_are_sent_once(session, classifying):
    data = labelled(20)
    dupes = pd.concat([data, data.iloc[:6], data.iloc[:4]], ignore_index=True)  # 30 rows, 20 unique
    ev = session.evaluate(dupes, {"a": "A: {review}", "b": "B: {review}"}, target="label", progress=False)
    assert len(classifying.chat_requests()) == 40
    assert int(ev.rows["shared"].sum()) == 20
    assert ev.summary["n"].tolist() == [30, 30]
    assert ev.rows.loc[ev.rows["shared"], "cost_usd"].eq(0).all()


def test_models_cross_the_variants_that_name_none_and_a_variant_has_its_own_system(session, fake_api):
    fake_api.handler = lambda body: Script(text=body["model"])
    ev = session.evaluate(
        ["x", "y"],
        {"p": "Say {text}", "q": Variant("Only {text}", model="cheap-model", system="Be brief.")},
        scorers=[scorers.regex("model")],
        models=["test-model", "gpt-5-2-chat-latest"],
        progress=False,
    )
    assert ev.variants == ["p@test-model", "p@gpt-5-2-chat-latest", "q"]
    sent = fake_api.chat_requests()
    assert sorted(b["model"] for b in sent) == sorted(
        ["test-model", "gpt-5-2-chat-latest", "cheap-model"] * 2
    )
    q = [b for b in sent if b["model"] == "cheap-model"]
    assert all(b["messages"][0] == {"role": "system", "content": "Be brief."} for b in q)
    assert all(b["messages"][0]["role"] == "user" for b in sent if b["model"] != "cheap-model")
    assert ev.summary.set_index("variant").loc["q", "model"] == "cheap-model"


def test_a_scorer_that_raises_marks_its_cell_not_the_run(session, classifying):
    def fussy(reply, row):
        if row["review"].endswith("3"):
            raise ValueError("cannot grade this one")
        return len(reply) > 3

    ev = session.evaluate(
        labelled(6), {"a": "A: {review}"}, target="label", scorers=[scorers.exact(), fussy], progress=False
    )
    rows = ev.rows.set_index("row")
    assert pd.isna(rows.loc[3, "fussy"]) and "cannot grade this one" in rows.loc[3, "scorer_error"]
    assert rows["exact"].tolist() == [1.0] * 6
    assert ev.summary.loc[0, "fussy"] == 1.0  # the five it graded; bools: a pass rate


def test_graded_scorers_and_numeric(session, fake_api):
    fake_api.handler = lambda body: Script(text="the answer is 41.9 units")
    data = pd.DataFrame({"q": ["a", "b"], "want": [42, 50], "words": ["answer is 41.9", "nothing here"]})
    ev = session.evaluate(
        data,
        {"v": "{q}"},
        scorers=[scorers.numeric(tol=0.5, target="want"), scorers.f1(target="words")],
        progress=False,
    )
    rows = ev.rows
    assert rows["numeric"].tolist() == [1.0, 0.0]
    # SQuAD's F1: reply tokens answer is 419 units ("the" dropped), target answer is 419.
    assert rows["f1"][0] == pytest.approx(2 * (3 / 4) * 1.0 / (3 / 4 + 1.0))
    assert rows["f1"][1] == 0.0


def test_exact_normalizes_case_whitespace_and_punctuation():
    score = scorers.exact(target="t").grade
    assert score("  Positive.\n", {"t": "positive"}, None) is True
    assert score("«positive»", {"t": "Positive"}, None) is True
    assert score("not positive", {"t": "positive"}, None) is False
    assert scorers.contains(target="t").grade("I think it is Positive!", {"t": "positive"}, None) is True
    assert scorers.contains(target="t").grade("positively", {"t": "positive"}, None) is False
    assert scorers.exact(normalize=False, target="t").grade("Positive", {"t": "positive"}, None) is False
    choice = scorers.choice(["positive", "negative", "mixed"], target="t").grade
    assert choice("The review is Positive.", {"t": "positive"}, None) is True
    assert choice("Positive, negative or mixed", {"t": "positive"}, None) is False
    assert choice("mixed feelings", {"t": "positive"}, None) is False


def test_field_scorer_compares_a_schema_field(session, fake_api):
    from pydantic import BaseModel

    class Sentiment(BaseModel):
        label: str
        confidence: float

    fake_api.handler = lambda body: Script(text=json.dumps({"label": "Positive", "confidence": 0.9}))
    data = pd.DataFrame({"review": ["good", "bad"], "label": ["positive", "negative"]})
    ev = session.evaluate(
        data, {"s": Variant("{review}", schema=Sentiment)}, scorers=[scorers.field("label")], progress=False
    )
    assert ev.rows["field:label"].tolist() == [1.0, 0.0]
    assert ev.rows["parsed"][0].label == "Positive"


def test_repeats_report_how_often_the_verdict_flips(session, fake_api):
    calls = {"n": 0}

    def flaky(body):
        calls["n"] += 1
        i = int(re.search(r"review (\d+)", _prompt_text(body)).group(1))
        right = i % 2 == 0 or calls["n"] % 2 == 0
        return Script(text=LABELS[i % 3] if right else "nope")

    fake_api.handler = flaky
    ev = session.evaluate(
        labelled(10), {"a": "A: {review}"}, target="label", repeats=4, progress=False, concurrency=1
    )
    assert len(fake_api.chat_requests()) == 40
    summary = ev.summary.iloc[0]
    assert summary["flip_rate"] == pytest.approx(0.5)
    assert 0.5 < summary["exact"] < 1.0
    agreement = ev.agreement().set_index("row")
    assert agreement["repeats"].tolist() == [4] * 10
    assert agreement.loc[0, "agreement"] == 1.0 and not agreement.loc[0, "flipped"]  # even rows: always right
    assert agreement.loc[1, "agreement"] == 0.5 and agreement.loc[1, "flipped"]  # odd: right every other call


def test_dry_run_sends_nothing_and_prices_every_variant(session, classifying):
    estimate = session.evaluate(
        labelled(),
        {"a": "A: {review}", "b": Variant("B: {review}", model="cheap-model", max_tokens=5)},
        target="label",
        dry_run=True,
    )
    assert classifying.chat_requests() == []
    frame = estimate.summary.set_index("variant")
    assert frame.loc["a", "requests"] == 60 and frame.loc["b", "requests"] == 60
    assert frame.loc["b", "completion_tokens"] == 300  # max_tokens: an upper bound per request
    assert frame.loc["b", "cost_usd"] > 0
    assert "nothing sent" in str(estimate)


def test_save_load_and_diff(session, classifying, tmp_path):
    ev = session.evaluate(labelled(30), VARIANTS, target="label", progress=False)
    path = ev.save(tmp_path / "run.json")
    back = EvalResult.load(path)
    pd.testing.assert_frame_equal(back.summary, ev.summary)
    classifying.handler = lambda body: Script(text="mixed")  # a later run where everything says mixed
    later = session.evaluate(labelled(30), VARIANTS, target="label", progress=False)
    diff = later.diff(back).set_index("variant")
    assert diff.loc["a", "before"] == 1.0 and diff.loc["a", "after"] == pytest.approx(1 / 3)
    assert bool(diff.loc["a", "regressed"]) is True
    assert diff.loc["a", "changed_rows"] == [i for i in range(30) if i % 3 != 2]


def test_the_html_summary_escapes_names_and_math(session, fake_api):
    fake_api.handler = lambda body: Script(text="x")
    ev = session.evaluate(
        ["a"],
        {"<img src=x onerror=alert(1)> $\\href{javascript:x}{y}$": "{text}"},
        scorers=[scorers.regex("x")],
        progress=False,
    )
    page = ev._repr_html_()
    assert "<img" not in page and "&lt;img" in page
    assert "$\\href" not in page and "<span>$</span>" in page


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "nope"}, "target='nope' is not a column of the data"),
        ({"target": "label", "scorers": [42]}, "scorers[0] is int, not a scorer"),
        ({"target": "label", "scorers": [scorers.field("label")]}, "field('label') names no field"),
        ({"variants": {"a": "A: {missing}"}, "target": "label"}, "the template uses {missing}"),
        (
            {
                "variants": {"a@test-model": Variant("x {review}", model="m"), "a": "A: {review}"},
                "target": "label",
                "models": ["test-model", "cheap-model"],
            },
            "variant name 'a@test-model' is used twice",
        ),
        ({}, "give target= (the column with the expected answer) or scorers="),
        ({"target": "label", "repeats": 0}, "repeats=0 is invalid"),
    ],
)
def test_bad_input_is_one_line_before_anything_is_sent(session, fake_api, kwargs, message):
    kwargs = {"variants": {"a": "A: {review}"}, **kwargs}
    variants = kwargs.pop("variants")
    with pytest.raises(ParameterError) as caught:
        session.evaluate(labelled(5), variants, progress=False, **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert fake_api.chat_requests() == []


def test_a_variant_is_checked_where_it_is_made():
    with pytest.raises(ParameterError, match=r"^temperature=9 is invalid: expected a number from 0 to 2\.$"):
        Variant("A: {review}", temperature=9)
    with pytest.raises(ParameterError, match="template is empty"):
        Variant("  ")
    with pytest.raises(ParameterError, match="schema= or response_format="):
        Variant("x", schema=dict, response_format={"type": "json_object"})


def test_progress_is_live_per_variant_in_a_terminal(session, classifying, capsys):
    seen = []
    session.evaluate(labelled(9), VARIANTS, target="label", progress=seen.append)
    assert seen and seen[-1].total == 27 and seen[-1].done == 27
    session.evaluate(labelled(9), VARIANTS, target="label", models=["gpt-5-2-chat-latest"], progress=True)
    err = capsys.readouterr().err
    assert err.startswith("estimate, before sending · 27 requests · $0.0")  # priced before anything is sent
    last = err.strip().split("\r")[-1]
    assert last.startswith("evaluating · 27/27")
    assert "a: 9 done · 0 errors · exact 1.000 [" in last and "b: 9 done · 0 errors · exact 0.556 [" in last
    assert "$0.0000 spent" not in last  # priced: the cost so far is counted


def test_the_grid_opens_on_prompt_reply_target_and_scores_with_model_text_sanitized(session, fake_api):
    def reply(body):
        i = int(re.search(r"row (\d+)", _prompt_text(body)).group(1))
        if "B:" in _prompt_text(body) and i == 1:
            return Script(status=500, error={"error": {"message": "boom"}})
        text = "**yes** [x](javascript:alert(1)) <script>alert(2)</script>" if i == 0 else "no"
        return Script(text=text)

    fake_api.handler = reply
    data = pd.DataFrame({"text": ["row 0", "row 1", "row 2"], "want": ["yes", "no", "yes"]})
    ev = session.evaluate(data, {"a": "A: {text}", "b": "B: {text}"}, scorers=[scorers.contains(target="want")],
                          progress=False)  # fmt: skip
    page = ev._repr_html_()
    assert "<strong>yes</strong>" in page and "<script" not in page and "&lt;script&gt;" in page
    assert "href" not in page.lower()  # the javascript: link stays text
    assert "<summary>all rows (3)</summary>" in page
    assert "<summary>errors (1)</summary>" in page
    assert "<summary>disagreements (1)</summary>" in page  # row 1: a answered, b failed
    assert page.count("<details><summary>") >= 6 and "<b>target</b>: yes" in page


def grading(body):
    """The classifier for the variants; as a judge, passes an answer equal to the expected one."""
    prompt = _prompt_text(body)
    if prompt.startswith("You are grading"):
        expected = re.search(r"Expected answer:\n(.*)\n", prompt).group(1)
        given = re.search(r"Answer to grade:\n(.*)\n", prompt).group(1)
        passed = given.strip(" .").lower() == expected
        return Script(text=json.dumps({"passed": passed, "reason": "compared"}))
    return classifier(body)


def test_a_judge_grades_with_its_own_model_its_requests_counted_and_priced_apart(session, fake_api):
    fake_api.handler = grading
    judge = scorers.judge("The answer names the expected sentiment.", model="cheap-model")
    ev = session.evaluate(labelled(12), {"a": "A: {review}", "b": "B: {review}"}, target="label",
                          scorers=[scorers.exact(), judge], progress=False)  # fmt: skip
    assert ev.rows["judge"].tolist() == ev.rows["exact"].tolist()
    sent = fake_api.chat_requests()
    judged = [b for b in sent if b["model"] == "cheap-model"]
    assert len(sent) == 48 and len(judged) == 24
    assert all(b["temperature"] == 0 and b["response_format"]["type"] == "json_schema" for b in judged)
    summary = ev.summary.set_index("variant")
    assert summary.loc["a", "judge"] == 1.0 and summary.loc["b", "judge"] == 0.5
    assert summary.loc["a", "judge_cost_usd"] > 0 and pd.isna(
        summary.loc["a", "cost_usd"]
    )  # test-model: no prices


def test_a_judge_needs_a_model_and_a_rubric():
    with pytest.raises(ParameterError, match="judge\\(\\) needs the grading model"):
        scorers.judge("Is it right?")
    with pytest.raises(ParameterError, match="judge\\(\\) needs a rubric"):
        scorers.judge(" ", model="m")


def test_dry_run_counts_the_judges_requests(session, fake_api):
    judge = scorers.judge("Right sentiment?", model="cheap-model")
    estimate = session.evaluate(labelled(10), {"a": Variant("A: {review}", max_tokens=20)}, target="label",
                                scorers=[scorers.exact(), judge], dry_run=True)  # fmt: skip
    assert fake_api.chat_requests() == []
    frame = estimate.summary.set_index("variant")
    row = frame.loc["a (judge judge)"]
    assert row["requests"] == 10 and row["model"] == "cheap-model" and row["completion_tokens"] == 400
    assert row["prompt_tokens"] > 10 * 20  # the template, the prompt and a 20-token reply each
    assert row["cost_usd"] == pytest.approx(row["prompt_tokens"] * 1e-07 + 400 * 2e-07)


def test_adding_a_variant_with_a_cache_sends_only_the_new_variants_requests(fake_api, tmp_path):
    from oxen_notebook import Session
    from tests.conftest import TEST_KEY

    fake_api.handler = classifier
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, temperature=0,
                cache=tmp_path / "c.sqlite")  # fmt: skip
    s.evaluate(labelled(10), {"a": "A: {review}", "b": "B: {review}"}, target="label", progress=False)
    assert len(fake_api.chat_requests()) == 20
    ev = s.evaluate(labelled(10), VARIANTS, target="label", progress=False)
    sent = [_prompt_text(b) for b in fake_api.chat_requests()[20:]]
    assert len(sent) == 10 and all(p.startswith("C: ") for p in sent)
    assert ev.rows.loc[ev.rows["variant"] != "c", "cached"].all()
    assert ev.summary["exact"].tolist() == [1.0, 0.5, pytest.approx(7 / 10)]


def pair_judge(biased: bool):
    def handler(body):
        prompt = _prompt_text(body)
        if prompt.startswith("You are comparing"):
            first = re.search(r"Answer 1:\n(.*)\n", prompt).group(1)
            better = 1 if biased or "good" in first else 2
            return Script(text=json.dumps({"better": better, "reason": "r"}))
        i = int(re.search(r"row (\d+)", prompt).group(1))
        good = prompt.startswith("G") and i % 4 != 0
        return Script(text=f"{'good' if good else 'meh'} answer {i}")

    return handler


def test_a_pairwise_judge_sees_both_orders_so_a_position_bias_cancels(session, fake_api):
    data = pd.DataFrame({"text": [f"row {i}" for i in range(40)]})
    variants = {"base": "B {text}", "better": "G {text}"}
    fake_api.handler = pair_judge(biased=False)
    ev = session.evaluate(data, variants, scorers=[scorers.pairwise("More helpful?", model="cheap-model")],
                          progress=False)  # fmt: skip
    judged = [b for b in fake_api.chat_requests() if b["model"] == "cheap-model"]
    assert len(judged) == 80  # 40 rows, both orders
    rows = ev.rows[ev.rows["variant"] == "better"].set_index("row")["pairwise"]
    assert rows.tolist() == [0.5 if i % 4 == 0 else 1.0 for i in range(40)]  # meh vs meh: no preference
    comparison = ev.compare("base", "better", scorer="pairwise")
    assert comparison.wins == 30 and comparison.losses == 0 and comparison.p_value < 0.001
    fake_api.handler = pair_judge(biased=True)  # a judge that always prefers the first answer shown
    biased = session.evaluate(data, variants, scorers=[scorers.pairwise("More helpful?", model="cheap-model")],
                              progress=False)  # fmt: skip
    assert biased.rows["pairwise"].tolist() == [0.5] * 80
    assert biased.compare("base", "better", scorer="pairwise").p_value == 1.0


def test_a_pairwise_judge_needs_two_variants_and_a_known_baseline(session, fake_api):
    with pytest.raises(ParameterError, match="compares variants: give at least two"):
        session.evaluate(["x"], {"a": "{text}"}, scorers=[scorers.pairwise("r", model="m")], progress=False)
    with pytest.raises(ParameterError, match=r"pairwise\(baseline='zz'\) names no variant; variants: a, b"):
        session.evaluate(["x"], {"a": "{text}", "b": "{text}!"},
                         scorers=[scorers.pairwise("r", model="m", baseline="zz")], progress=False)  # fmt: skip
    assert fake_api.chat_requests() == []


def test_a_budget_over_every_variant_stops_starting_requests_and_says_which_are_complete(session, fake_api):
    fake_api.handler = classifier
    variants = {"big": Variant("A: {review}", max_tokens=5),
                "cheap": Variant("B: {review}", model="cheap-model", max_tokens=5)}  # fmt: skip
    full = session.evaluate(labelled(30), variants, target="label", models=["gpt-5-2-chat-latest"],
                            progress=False)  # fmt: skip
    total = float(full.summary["cost_usd"].sum())
    fake_api.reset()
    fake_api.handler = classifier
    fake_api.api_key = "test-key"
    limit = total / 2
    ev = session.evaluate(labelled(30), variants, target="label", models=["gpt-5-2-chat-latest"],
                          max_cost_usd=limit, progress=False)  # fmt: skip
    spent = float(ev.summary["cost_usd"].sum())
    assert 0 < spent <= limit
    sent = fake_api.chat_requests()
    assert 0 < len(sent) < 60
    # interleaved: both variants got about as many rows before the budget stopped them
    counts = ev.summary.set_index("variant")["n"]
    assert abs(counts["big"] - counts["cheap"]) <= 1
    assert not ev.summary["complete"].any()
    assert "not sent: the budget of" in ev.rows["error"].dropna().iloc[0]
    assert f"budget ${limit:,.2f}: ${spent:,.4f} spent; complete: none" in str(ev)


def test_a_budget_refuses_a_variant_it_cannot_price(session, fake_api):
    with pytest.raises(ParameterError, match="variant 'a': test-model has no published prices"):
        session.evaluate(labelled(3), {"a": "A: {review}"}, target="label", max_cost_usd=1.0, progress=False)
    assert fake_api.chat_requests() == []
