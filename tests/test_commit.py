"""Session.commit_results on real local Oxen repositories: the commit, the file read back, the message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import oxen
import pandas as pd
import pytest
from pydantic import BaseModel

from oxen_notebook import MissingDependencyError, ParameterError, Session
from oxen_notebook._batch._commit import read_commit_metadata, template_sha256
from tests.conftest import TEST_KEY
from tests.fake_api import Script, _prompt_text

TEMPLATE = "Classify the sentiment of: {review}"
REVIEWS = ["great", "awful", "fine", "BAD REQUEST", "lovely"]


@pytest.fixture(autouse=True)
def _no_git_identity(monkeypatch, tmp_path_factory):
    """git's identity is what a fresh Oxen config borrows: none here unless a test writes one."""
    gitconfig = tmp_path_factory.mktemp("git") / "gitconfig"
    gitconfig.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return gitconfig


def _session(fake_api) -> Session:
    return Session(model="gpt-5-2-chat-latest", base_url=fake_api.base_url, api_key=TEST_KEY, timeout=10.0,
                   temperature=0)  # fmt: skip


def _classify(fake_api, reviews=REVIEWS, template=TEMPLATE) -> tuple[Session, pd.DataFrame]:
    def handler(body):
        prompt = _prompt_text(body)
        if "BAD REQUEST" in prompt:
            return Script(
                status=400, error={"error": {"type": "invalid_params", "title": "Bad", "detail": "no"}}
            )
        return Script(text="positive" if "great" in prompt or "lovely" in prompt else "negative")

    fake_api.handler = handler
    s = _session(fake_api)
    out = s.map(pd.DataFrame({"review": reviews}), template, progress=False, max_tokens=5)
    return s, out


def _user_config() -> Path:
    return Path(oxen.util.get_oxen_config_dir()) / "user_config.toml"


def test_a_map_result_is_committed_read_back_and_described(fake_api, tmp_path):
    s, out = _classify(fake_api)
    repo = tmp_path / "data-repo"
    assert not repo.exists()

    commit_id = s.commit_results(out, repo=repo, path="labels/classify.parquet")

    log = oxen.Repo(str(repo)).log()
    assert [c.id for c in log] == [commit_id]
    back = pd.read_parquet(repo / "labels" / "classify.parquet")
    pd.testing.assert_frame_equal(back, out)
    assert back["error"].notna().tolist() == [False, False, False, True, False]

    cost = float(out["cost_usd"].sum())
    assert cost > 0
    message = log[0].message
    first, blank, last = message.split("\n")
    digest = template_sha256(TEMPLATE)
    assert digest == __import__("hashlib").sha256(TEMPLATE.encode()).hexdigest()[:12]
    assert (
        first
        == f"labels/classify.parquet: 5 rows, 1 error, ${cost:.4f}, gpt-5-2-chat-latest, template {digest}"
    )
    assert blank == ""
    assert last.startswith("oxen_notebook: {")
    metadata = read_commit_metadata(message)
    assert metadata == json.loads(last.removeprefix("oxen_notebook: "))
    assert metadata == {
        "path": "labels/classify.parquet",
        "rows": 5,
        "errors": 1,
        "cost_usd": pytest.approx(cost),
        "prompt_tokens": int(out["prompt_tokens"].sum()),
        "completion_tokens": 4,
        "models": ["gpt-5-2-chat-latest"],
        "params": {"temperature": 0, "max_tokens": 5},  # the session's defaults and the call's
        "template_sha256": digest,
        "batch_id": out.attrs["batch_id"],
        "json_columns": [],
        "oxen_notebook": "0.1.0",
    }
    # No Oxen identity and no git identity: the placeholder, written once, for this and later commits.
    assert (log[0].author, log[0].email) == ("oxen-notebook", "oxen-notebook@localhost")
    assert 'name = "oxen-notebook"' in _user_config().read_text()


def test_committing_twice_makes_two_commits_and_an_unchanged_frame_is_one_line(fake_api, tmp_path):
    s, first = _classify(fake_api)
    repo = tmp_path / "data-repo"
    one = s.commit_results(first, repo=repo, path="labels/classify.parquet")
    _, second = _classify(fake_api, reviews=["great", "awful"], template="Sentiment of {review}, one word")
    two = s.commit_results(
        second, repo=str(repo), path="labels/classify.parquet", message="Two rows, new prompt"
    )

    log = oxen.Repo(str(repo)).log()
    assert [c.id for c in log] == [two, one]
    assert log[0].message.split("\n")[0] == "Two rows, new prompt"
    metadata = read_commit_metadata(log[0].message)
    assert (metadata["rows"], metadata["errors"], metadata["template_sha256"]) == (
        2, 0, template_sha256("Sentiment of {review}, one word"),
    )  # fmt: skip
    assert read_commit_metadata(log[1].message)["rows"] == 5
    pd.testing.assert_frame_equal(pd.read_parquet(repo / "labels" / "classify.parquet"), second)

    with pytest.raises(ParameterError) as caught:
        s.commit_results(second, repo=repo, path="labels/classify.parquet")
    assert str(caught.value) == (
        "nothing to commit: labels/classify.parquet in data-repo is the same as in the last commit."
    )
    assert len(oxen.Repo(str(repo)).log()) == 2


