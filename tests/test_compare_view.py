"""``compare``'s live table: a column per variant at once, each filled as its variant ends, the
fastest and cheapest marked (the browser's side, stacking below 700 px, is in test_style_browser)."""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from oxen_notebook import Session
from tests.conftest import TEST_KEY
from tests.fake_api import FakeAPI, Script


def slow_cheap_model(body: dict[str, Any]) -> Script:
    """cheap-model answers a second later than test-model (and costs something)."""
    return Script(text=f"from {body['model']}", latency=1.0 if body["model"] == "cheap-model" else 0.0)


def test_the_columns_show_before_the_slowest_variant_ends(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    fake_api.handler = slow_cheap_model
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    with capture_output() as captured:
        frame = s.compare("hi", models=["test-model", "cheap-model"])
    htmls = [out.data["text/html"].split("</style>")[-1] for out in captured.outputs]
    display_ids = {(out.transient or {}).get("display_id") for out in captured.outputs}
    assert len(display_ids) == 1  # one output, updated in place
    first, *middle, final = htmls
    assert first.count('class="oxen-spinner"') == 2 and "from test-model" not in first
    # test-model's reply shown while cheap-model still runs.
    assert any("from test-model" in h and h.count('class="oxen-spinner"') == 1 for h in middle), middle
    assert "oxen-spinner" not in final and "from cheap-model" in final
    assert final.count('<span class="oxen-badge">fastest</span>') == 1
    fastest = final.index("fastest")
    assert final.index("<td>", final.index("oxen-compare-latency")) < fastest  # in test-model's cell
    assert frame["latency_s"][0] < frame["latency_s"][1]


def test_no_marks_for_a_single_answer(fake_api: FakeAPI) -> None:
    from oxen_notebook._batch._compare import compare_html

    fake_api.handler = lambda body: (
        Script(status=400, error={"error": {"title": "no"}})
        if body["model"] == "cheap-model"
        else Script(text="ok")
    )
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, max_retries=0)
    markup = compare_html(s.compare("hi", models=["test-model", "cheap-model"], show=False))
    assert "oxen-badge" not in markup  # one answer: nothing to be fastest or cheapest against
    assert 'class="oxen-compare-error"' in markup


def test_a_compare_that_cannot_run_leaves_no_spinner(ip: InteractiveShell, fake_api: FakeAPI) -> None:
    import pytest

    from oxen_notebook import ParameterError

    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY)
    with capture_output() as captured, pytest.raises(ParameterError):
        s.compare("hi", models=["test-model"], params=[{"temperature": 99}])
    assert captured.outputs[-1].data["text/html"] == '<div class="oxen-hidden"></div>'
