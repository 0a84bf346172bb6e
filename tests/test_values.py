"""Values in prompts: ``render_value`` and ``fill`` (``oxen_notebook._values``), exact texts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from oxen_notebook import ParameterError, Session
from oxen_notebook._batch._templates import fill as fill_row
from oxen_notebook._magics import OxenCellError, interpolate
from oxen_notebook._values import fill, render_value
from tests.conftest import TEST_KEY
from tests.fake_api import _prompt_text


@pytest.fixture
def cities() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "city": ["Oslo", "Lima|Peru", "New\nYork", None, "Rome", "Pune"],
            "temp": [1.5, np.nan, 20.25, 3.0, np.nan, 30.0],
            "n": [1, 2, 3, 4, 5, 6],
        }
    )


# -- DataFrame ----------------------------------------------------------------------------------


def test_a_small_frame_is_its_shape_columns_and_rows(cities):
    assert render_value(cities) == (
        "DataFrame: 6 rows × 3 columns\n"
        "Columns:\n"
        "- city (str, 1 missing)\n"
        "- temp (float64, 2 missing)\n"
        "- n (int64)\n"
        "| city | temp | n |\n"
        "|---|---|---|\n"
        "| Oslo | 1.5 | 1 |\n"
        "| Lima\\|Peru | NaN | 2 |\n"
        "| New\\nYork | 20.25 | 3 |\n"
        "| NaN | 3.0 | 4 |\n"
        "| Rome | NaN | 5 |\n"
        "| Pune | 30.0 | 6 |"
    )


def test_head_and_tail_with_the_rows_left_out_between(cities):
    assert render_value(cities, rows=4) == (
        "DataFrame: 6 rows × 3 columns\n"
        "Columns:\n"
        "- city (str, 1 missing)\n"
        "- temp (float64, 2 missing)\n"
        "- n (int64)\n"
        "| city | temp | n |\n"
        "|---|---|---|\n"
        "| Oslo | 1.5 | 1 |\n"
        "| Lima\\|Peru | NaN | 2 |\n"
        "| … 2 rows not shown … | | |\n"
        "| Rome | NaN | 5 |\n"
        "| Pune | 30.0 | 6 |"
    )
    # an odd count: one more row from the head
    assert render_value(cities, rows=3).splitlines()[-4:] == [
        "| Oslo | 1.5 | 1 |",
        "| Lima\\|Peru | NaN | 2 |",
        "| … 3 rows not shown … | | |",
        "| Pune | 30.0 | 6 |",
    ]


def test_the_index_is_shown_only_when_it_is_not_the_default(cities):
    text = render_value(cities.set_index("city").iloc[:2])
    assert text == (
        "DataFrame: 2 rows × 2 columns\n"
        "Index: city (str)\n"
        "Columns:\n"
        "- temp (float64, 1 missing)\n"
        "- n (int64)\n"
        "| city | temp | n |\n"
        "|---|---|---|\n"
        "| Oslo | 1.5 | 1 |\n"
        "| Lima\\|Peru | NaN | 2 |"
    )
    # a slice keeps its labels (a RangeIndex that does not start at 0): they are shown
    lines = render_value(cities.iloc[4:]).splitlines()
    assert [lines[1], *lines[-4:]] == [
        "Index: (unnamed) (int64)",
        "| (index) | city | temp | n |",
        "|---|---|---|---|",
        "| 4 | Rome | NaN | 5 |",
        "| 5 | Pune | 30.0 | 6 |",
    ]


def test_long_cells_are_cut_and_the_spec_sets_the_row_count():
    frame = pd.DataFrame({"text": ["x" * 100] * 30, "k": range(30)})
    five = render_value(frame, "5").splitlines()
    assert five[4:7] == ["| text | k |", "|---|---|", "| " + "x" * 59 + "… | 0 |"]
    assert five[9:] == ["| … 25 rows not shown … | |", *[f"| {'x' * 59}… | {k} |" for k in (28, 29)]]
    assert len(five) == 12
    whole = render_value(frame, "all").splitlines()
    assert len(whole) == 6 + 30 and not any("not shown" in line for line in whole)
    assert len(render_value(frame, "all")) > 2000 and len(render_value(frame, chars=1000)) <= 1000
    # {df:50} asks for 50 rows: the character budget gives way (30 rows of 68 characters > 1,000)
    assert render_value(frame, "50", chars=1000) == render_value(frame, "all")


def test_a_wide_frame_names_every_column_and_says_which_rows_leave_out():
    frame = pd.DataFrame({f"c{i}": [i] for i in range(30)})
    lines = render_value(frame).splitlines()
    assert lines[2:32] == [f"- c{i} (int64)" for i in range(30)]
    assert lines[32] == "The rows show the first 20 of 30 columns (10 left out)."
    assert lines[33] == "| " + " | ".join(f"c{i}" for i in range(20)) + " |"
    assert lines[35] == "| " + " | ".join(str(i) for i in range(20)) + " |"
    assert len(lines) == 36


def test_over_the_budget_the_column_list_then_the_inner_rows_give_way():
    frame = pd.DataFrame({f"column_{i}": ["some words " * 10] * 50 for i in range(300)})
    text = render_value(frame, chars=4000)
    assert len(text) <= 4000
    lines = text.splitlines()
    assert lines[0] == "DataFrame: 50 rows × 300 columns"
    more = next(line for line in lines if line.startswith("- … "))
    listed = sum(1 for line in lines if line.startswith("- column_"))
    assert more == f"- … {300 - listed:,} more columns" and listed > 10
    marker = next(line for line in lines if "rows not shown" in line)
    shown = sum(1 for line in lines if line.startswith("| some words"))
    assert marker.startswith(f"| … {50 - shown} rows not shown … |") and shown >= 2


_FORMATTERS = {
    pd.DataFrame: ["to_string", "__repr__", "to_markdown", "to_html", "to_dict", "itertuples", "iterrows",
                   "to_records", "astype", "map", "apply"],
    pd.Series: ["to_string", "__repr__", "tolist", "to_list", "to_dict", "__iter__", "astype", "map", "apply"],
}  # fmt: skip


@pytest.fixture
def formats_at_most_20_rows(monkeypatch):
    """pandas' formatting and Python-level iteration refuse frames and Series over 20 rows."""

    def guard(original):
        def guarded(self, *args, **kwargs):
            if len(self) > 20:
                raise AssertionError(f"{type(self).__name__}.{original.__name__} over {len(self):,} rows")
            return original(self, *args, **kwargs)

        return guarded

    for cls, names in _FORMATTERS.items():
        for name in names:
            monkeypatch.setattr(cls, name, guard(getattr(cls, name)))