def test_an_identity_already_configured_is_kept(fake_api, tmp_path):
    oxen.user.config_user("Ada Lovelace", "ada@example.com")
    before = _user_config().read_bytes()
    s, out = _classify(fake_api)
    s.commit_results(out, repo=tmp_path / "r")
    commit = oxen.Repo(str(tmp_path / "r")).log()[0]
    assert (commit.author, commit.email) == ("Ada Lovelace", "ada@example.com")
    assert _user_config().read_bytes() == before


def test_without_an_oxen_identity_gits_is_used(fake_api, tmp_path, _no_git_identity):
    _no_git_identity.write_text("[user]\n\tname = Grace Hopper\n\temail = grace@example.com\n")
    s, out = _classify(fake_api)
    s.commit_results(out, repo=tmp_path / "r")
    commit = oxen.Repo(str(tmp_path / "r")).log()[0]
    assert (commit.author, commit.email) == ("Grace Hopper", "grace@example.com")


class Sentiment(BaseModel):
    label: str
    score: float


def test_structured_columns_are_stored_as_json(fake_api, tmp_path):
    fake_api.handler = lambda body: Script(text='{"label": "positive", "score": 0.9}')
    s = _session(fake_api)
    data = pd.DataFrame({"review": ["great", "fine"], "tags": [["a", "b"], []], "meta": [{"id": 1}, None]})
    out = s.map(data, TEMPLATE, schema=Sentiment, progress=False)
    s.commit_results(out, repo=tmp_path / "r", path="typed.parquet")

    back = pd.read_parquet(tmp_path / "r" / "typed.parquet")
    assert back["parsed"].tolist() == ['{"label": "positive", "score": 0.9}'] * 2
    assert back["tags"].tolist() == ['["a", "b"]', "[]"]
    assert back["meta"][0] == '{"id": 1}' and pd.isna(back["meta"][1])
    restored = back.copy()
    for name in ("tags", "meta", "parsed"):
        restored[name] = back[name].map(lambda v: None if pd.isna(v) else json.loads(v))
    expected = out.copy()
    expected["parsed"] = out["parsed"].map(lambda v: v.model_dump())
    pd.testing.assert_frame_equal(restored, expected)
    metadata = read_commit_metadata(oxen.Repo(str(tmp_path / "r")).log()[0].message)
    assert metadata["json_columns"] == ["tags", "meta", "parsed"]


def test_a_frame_without_run_attrs_commits_with_its_fields_unknown(tmp_path):
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 0, 1]})
    commit_id = Session(model="local").commit_results(frame, repo=tmp_path / "r", path="plain.parquet")
    commit = oxen.Repo(str(tmp_path / "r")).log()[0]
    assert commit.id == commit_id
    assert commit.message.split("\n")[0] == "plain.parquet: 3 rows"
    metadata = read_commit_metadata(commit.message)
    assert {k: metadata[k] for k in ("rows", "errors", "cost_usd", "models", "params", "template_sha256")} == {
        "rows": 3, "errors": None, "cost_usd": None, "models": None, "params": None, "template_sha256": None,
    }  # fmt: skip


