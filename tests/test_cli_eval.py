"""``oxen-notebook eval FILE`` in a subprocess against the loopback API: the summary, the gates'
exit codes, the JUnit file, --json and --baseline, replay, and bad files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from oxen_notebook import EvalResult
from tests.fake_api import Script, _prompt_text
from tests.test_cli import cli, env  # noqa: F401 (the fixture)

# Each test starts the CLI as a process of its own (about a second each): the slow tier.
pytestmark = pytest.mark.slow

LABELS = ["positive", "negative", "mixed"]


def answer(body):
    """Variant "good" is always right; "half" right on even rows."""
    match = re.search(r"(good|half) (\d+)", _prompt_text(body))
    kind, i = match.group(1), int(match.group(2))
    right = kind == "good" or i % 2 == 0
    return Script(text=LABELS[i % 3] if right else "unsure")


@pytest.fixture
def eval_file(tmp_path, fake_api):
    fake_api.handler = answer
    pd.DataFrame({"i": range(40), "label": [LABELS[i % 3] for i in range(40)]}).to_csv(
        tmp_path / "rows.csv", index=False
    )
    path = tmp_path / "sentiment.toml"
    path.write_text(
        'data = "rows.csv"\ntarget = "label"\nconcurrency = 4\n\n'
        '[variants.good]\ntemplate = "good {i}"\n\n'
        '[variants.half]\ntemplate = "half {i}"\ntemperature = 0\n'
    )
    return path


def test_summary_on_stdout_and_the_fail_under_gate(eval_file, env, tmp_path):  # noqa: F811
    done = cli(
        "eval",
        str(eval_file),
        "--fail-under",
        "0.8",
        "--junit",
        str(tmp_path / "r.xml"),
        "--cache",
        str(tmp_path / "c.sqlite"),
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert "evaluation · 40 rows × 2 variants" in done.stdout
    line = next(ln for ln in done.stdout.splitlines() if " good " in f" {ln} ")
    assert "1.000" in line and "★" in line
    assert "FAILED half: exact >= 0.8: exact = 0.5000" in done.stderr
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    cases = {
        (c.get("classname"), c.get("name")): c.find("failure") is not None for c in suite.iter("testcase")
    }
    assert cases == {
        ("eval.sentiment.good", "exact >= 0.8"): False,
        ("eval.sentiment.half", "exact >= 0.8"): True,
    }
    assert suite.get("failures") == "1"
    passing = cli(
        "eval", str(eval_file), "--fail-under", "0.5", "--cache", str(tmp_path / "c.sqlite"), env=env
    )
    assert passing.returncode == 0, passing.stderr


def test_json_then_baseline_catches_a_regression_and_replay_sends_nothing(eval_file, env, tmp_path, fake_api):  # noqa: F811
    cache = str(tmp_path / "c.sqlite")
    first = cli("eval", str(eval_file), "--json", str(tmp_path / "main.json"), "--cache", cache, env=env)
    assert first.returncode == 0, first.stderr
    assert EvalResult.load(tmp_path / "main.json").summary["exact"].tolist() == [1.0, 0.5]
    sent = len(fake_api.chat_requests())
    assert sent == 80
    replay = cli(
        "eval",
        str(eval_file),
        "--baseline",
        str(tmp_path / "main.json"),
        "--cache",
        cache,
        env={**env, "OXEN_CACHE_MODE": "replay"},
    )
    assert replay.returncode == 0, replay.stderr
    assert len(fake_api.chat_requests()) == sent  # replay: nothing sent
    fake_api.handler = lambda body: Script(text="unsure")  # the prompts got worse
    worse = cli(
        "eval",
        str(eval_file),
        "--baseline",
        str(tmp_path / "main.json"),
        "--cache",
        str(tmp_path / "fresh.sqlite"),
        env=env,
    )
    assert worse.returncode == 1
    assert "FAILED good: no regression against the baseline: 1.0000 -> 0.0000" in worse.stderr


def test_an_unknown_key_names_itself_and_its_line(eval_file, env):  # noqa: F811
    eval_file.write_text(eval_file.read_text().replace("temperature = 0", "temprature = 0"))
    done = cli("eval", str(eval_file), env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "oxen-notebook: ParameterError: sentiment.toml:10: unknown key 'temprature' in [variants.half]; expected "
        "one of: frequency_penalty, max_tokens, model, presence_penalty, seed, stop, system, temperature, "
        "template, top_p."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'data = "rows.csv"\ntarget = "label"\nbudjet = 3\n[variants.a]\ntemplate = "x {i}"\n',
            "sentiment.toml:3: unknown key 'budjet' in the file",
        ),
        (
            'data = "rows.csv"\ntarget = "nope"\n[variants.a]\ntemplate = "x {i}"\n',
            "target='nope' is not a column",
        ),
        ('data = "missing.csv"\n[variants.a]\ntemplate = "x"\n', "the data file missing.csv does not exist"),
        ('data = "rows.csv"\ntarget = "label"\n', "no [variants.NAME] tables"),
        (
            'data = "rows.csv"\ntarget = "label"\nscorers = ["fuzzy"]\n[variants.a]\ntemplate = "x {i}"\n',
            "scorers[0] is {'name': 'fuzzy'}",
        ),
        ("data = [", "not valid TOML"),
    ],
)
def test_bad_files_are_one_line_usage_errors_before_anything_is_sent(eval_file, env, fake_api, text, message):  # noqa: F811
    eval_file.write_text(text)
    done = cli("eval", str(eval_file), env=env)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert fake_api.chat_requests() == []


def test_json_results_are_plain_json(eval_file, env, tmp_path):  # noqa: F811
    cli(
        "eval",
        str(eval_file),
        "--json",
        str(tmp_path / "r.json"),
        "--cache",
        str(tmp_path / "c.sqlite"),
        env=env,
    )
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["format"] == "oxen_notebook.evaluation/1"
    assert set(saved["settings"]["variants"]) == {"good", "half"}
    assert len(saved["settings"]["variants"]["good"]["template_sha256"]) == 12
