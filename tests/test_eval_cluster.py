"""Session.evaluate on a Dask DataFrame: the variants' requests run on a LocalCluster of 2 worker
processes (the workers' own sessions and key), the rows come back to be scored."""

from __future__ import annotations

import dask.dataframe as dd
import pytest

from oxen_notebook import ParameterError, Variant
from tests.test_dask import _session, api, cluster, fresh  # noqa: F401 (fixtures)
from tests.test_evaluate import classifier, labelled


@pytest.mark.cluster
def test_an_evaluation_of_a_dask_dataframe_runs_on_the_cluster(fresh, cluster):  # noqa: F811
    fresh.handler = classifier
    s = _session(fresh)
    data = dd.from_pandas(labelled(30), npartitions=3)
    ev = s.evaluate(
        data, {"a": "A: {review}", "b": "B: {review}"}, target="label", concurrency=4, progress=False
    )
    assert ev.summary["exact"].tolist() == [1.0, 0.5]
    assert ev.summary["n"].tolist() == [30, 30]
    assert len(fresh.chat_requests()) == 60 and fresh.max_in_flight <= 4
    assert ev.rows.loc[ev.rows["variant"] == "a", "reply"].tolist()[:3] == [
        "  Positive.",
        "negative",
        "mixed",
    ]
    assert ev.compare("a", "b").losses == 15


@pytest.mark.cluster
def test_what_a_cluster_cannot_keep_is_refused_before_anything_is_sent(fresh, cluster):  # noqa: F811
    s = _session(fresh)
    data = dd.from_pandas(labelled(4), npartitions=2)
    for kwargs, message in (
        ({"max_cost_usd": 1.0}, "max_cost_usd= and checkpoint= are for an evaluation on one machine"),
        ({"repeats": 2}, "repeats= is for an evaluation on one machine"),
        ({"variants": {"a": Variant("A: {review}", system="Be brief.")}}, "has its own system prompt"),
    ):
        variants = kwargs.pop("variants", {"a": "A: {review}"})
        with pytest.raises(ParameterError, match=message):
            s.evaluate(data, variants, target="label", progress=False, **kwargs)
    assert fresh.chat_requests() == []