def test_a_compare_result_names_its_models(fake_api, tmp_path):
    s = _session(fake_api)
    cmp = s.compare("Hello {name}", models=["gpt-5-2-chat-latest", "cheap-model"], show=False, name="Ada")
    s.commit_results(cmp, repo=tmp_path / "r", path="compare.parquet")
    metadata = read_commit_metadata(oxen.Repo(str(tmp_path / "r")).log()[0].message)
    assert metadata["models"] == ["cheap-model", "gpt-5-2-chat-latest"]
    assert (metadata["rows"], metadata["errors"]) == (2, 0)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            "../outside.parquet",
            "path='../outside.parquet' is outside the repository r: give a path inside it.",
        ),
        (
            "labels/../../x.parquet",
            "path='labels/../../x.parquet' is outside the repository r: give a path inside it.",
        ),
        ("/tmp/x.parquet", "path='/tmp/x.parquet' is outside the repository r: give a path inside it."),
        (
            ".oxen/x.parquet",
            "path='.oxen/x.parquet' is inside .oxen, Oxen's own folder: choose another path.",
        ),
        ("labels/x.csv", "path='labels/x.csv' should end in .parquet: the frame is written as Parquet."),
    ],
)
def test_a_path_outside_the_repository_is_one_line(tmp_path, path, error):
    with pytest.raises(ParameterError) as caught:
        Session(model="local").commit_results(pd.DataFrame({"a": [1]}), repo=tmp_path / "r", path=path)
    assert str(caught.value) == error
    assert not (tmp_path / "r").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (
            pd.DataFrame({"a": [1, 2], "blob": [object(), None]}),
            "column 'blob' holds object values, which Parquet cannot store: convert it, "
            "e.g. frame['blob'].astype(str), or drop it.",
        ),
        (
            pd.DataFrame({"a": [1], "sets": [[{1, 2}]]}),
            "column 'sets' holds values Parquet cannot store and JSON cannot encode (set is not JSON "
            "serializable): convert it, e.g. frame['sets'].astype(str), or drop it.",
        ),
        (pd.DataFrame({0: [1]}), "column name 0 is not a string, which Parquet needs: rename it."),
    ],
)
def test_a_column_parquet_cannot_store_is_one_line(tmp_path, frame, error):
    with pytest.raises(ParameterError) as caught:
        Session(model="local").commit_results(frame, repo=tmp_path / "r", path="x.parquet")
    assert str(caught.value) == error
    assert not (tmp_path / "r").exists()


def test_without_oxenai_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "oxen", None)  # import oxen raises ImportError
    with pytest.raises(MissingDependencyError) as caught:
        Session(model="local").commit_results(pd.DataFrame({"a": [1]}), repo=tmp_path / "r")
    assert str(caught.value) == 'commit_results needs the oxenai package: pip install "oxen-notebook[oxen]".'


def test_a_dask_or_other_frame_is_refused_in_one_line(tmp_path):
    with pytest.raises(ParameterError) as caught:
        Session(model="local").commit_results([{"a": 1}], repo=tmp_path / "r")
    assert str(caught.value) == (
        "commit_results takes a pandas DataFrame, not list (a Dask DataFrame: .compute() it first)."
    )


SECRET = "tok-5f3a9c0e-never-stored"


@pytest.mark.parametrize("checkpoint", [False, True], ids=["in-memory", "checkpoint"])
def test_a_header_value_is_sent_and_never_written_anywhere(fake_api, tmp_path, checkpoint):
    s = Session(
        model="gpt-5-2-chat-latest",
        base_url=fake_api.base_url,
        api_key=TEST_KEY,
        journal=tmp_path / "chat.jsonl",
        extra_headers={"X-Org": SECRET + "-org"},
    )
    s.ask("hello")  # the session's default header goes with a chat turn too
    where = {"checkpoint": tmp_path / "run"} if checkpoint else {}
    data = pd.DataFrame({"review": ["great", "awful"]})
    out = s.map(data, TEMPLATE, extra_headers={"X-Token": SECRET}, progress=False, **where)
    chats = [r for r in fake_api.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) == 3 and chats[0]["headers"].get("X-Org") == SECRET + "-org"
    assert all(r["headers"].get("X-Token") == SECRET for r in chats[1:])

    # The run records the header's name, not its value: in attrs, the files they go to, the commit.
    assert out.attrs["oxen_notebook"]["params"]["extra_headers"] == ["X-Token"]
    assert SECRET not in repr(out.attrs)
    out.to_parquet(tmp_path / "mine.parquet")
    out.to_pickle(tmp_path / "mine.pickle")
    s.commit_results(out, repo=tmp_path / "repo", path="labels/classify.parquet")
    message = oxen.Repo(str(tmp_path / "repo")).log()[0].message
    assert SECRET not in message
    assert read_commit_metadata(message)["params"]["extra_headers"] == ["X-Token"]
    s.to_dataframe(batch=True).to_csv(tmp_path / "batch-log.csv")
    s.to_dataframe().to_csv(tmp_path / "history.csv")
    s.save(tmp_path / "saved.json")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert tmp_path / "repo" / "labels" / "classify.parquet" in files
    if checkpoint:
        assert tmp_path / "run" / "manifest.json" in files
        assert "X-Token" in (tmp_path / "run" / "manifest.json").read_text()
    holding = [p.relative_to(tmp_path).as_posix() for p in files if SECRET.encode() in p.read_bytes()]
    assert holding == []
