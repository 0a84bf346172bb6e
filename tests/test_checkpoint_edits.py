"""A checkpointed map resumed over edited data, over damaged parts, and after a SIGKILL before its
first part: against the loopback fake API, counting what is sent. Every reply must be the echo of
its own row's prompt, and a finished row is never paid for twice."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oxen_notebook import Session
from tests.conftest import TEST_KEY
from tests.fake_api import Script, _prompt_text
from tests.test_checkpoint import make_session, parts, sent

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "Say {text}"


def _data(kind: str, texts: list[str], tmp_path: Path):
    """The same rows as a list of strings, a DataFrame (with an index of its own), or a Parquet file."""
    if kind == "strings":
        return list(texts)
    frame = pd.DataFrame({"text": texts, "n": [len(t) for t in texts]}, index=[f"id-{t}" for t in texts])
    if kind == "frame":
        return frame
    path = tmp_path / f"data-{random.random()}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=64)
    return path


def _run(s: Session, kind: str, texts: list[str], folder: Path, tmp_path: Path, **kwargs) -> pd.DataFrame:
    return s.map(_data(kind, texts, tmp_path), TEMPLATE, checkpoint=folder, progress=False, **kwargs)


def _assert_own_replies(out: pd.DataFrame, texts: list[str], kind: str) -> None:
    """One row per text, in the data's order, each with the reply to its own prompt."""
    assert list(out["text"]) == texts
    assert list(out["reply"]) == [f"Echo: Say {t}" for t in texts]
    assert out["error"].isna().all()
    if kind == "frame":
        assert list(out.index) == [f"id-{t}" for t in texts] and list(out["n"]) == [len(t) for t in texts]
    if kind == "parquet":
        assert list(out["n"]) == [len(t) for t in texts]


ORIGINAL = [f"row {i}" for i in range(300)]


def _edited() -> list[str]:
    texts = list(ORIGINAL)
    texts[150] = "row 150, edited"
    return texts


def _insert_and_remove() -> list[str]:  # the case: the first 100 rows unchanged
    texts = list(ORIGINAL)
    del texts[120]
    texts.insert(200, "a new row")
    return texts


def _removed() -> list[str]:
    return ORIGINAL[:37] + ORIGINAL[38:]


def _reordered() -> list[str]:
    texts = list(ORIGINAL)
    random.Random(7).shuffle(texts)
    return texts


@pytest.mark.parametrize("kind", ["strings", "frame", "parquet"])
@pytest.mark.parametrize(
    ("edit", "new"),
    [
        (_edited, ["row 150, edited"]),
        (_insert_and_remove, ["a new row"]),
        (_removed, []),
        (_reordered, []),
    ],
    ids=["edit", "insert-and-remove", "remove", "reorder"],
)
def test_a_resume_over_edited_data_sends_exactly_the_changed_rows(fake_api, tmp_path, kind, edit, new):
    s = make_session(fake_api)
    folder = tmp_path / "run"
    _assert_own_replies(_run(s, kind, ORIGINAL, folder, tmp_path, concurrency=16), ORIGINAL, kind)
    before = len(fake_api.chat_requests())

    texts = edit()
    out = _run(s, kind, texts, folder, tmp_path, concurrency=16)

    _assert_own_replies(out, texts, kind)
    assert sorted(_prompt_text(b) for b in fake_api.chat_requests()[before:]) == [f"Say {t}" for t in new]
    assert out.attrs["resumed_rows"] == len(texts) - len(new)
    # And once more: everything is finished now, whatever the order.
    again = _run(s, kind, texts, folder, tmp_path)
    _assert_own_replies(again, texts, kind)
    assert len(fake_api.chat_requests()) == before + len(new)