def test_a_million_rows_cost_their_head_and_tail(formats_at_most_20_rows):
    n = 1_000_000
    rng = np.random.default_rng(0)
    x = rng.random(n)
    x[::100] = np.nan
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "x": x,
            "label": pd.array(np.where(np.arange(n) % 1000 == 0, None, "abc"), dtype="str"),
            "when": pd.date_range("2024-01-01", periods=n, freq="min"),
            "kind": pd.Categorical(np.array(["a", "b"])[np.arange(n) % 2]),
            "any": pd.Series(np.arange(n), dtype=object),
        }
    )
    with pytest.raises(AssertionError, match="over 1,000,000 rows"):
        frame.to_string()  # the guard is on
    text = render_value(frame)
    assert len(text) <= 4000
    lines = text.splitlines()
    assert lines[:8] == [
        "DataFrame: 1,000,000 rows × 6 columns",
        "Columns:",
        "- id (int64)",
        "- x (float64, 10,000 missing)",
        "- label (str, 1,000 missing)",
        "- when (datetime64[us])",
        "- kind (category)",
        "- any (object)",
    ]
    assert "| … 999,980 rows not shown … | | | | | |" in lines
    assert lines[-1].startswith("| 999999 | ") and lines[-1].endswith(" | 2025-11-25 10:39:00 | b | 999999 |")
    assert sum(1 for line in lines if line.startswith("| ") and "not shown" not in line) == 21  # + header
    series = render_value(frame["x"])
    assert series.splitlines()[0] == "Series x: 1,000,000 values, float64, 10,000 missing"
    assert "| … 999,980 values not shown … |" in series


# -- Series, arrays, collections, strings, scalars -----------------------------------------------


def test_a_series_is_its_name_length_dtype_missing_count_and_values():
    series = pd.Series([1.5, None, 3.0, 4.0, 5.0], name="temp")
    assert render_value(series, rows=2) == (
        "Series temp: 5 values, float64, 1 missing\n"
        "| temp |\n"
        "|---|\n"
        "| 1.5 |\n"
        "| … 3 values not shown … |\n"
        "| 5.0 |"
    )
    labelled = pd.Series([1, 2], index=["a", "b"])
    assert (
        render_value(labelled)
        == "Series: 2 values, int64\n| (index) | value |\n|---|---|\n| a | 1 |\n| b | 2 |"
    )


