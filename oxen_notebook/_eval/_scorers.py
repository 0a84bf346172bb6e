"""Scorers: how a reply is graded against its row. Each is a :class:`Scorer` value.

``exact``, ``contains``, ``regex`` and ``numeric`` give pass/fail (``True``/``False``), ``f1`` a
grade in [0, 1], ``field`` either (a ``schema=`` field against a target column), and any callable
``(reply, row) -> bool | float`` is wrapped as it is. A scorer returns ``None`` for a row it cannot
grade (no target); one that raises marks that cell (its error is kept), never the run.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any

from .._errors import ParameterError
from .._records import is_missing

__all__ = [
    "Judge",
    "Scorer",
    "as_scorer",
    "choice",
    "contains",
    "exact",
    "f1",
    "field",
    "judge",
    "normalize_text",
    "numeric",
    "pairwise",
    "regex",
]

_EDGE = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026"
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Scorer:
    """One way to grade a reply. ``name`` is its score column; ``binary`` says whether its scores
    are pass/fail (Wilson intervals, McNemar's test) or graded (bootstrap, sign-flip test).

    A scorer either compares the reply with the row's ``target`` column (``compare(reply,
    expected)``; ``target=None`` until :meth:`Session.evaluate` gives it its ``target=``), or reads
    the row itself (``grade(reply, row, parsed)``). ``schema_field`` is the ``schema=`` field that
    ``field()`` compares."""

    name: str
    compare: Callable[[str, Any], bool | float] | None = dataclass_field(default=None, repr=False)
    grade_row: Callable[[str | None, dict[str, Any], Any], bool | float | None] | None = dataclass_field(
        default=None, repr=False
    )
    binary: bool = True
    target: str | None = None
    schema_field: str | None = None
    judge: Judge | None = None  # a model grades the replies (run by evaluate, in one batch)

    @property
    def needs_target(self) -> bool:
        return self.compare is not None

    def with_target(self, target: str | None) -> Scorer:
        """This scorer reading ``target`` if it compares with a target and names none yet."""
        if (not self.needs_target and self.judge is None) or self.target is not None or target is None:
            return self
        return replace(self, target=target)

    def grade(self, reply: str | None, row: dict[str, Any], parsed: Any) -> bool | float | None:
        """The row's score (``None``: no target to grade against)."""
        if self.judge is not None:
            raise ParameterError(f"the {self.name} scorer asks a model: it grades inside Session.evaluate.")
        if self.compare is None:
            assert self.grade_row is not None
            return self.grade_row(reply, row, parsed)
        if self.target is None:
            raise ParameterError(f"the {self.name} scorer needs a target column: give target=.")
        expected = row.get(self.target)
        if is_missing(expected):
            return None
        return self.compare("" if reply is None else reply, expected)


def normalize_text(text: Any) -> str:
    """Case-folded, Unicode-normalized, inner whitespace collapsed, surrounding punctuation and
    quotes removed: ``"  Positive.\\n"`` and ``"positive"`` are equal."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return " ".join(text.split()).strip(_EDGE + " ")


JUDGE_TEMPLATE = """You are grading an answer against a rubric.

Question:
{prompt}

Expected answer:
{target}

Answer to grade:
{reply}

Rubric: {rubric}

Reply with JSON only: {{"passed": true or false, "reason": "one short sentence"}}."""

#: What a judge replies with (``schema=`` of its requests).
VERDICT = {
    "type": "object",
    "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["passed", "reason"],
    "additionalProperties": False,
}


PAIR_TEMPLATE = """You are comparing two answers to the same task.

Task:
{prompt}

Answer 1:
{first}

Answer 2:
{second}

Rubric: {rubric}