def test_equal_rows_each_keep_a_reply_of_their_own(fake_api, tmp_path):
    fake_api.handler = lambda body: Script(
        text=f"Echo: {_prompt_text(body)} #{len(fake_api.chat_requests())}"
    )
    s = make_session(fake_api)
    folder = tmp_path / "run"
    first = s.map(["a", "a", "b"], "{text}", checkpoint=folder, concurrency=1, progress=False)
    assert list(first["reply"]) == ["Echo: a #1", "Echo: a #2", "Echo: b #3"]

    out = s.map(["a", "b", "a", "a"], "{text}", checkpoint=folder, concurrency=1, progress=False)
    # The first two a's keep the two replies there were (one moved), the third a is sent.
    assert list(out["reply"]) == ["Echo: a #1", "Echo: b #3", "Echo: a #2", "Echo: a #4"]
    assert out.attrs["resumed_rows"] == 3 and len(fake_api.chat_requests()) == 4


def test_a_failed_row_that_moved_is_retried_once_with_retry_errors(fake_api, tmp_path):
    fake_api.handler = lambda body: (
        Script(status=400, error={"error": {"type": "invalid_params", "title": "Bad", "detail": "no"}})
        if _prompt_text(body) == "x"
        else Script(text=f"Echo: {_prompt_text(body)}")
    )
    s = make_session(fake_api)
    folder = tmp_path / "run"
    out = s.map(["a", "x", "b"], "{text}", checkpoint=folder, progress=False)
    assert pd.isna(out["reply"][1]) and "no" in out["error"][1]
    fake_api.handler = None
    out = s.map(["x", "a", "b"], "{text}", checkpoint=folder, retry_errors=True, progress=False)
    assert list(out["reply"]) == ["Echo: x", "Echo: a", "Echo: b"] and out["error"].isna().all()
    assert sent(fake_api) == {"x": 2, "a": 1, "b": 1}


def _three_parts(s: Session, folder: Path) -> None:
    """300 rows in three parts of 100: the data's first 100 rows, then 200, then all (a row is
    matched by its key, so each run sends only the rows the last one did not have)."""
    for n in (100, 200, 300):
        s.map(ORIGINAL[:n], TEMPLATE, checkpoint=folder, progress=False)
    assert [pq.read_metadata(p).num_rows for p in parts(folder)] == [100, 100, 100]


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(b ^ 0x5A for b in raw[middle : middle + 64])
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_flip, _truncate], ids=["corrupt", "truncated"])
def test_a_damaged_part_is_set_aside_and_only_its_rows_run_again(fake_api, tmp_path, caplog, damage):
    s = make_session(fake_api)
    folder = tmp_path / "run"
    _three_parts(s, folder)
    assert len(fake_api.chat_requests()) == 300
    damaged = parts(folder)[1]
    damage(damaged)

    with caplog.at_level(logging.WARNING, logger="oxen_notebook"):
        out = s.map(ORIGINAL, TEMPLATE, checkpoint=folder, progress=False)

    _assert_own_replies(out, ORIGINAL, "strings")
    again = [_prompt_text(b) for b in fake_api.chat_requests()[300:]]
    assert sorted(again) == sorted(f"Say {t}" for t in ORIGINAL[100:200])  # part 1's rows, no other
    lines = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "rows/part-000001.parquet cannot be read" in lines[0] and "its rows run again" in lines[0]
    assert sorted(p.name for p in (folder / "damaged").iterdir()) == [
        "log-part-000001.parquet",
        "rows-part-000001.parquet",
    ]
    # The batch log of the runs still exports, and the next run sends nothing.
    assert len(s.to_dataframe(batch=True)) == 2 * 300  # the second run's records went with part 1
    assert len(s.map(ORIGINAL, TEMPLATE, checkpoint=folder, progress=False)) == 300
    assert len(fake_api.chat_requests()) == 400


def test_a_damaged_log_part_leaves_the_rows_and_is_said_when_the_log_is_read(fake_api, tmp_path, caplog):
    s = make_session(fake_api)
    folder = tmp_path / "run"
    out = s.map(ORIGINAL[:10], TEMPLATE, checkpoint=folder, progress=False)
    _truncate(folder / "log" / "part-000000.parquet")
    with caplog.at_level(logging.WARNING, logger="oxen_notebook"):
        log = s.to_dataframe(batch=True)
    assert len(log) == 0
    assert any("log/part-000000.parquet cannot be read" in r.getMessage() for r in caplog.records)
    _assert_own_replies(out, ORIGINAL[:10], "strings")