def test_an_array_is_its_shape_dtype_and_a_summarized_print():
    assert render_value(np.arange(12.0).reshape(3, 4)) == (
        "ndarray: shape 3 × 4, float64\n[[ 0.  1.  2.  3.]\n [ 4.  5.  6.  7.]\n [ 8.  9. 10. 11.]]"
    )
    assert render_value(np.arange(100), rows=6) == "ndarray: shape 100, int64\n[ 0  1  2 ... 97 98 99]"
    big = render_value(np.arange(10_000_000).reshape(-1, 10))
    assert big.startswith("ndarray: shape 1,000,000 × 10, int64\n[[      0       1 ") and len(big) < 2000
    assert "..." in render_value(np.arange(100), "10") and "..." not in render_value(np.arange(100), "all")


def test_collections_are_compact_json_with_the_items_left_out_counted():
    assert render_value(list(range(30)), rows=5) == "[0, 1, 2, 3, 4, … 25 more items]"
    assert (
        render_value({"a": [1, 2, 3], "b": {"c": "x"}}, rows=2)
        == '{"a": [1, 2, … 1 more item], "b": {"c": "x"}}'
    )
    assert render_value((1, "two", None, 2.5, np.int64(7))) == '[1, "two", null, 2.5, 7]'
    people = [{"name": n, "age": a} for n, a in (("Ann", 31), ("Bob", 42), ("Cyd", 53), ("Dee", 64))]
    assert render_value(people) == (
        '[\n {"name": "Ann", "age": 31},\n {"name": "Bob", "age": 42},\n'
        ' {"name": "Cyd", "age": 53},\n {"name": "Dee", "age": 64}\n]'
    )  # over 100 characters: one item a line
    assert json.loads(render_value(people, "all")) == people


def test_a_huge_list_is_sliced_before_it_is_written():
    class Counting(list):
        seen = 0

        def __iter__(self):
            for item in super().__iter__():
                Counting.seen += 1
                yield item

    items = Counting(range(1_000_000))
    text = render_value(items)
    assert text == "[" + ", ".join(str(i) for i in range(20)) + ", … 999,980 more items]"
    assert Counting.seen <= 21
    # and the character budget stops the items before it: whole items, then the count of the rest
    text = render_value(["word " * 100] * 50, chars=1200)
    assert len(text) <= 1200 and text.endswith(" … 48 more items\n]") and text.count('"word') == 2


def test_a_long_string_is_cut_with_the_exact_marker():
    assert render_value("y" * 5000) == "y" * 3955 + " … [cut: 1,045 of 5,000 characters not shown]"
    assert len(render_value("y" * 5000)) == 4000
    lines = "\n".join(f"line {i}" for i in range(100))
    assert render_value(lines, chars=100) == "\n".join(f"line {i}" for i in range(8)) + (
        "\n… [cut: 734 of 789 characters not shown]"
    )  # at a line's end when one is near
    assert render_value("y" * 5000, "all") == "y" * 5000
    assert render_value("short") == "short"
    assert render_value("y" * 5000, chars=None) == "y" * 5000


def test_scalars_keep_pythons_format_spec():
    assert render_value(3.14159, ".2f") == "3.14"
    assert render_value(1234567, ",") == "1,234,567"
    assert render_value("abc", ">5") == "  abc"
    assert render_value(None) == "None"
    assert render_value(np.float64(2.5), ".1%") == "250.0%"
    assert fill("{price:.2f} {n:03d}", {"price": 9.999, "n": 7}) == "10.00 007"


def test_a_spec_that_cannot_apply_to_a_frame_or_collection_says_what_to_write(cities):
    message = (
        "{df:.2f}: a DataFrame takes a row count or all, not '.2f': write {df}, {df:50} for 50 rows, "
        "or {df:all} for all of it."
    )
    for strict in (False, True):
        with pytest.raises(ParameterError) as caught:
            fill("Look: {df:.2f}", {"df": cities}, strict=strict)
        assert str(caught.value) == message
    with pytest.raises(ParameterError, match=r"^\{xs:>9\}: a collection takes a row count or all"):
        fill("{xs:>9}", {"xs": [1, 2]})
    with pytest.raises(ParameterError, match=r"^\{value:-1\}: a Series takes"):
        render_value(cities["n"], "-1")
    with pytest.raises(ParameterError, match=r"rows=-1 is invalid"):
        render_value(1, rows=-1)