Which answer is better by the rubric? Reply with JSON only: {{"better": 1 or 2 (or 0 if they are
equally good), "reason": "one short sentence"}}."""

#: What a pairwise judge replies with.
PREFERENCE = {
    "type": "object",
    "properties": {"better": {"type": "integer", "enum": [0, 1, 2]}, "reason": {"type": "string"}},
    "required": ["better", "reason"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Judge:
    """A model that grades replies: its rubric and model; ``pairwise`` compares each variant's
    reply with ``baseline``'s (default: the first variant) instead of grading it alone."""

    rubric: str
    model: str
    pairwise: bool = False
    baseline: str | None = None

    def prompt(self, question: str, reply: str, target: Any) -> str:
        values = {"prompt": question, "reply": reply, "target": "(none)" if is_missing(target) else target}
        return JUDGE_TEMPLATE.format(rubric=self.rubric, **{k: str(v) for k, v in values.items()})

    def pair_prompt(self, question: str, first: str, second: str) -> str:
        return PAIR_TEMPLATE.format(rubric=self.rubric, prompt=question, first=first, second=second)


def judge(rubric: str, *, model: str | None = None, name: str = "judge", target: str | None = None) -> Scorer:
    """A model grades each reply against the target (if any) and ``rubric``: pass or fail, with a
    reason. Its requests go through the Session as the variants' do (cached, priced), are sent
    after them, and are counted separately (``judge_cost_usd``)."""
    if not isinstance(rubric, str) or not rubric.strip():
        raise ParameterError("judge() needs a rubric: what makes an answer pass, in a sentence or two.")
    if not isinstance(model, str) or not model.strip():
        raise ParameterError("judge() needs the grading model: judge(rubric, model='gpt-5-2-chat-latest').")
    return Scorer(name, compare=None, binary=True, target=target, judge=Judge(rubric, model))


def pairwise(
    rubric: str, *, model: str | None = None, baseline: str | None = None, name: str = "pairwise"
) -> Scorer:
    """A model compares each variant's reply with the ``baseline`` variant's (default: the first)
    on the same row, in both orders, so that a preference for a position cancels: 1 where the
    variant is preferred both times, 0 where the baseline is, 0.5 otherwise (a tie, or the order
    decided); the baseline scores 0.5. ``compare(baseline, variant, scorer="pairwise")`` then tests
    whether the wins outnumber the losses."""
    made = judge(rubric, model=model, name=name)
    assert made.judge is not None
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        raise ParameterError(f"pairwise(baseline={baseline!r}) is invalid: give a variant's name.")
    return replace(made, binary=False, judge=replace(made.judge, pairwise=True, baseline=baseline))


def exact(*, normalize: bool = True, target: str | None = None) -> Scorer:
    """Pass when the reply equals the target (after :func:`normalize_text` unless ``normalize=False``)."""

    def equal(reply: str, want: Any) -> bool:
        if normalize:
            return normalize_text(reply) == normalize_text(want)
        return reply.strip() == str(want).strip()

    return Scorer("exact", compare=equal, target=target)


def contains(*, normalize: bool = True, target: str | None = None) -> Scorer:
    """Pass when the target appears in the reply (normalized, and as whole words, unless ``normalize=False``)."""
    if not normalize:
        return Scorer("contains", compare=lambda reply, want: str(want) in reply, target=target)

    def found(reply: str, want: Any) -> bool:
        needle = normalize_text(want)
        return (
            bool(needle)
            and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", normalize_text(reply)) is not None
        )

    return Scorer("contains", compare=found, target=target)


def choice(choices: list[str], *, target: str | None = None) -> Scorer:
    """Pass when the reply names the target and no other of ``choices`` (whole words, normalized):
    a classifier's answer "positive, negative or mixed" names every label and fails."""
    if isinstance(choices, str) or not choices or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ParameterError("choice() takes the labels, as in choice(['positive', 'negative', 'mixed']).")
    patterns = {
        normalize_text(c): re.compile(rf"(?<!\w){re.escape(normalize_text(c))}(?!\w)") for c in choices
    }

    def named(reply: str, want: Any) -> bool:
        text = normalize_text(reply)
        found = {label for label, pattern in patterns.items() if pattern.search(text)}
        return found == {normalize_text(want)}

    return Scorer("choice", compare=named, target=target)