def _on_disk(folder: Path) -> list[str]:
    """The ``text`` of every finished row on disk: in parts, and pending ones."""
    files = [*parts(folder), *sorted((folder / "pending").glob("rows-*.parquet"))]
    found = []
    for path in files:
        with contextlib.suppress(OSError, pa.ArrowException):  # gone while we looked: a part has it
            found += pq.read_table(path, columns=["text"]).column("text").to_pylist()
    return found


@pytest.mark.slow
def test_a_run_killed_before_its_first_part_sends_no_finished_row_again(fake_api, tmp_path):
    # Rows below 300 answer at once; the rest hang, so what finished is known when it is killed.
    fake_api.handler = lambda body: Script(
        text=f"Echo: {_prompt_text(body)}", latency=0 if int(_prompt_text(body).split()[1]) < 300 else 30
    )
    folder = tmp_path / "run"
    code = textwrap.dedent(f"""
        from oxen_notebook import Session
        s = Session(model="test-model", base_url={fake_api.base_url!r}, api_key={TEST_KEY!r}, timeout=60)
        rows = (f"row {{i}}" for i in range(1000))
        s.map(rows, "{{text}}", concurrency=8, checkpoint={str(folder)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        while len(fake_api.chat_requests()) < 308 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(fake_api.chat_requests()) >= 308, "the rows did not reach the server"
        answered = time.monotonic()
        # A part is due 5 s after the run began: kill it well before, as soon as the finished rows
        # are on disk (about a second), or after 3 s.
        while len(_on_disk(folder)) < 300 and time.monotonic() - answered < 3:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert sorted(_on_disk(folder)) == sorted(f"row {i}" for i in range(300))

    fake_api.handler = None
    s = make_session(fake_api)
    out = s.map((f"row {i}" for i in range(1000)), "{text}", concurrency=8, checkpoint=folder, progress=False)

    assert list(out["reply"]) == [f"Echo: row {i}" for i in range(1000)] and out["error"].isna().all()
    assert out.attrs["resumed_rows"] == 300
    counts = sent(fake_api)
    assert [p for p in counts if counts[p] > 1 and int(p.split()[1]) < 300] == []  # none paid twice
    assert {p for p, n in counts.items() if n == 2} == {f"row {i}" for i in range(300, 308)}  # in flight
    assert not list((folder / "pending").iterdir())  # folded into parts


def test_parts_written_before_rows_had_keys_are_matched_by_their_data(fake_api, tmp_path):
    s = make_session(fake_api)
    folder = tmp_path / "run"
    s.map(_data("frame", ORIGINAL, tmp_path), TEMPLATE, checkpoint=folder, progress=False)
    for path in parts(folder):  # as the first format wrote them: no __key__ column
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["__key__"]), path)
    texts = _insert_and_remove()

    out = _run(s, "frame", texts, folder, tmp_path)

    _assert_own_replies(out, texts, "frame")
    assert [_prompt_text(b) for b in fake_api.chat_requests()[300:]] == ["Say a new row"]


def test_pending_files_a_written_part_replaced_are_dropped_not_folded_twice(fake_api, tmp_path):
    s = make_session(fake_api)
    folder = tmp_path / "run"
    s.map(ORIGINAL[:50], TEMPLATE, checkpoint=folder, progress=False)
    # Killed after part 0 went into place and before its pending files were removed:
    for kind, sub in (("rows", "rows"), ("log", "log")):
        (folder / "pending" / f"{kind}-000000-000.parquet").write_bytes(
            (folder / sub / "part-000000.parquet").read_bytes()
        )

    out = s.map(ORIGINAL[:50], TEMPLATE, checkpoint=folder, progress=False)

    _assert_own_replies(out, ORIGINAL[:50], "strings")
    assert len(fake_api.chat_requests()) == 50 and len(parts(folder)) == 1
    assert not list((folder / "pending").iterdir())
