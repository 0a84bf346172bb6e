"""``oxen-notebook eval FILE``: run an evaluation file as a CI gate.

Progress goes to stderr, the summary to stdout; ``--json`` writes the results (``EvalResult.load``
reads them back, ``--baseline`` compares with them), ``--junit`` a JUnit XML report with one test
case per variant and gate. Exit codes: 0 every gate passed; 1 a variant fell under
``--fail-under`` or regressed against ``--baseline`` beyond noise (a paired test at 5 %), or a
request failed; 2 bad usage (the file, an option). With ``OXEN_CACHE_MODE=replay`` (and a cache
recorded by an earlier run) nothing is sent.
"""

from __future__ import annotations

import argparse
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._auth import find_api_key
from ._errors import ParameterError

if TYPE_CHECKING:
    from ._eval import EvalResult

__all__ = ["add_eval_parser"]

_HELP = """\
Run the variants of an evaluation file (TOML: data, target, variants, models, scorers) on its
labelled rows; print each variant's score with its 95 % interval, cost and latency. Requests are
sent at temperature 0 unless a variant sets one, and cached (--cache, else the user cache), so a
second run, or one with OXEN_CACHE_MODE=replay, sends nothing it sent before.

gates (exit code 1 when one fails):
  --fail-under X   every variant's mean score (the first scorer) must be at least X
  --baseline F     no variant may score worse than in F (a --json file of an earlier run),
                   by a paired test at 5 % (McNemar's exact test for pass/fail scores)

examples:
  oxen-notebook eval evals/sentiment.toml --fail-under 0.85 --junit report.xml
  oxen-notebook eval evals/sentiment.toml --baseline evals/main.json --json evals/new.json
  OXEN_CACHE_MODE=replay oxen-notebook eval evals/sentiment.toml   # send nothing: replay a cache"""


@dataclass(frozen=True)
class Gate:
    """One gate's verdict for one variant: a JUnit test case."""

    variant: str
    name: str
    passed: bool
    message: str


def add_eval_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "eval",
        parents=[common],
        help="Evaluate prompt variants on labelled rows (a CI gate).",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="The evaluation file (TOML).")
    parser.add_argument("--fail-under", type=float, metavar="X", help="Minimum mean score for every variant.")
    parser.add_argument(
        "--baseline", metavar="JSON", help="An earlier run's --json file: fail on a regression."
    )
    parser.add_argument("--json", metavar="PATH", help="Write the results here (EvalResult.load reads them).")
    parser.add_argument("--junit", metavar="PATH", help="Write a JUnit XML report here.")
    parser.add_argument("--cache", metavar="PATH", help="The response cache file (default: the user cache).")
    parser.set_defaults(run=run_eval)


def _note(text: str) -> None:
    print(f"oxen-notebook: {text}", file=sys.stderr, flush=True)


def _progress(stats: Any) -> None:
    total = stats.total or 0
    print(f"\roxen-notebook: {stats.done:,}/{total:,} requests", end="", file=sys.stderr, flush=True)


def gates(result: EvalResult, fail_under: float | None, baseline: EvalResult | None) -> list[Gate]:
    """Every gate's verdict, per variant."""
    found: list[Gate] = []
    scorer = result.scorers[0]
    for record in result.summary.to_dict(orient="records"):
        name, score = record["variant"], record[scorer]
        if fail_under is not None:
            ok = not math.isnan(score) and score >= fail_under
            found.append(
                Gate(
                    name,
                    f"{scorer} >= {fail_under:g}",
                    ok,
                    f"{scorer} = {score:.4f} [{record[f'{scorer}_low']:.4f}, "
                    f"{record[f'{scorer}_high']:.4f}] over {record['n']:,} rows",
                )
            )
        if not record["complete"]:
            found.append(Gate(name, "every row answered", False, f"{record['errors']:,} rows not answered"))
    if baseline is not None:
        diff = result.diff(baseline, scorer=scorer)
        for record in diff.to_dict(orient="records"):
            found.append(
                Gate(
                    record["variant"],
                    "no regression against the baseline",
                    not record["regressed"],
                    f"{record['before']:.4f} -> {record['after']:.4f}: {record['difference']:+.4f} "
                    f"[{record['low']:+.4f}, {record['high']:+.4f}], p = {record['p_value']:.3g}, "
                    f"{record['worse']:,} rows worse, {record['better']:,} better",
                )
            )
    return found


def junit_xml(found: list[Gate], suite: str) -> bytes:
    """A JUnit report: one test case per (variant, gate)."""
    failures = sum(not g.passed for g in found)
    root = ET.Element("testsuites", tests=str(len(found)), failures=str(failures))
    tests = ET.SubElement(root, "testsuite", name=suite, tests=str(len(found)), failures=str(failures))
    for gate in found:
        case = ET.SubElement(tests, "testcase", classname=f"{suite}.{gate.variant}", name=gate.name)
        if gate.passed:
            ET.SubElement(case, "system-out").text = gate.message
        else:
            ET.SubElement(case, "failure", message=gate.message).text = gate.message
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def run_eval(args: argparse.Namespace) -> int:
    from ._eval import EvalResult, evaluate
    from ._eval._config import read_eval_file
    from ._session import Session

    spec = read_eval_file(args.file)
    baseline = EvalResult.load(args.baseline) if args.baseline else None
    if args.fail_under is not None and not 0 <= args.fail_under <= 1e9:
        raise ParameterError(f"--fail-under {args.fail_under} is invalid: expected a score such as 0.85.")
    # temperature 0 unless a variant says otherwise: comparable runs, and a cache that replays them.
    session = Session(base_url=args.base_url, source="cli", cache=args.cache or True, temperature=0)
    replaying = session.cache is not None and session.cache.replaying
    if not replaying and find_api_key(session.base_url) is None:
        session.model = "local"
        _note(
            "no Oxen API key found (OXEN_API_KEY, or `oxen config --auth`): variants that name no model "
            "run on the embedded local model, offline."
        )
    result = evaluate(
        session,
        spec.data,
        spec.variants,
        target=spec.target,
        scorers=spec.scorers,
        models=spec.models,
        repeats=spec.repeats,
        concurrency=spec.concurrency,
        seed=spec.seed,
        progress=_progress,
        max_cost_usd=spec.budget,
    )
    print(file=sys.stderr)
    print(str(result), flush=True)
    if args.json:
        result.save(args.json)
    found = gates(result, args.fail_under, baseline)
    if args.junit:
        Path(args.junit).write_bytes(junit_xml(found, f"eval.{Path(args.file).stem}"))
    failed = [g for g in found if not g.passed]
    for gate in failed:
        _note(f"FAILED {gate.variant}: {gate.name}: {gate.message}")
    return 1 if failed else 0
