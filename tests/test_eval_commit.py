"""An evaluation committed to a real local Oxen repository and read back."""

from __future__ import annotations

import json

import oxen
import pandas as pd
import pytest

from oxen_notebook import EvalResult, ParameterError
from oxen_notebook._batch import read_commit_metadata
from tests.test_commit import _no_git_identity  # noqa: F401 (autouse: no borrowed identity)
from tests.test_evaluate import VARIANTS, classifier, labelled


def test_commit_writes_rows_summary_and_settings_and_load_reads_the_folder_back(session, fake_api, tmp_path):
    fake_api.handler = classifier
    ev = session.evaluate(
        labelled(30), VARIANTS, target="label", models=["gpt-5-2-chat-latest"], progress=False
    )
    repo = tmp_path / "data-repo"
    commit_id = ev.commit(repo=repo, path="evals/sentiment")
    log = oxen.Repo(str(repo)).log()
    assert [c.id for c in log] == [commit_id]
    folder = repo / "evals" / "sentiment"
    assert sorted(p.name for p in folder.iterdir()) == [
        "data.parquet", "evaluation.json", "rows.parquet", "summary.parquet",
    ]  # fmt: skip
    first = log[0].message.splitlines()[0]
    assert first.startswith("evals/sentiment: 3 variants × 30 rows, best a exact 1.000 [")
    metadata = read_commit_metadata(log[0].message)
    assert metadata["scores"] == {"a": 1.0, "b": 0.5, "c": pytest.approx(20 / 30)}
    assert metadata["templates_sha256"]["a"] == ev.settings.variants["a"]["template_sha256"]
    settings = json.loads((folder / "evaluation.json").read_text())
    assert settings["settings"]["variants"]["b"]["template"] == "B: {review}"
    back = EvalResult.load(folder)
    pd.testing.assert_frame_equal(back.summary, ev.summary)
    assert back.compare("b", "c").p_value == ev.compare("b", "c").p_value
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "summary.parquet"), ev.summary)
    with pytest.raises(ParameterError, match="nothing to commit: evals/sentiment"):
        ev.commit(repo=repo, path="evals/sentiment")
    with pytest.raises(ParameterError, match="leaves the repository"):
        ev.commit(repo=repo, path="../outside")