def regex(pattern: str, *, name: str = "regex", flags: int = re.IGNORECASE) -> Scorer:
    """Pass when ``pattern`` matches somewhere in the reply (no target needed)."""
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise ParameterError(f"regex scorer: {pattern!r} is not a valid pattern: {exc}.") from None

    def score(reply: str | None, row: dict[str, Any], parsed: Any) -> bool:
        return compiled.search(reply or "") is not None

    return Scorer(name, grade_row=score)


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


def numeric(*, tol: float = 0.0, relative: bool = False, target: str | None = None) -> Scorer:
    """Pass when the first number in the reply is within ``tol`` of the target (``relative=True``:
    within ``tol`` times the target's size)."""
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol < 0 or math.isnan(tol):
        raise ParameterError(f"numeric(tol={tol!r}) is invalid: expected a number >= 0.")

    def close(reply: str, want: Any) -> bool:
        got = _first_number(reply)
        expected = want if isinstance(want, (int, float)) else _first_number(str(want))
        if got is None or expected is None:
            return False
        return abs(got - float(expected)) <= (tol * abs(float(expected)) if relative else tol)

    return Scorer("numeric", compare=close, target=target)


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _tokens(text: str) -> list[str]:
    """SQuAD's normalization: lower case, punctuation removed, articles dropped, whitespace split."""
    text = normalize_text(text).translate(str.maketrans("", "", string.punctuation))
    return _ARTICLES.sub(" ", text).split()


def f1(*, target: str | None = None) -> Scorer:
    """Token overlap of reply and target, in [0, 1]: SQuAD's F1 (the harmonic mean of precision and
    recall over tokens, after lower-casing and dropping punctuation and articles)."""

    def overlap(reply: str, want: Any) -> float:
        got, expected = _tokens(reply), _tokens(str(want))
        if not got or not expected:
            return float(got == expected)
        common = sum((Counter(got) & Counter(expected)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(got), common / len(expected)
        return 2 * precision * recall / (precision + recall)

    return Scorer("f1", compare=overlap, binary=False, target=target)


def field(
    name: str, *, target: str | None = None, tol: float | None = None, normalize: bool = True
) -> Scorer:
    """Compare the ``schema=`` reply's field ``name`` with the target column (default: a column
    named ``name``): equal after :func:`normalize_text` for text, within ``tol`` for numbers."""
    if not isinstance(name, str) or not name:
        raise ParameterError("field() needs the schema field's name, as in field('city').")
    column = target or name

    def score(reply: str | None, row: dict[str, Any], parsed: Any) -> bool | None:
        expected = row.get(column)
        if is_missing(expected):
            return None
        if parsed is None:
            return False
        got = parsed.get(name) if isinstance(parsed, dict) else getattr(parsed, name, None)
        if isinstance(got, (int, float)) and not isinstance(got, bool) and isinstance(expected, (int, float)):
            return abs(float(got) - float(expected)) <= (tol or 0.0)
        if normalize:
            return normalize_text(got) == normalize_text(expected)
        return got == expected

    return Scorer(f"field:{name}", grade_row=score, target=column, schema_field=name)


def as_scorer(value: Any, position: int) -> Scorer:
    """A :class:`Scorer` as given, or a callable ``(reply, row) -> bool | float`` wrapped as one."""
    if isinstance(value, Scorer):
        return value
    if callable(value) and not isinstance(value, type):
        name = getattr(value, "__name__", None) or f"scorer{position}"
        name = f"scorer{position}" if name == "<lambda>" else name

        def score(reply: str | None, row: dict[str, Any], parsed: Any) -> Any:
            return value(reply, row)

        return Scorer(name, grade_row=score, binary=False)  # graded unless its scores are all bools
    raise ParameterError(
        f"scorers[{position}] is {type(value).__name__}, not a scorer: use oxen_notebook.scorers.exact() "
        "(or contains, regex, numeric, f1, field) or a function (reply, row) -> bool | float."
    )