# -- fill ---------------------------------------------------------------------------------------


def test_lenient_fill_keeps_what_does_not_resolve():
    ns = {"In": ["", "x = 1", "df.head()", "print(df)"], "d": {"k": [1, 2]}, "obj": SimpleNamespace(a="A")}
    text = "{In[3]} {d[k]} {obj.a} {missing} {obj.nope} {In[9]} {{lit}} {0} {} {obj.a.upper()}"
    assert fill(text, ns) == "print(df) [1, 2] A {missing} {obj.nope} {In[9]} {lit} {0} {} {obj.a.upper()}"
    assert fill('JSON: {"a": 1} and { unbalanced', ns) == 'JSON: {"a": 1} and { unbalanced'
    assert fill("{obj.a!r} {d!s:.3}", ns) == "'A' {'k"
    assert interpolate("{In[3]} {missing}", ns) == "print(df) {missing}"
    assert fill("{1} {0}, {} {}", {}, positional=["p", "q"]) == "q p, p q"


def test_strict_fill_raises_for_what_does_not_resolve():
    with pytest.raises(ParameterError, match=r"^the template's \{missing\} could not be filled: KeyError"):
        fill("{missing}", {}, strict=True)
    with pytest.raises(ParameterError, match=r"^the template's \{d\[nope\]\} could not be filled"):
        fill("{d[nope]}", {"d": {}}, strict=True)
    with pytest.raises(ParameterError, match="not a valid format string"):
        fill("{ unbalanced", {}, strict=True)
    with pytest.raises(ParameterError, match=r"^the template's \{s:\.2f\} could not be formatted"):
        fill("{s:.2f}", {"s": "text"}, strict=True)
    assert (
        fill("P: {} {{x}} {w:>{width}}", {"w": "a", "width": 3}, positional=["t"], strict=True)
        == "P: t {x}   a"
    )


def test_the_batch_fill_delegates_with_the_sessions_limits(cities):
    row = {"text": "t" * 50, "frame": cities, 3: "int key"}
    assert fill_row("{text}", row, False, chars=45) == "t" * 6 + " … [cut: 44 of 50 characters not shown]"
    assert fill_row("{text:all}", row, False, chars=45) == "t" * 50
    assert fill_row("{}", row, True, chars=None) == "t" * 50
    assert fill_row("{text:.3}", row, False) == "ttt"  # a row with a non-string column name too
    assert fill_row("{frame}", row, False, rows=2).splitlines()[-2] == "| … 4 rows not shown … | | |"
    with pytest.raises(ParameterError):
        fill_row("{nope}", row, False)


def test_interpolate_renders_frames_compactly_and_fails_a_bad_spec_in_one_line(cities):
    text = interpolate("Data:\n{df:2}\nEnd {df.shape[0]}", {"df": cities}, chars=None)
    assert text.splitlines()[1] == "DataFrame: 6 rows × 3 columns"
    assert "| … 4 rows not shown … | | |" in text and text.endswith("\nEnd 6")
    assert len(interpolate("{df}", {"df": cities}, rows=1, chars=200)) <= 200
    with pytest.raises(OxenCellError) as caught:
        interpolate("{df:x}", {"df": cities})
    assert caught.value.name == "ParameterError" and str(caught.value).startswith("{df:x}: a DataFrame takes")


def test_map_and_compare_fill_within_the_sessions_context_limits(fake_api, cities):
    s = Session(model="test-model", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0)
    s.context_rows, s.context_chars = 2, 60
    out = s.map(["y" * 100, "short"], "{text}", progress=False)
    expected = ["y" * 19 + " … [cut: 81 of 100 characters not shown]", "short"]
    # The two rows are sent at once: they may reach the server in either order.
    assert sorted(_prompt_text(body) for body in fake_api.chat_requests()) == sorted(expected)
    assert list(out["reply"]) == [f"Echo: {p}" for p in expected]
    s.map(["y" * 100], "{text:all}", progress=False)
    assert _prompt_text(fake_api.chat_requests()[-1]) == "y" * 100

    s.context_chars = None
    s.compare("Rows: {df}", models=["test-model"], show=False, df=cities)
    assert _prompt_text(fake_api.chat_requests()[-1]) == "Rows: " + render_value(cities, rows=2, chars=None)
    assert "| … 4 rows not shown … | | |" in _prompt_text(fake_api.chat_requests()[-1])
