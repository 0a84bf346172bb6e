"""Evaluation: several prompt variants (and models) on labelled rows, scored, with the statistics
that say whether a difference is real (``_stats``) and what it costs. Above the batch layer: its
requests are ``map``'s jobs, run through one pool (``_run``)."""

from __future__ import annotations

from . import _scorers as scorers
from ._result import Comparison, EvalResult
from ._run import EvalEstimate, evaluate
from ._scorers import Scorer
from ._variants import Variant

__all__ = ["Comparison", "EvalEstimate", "EvalResult", "Scorer", "Variant", "evaluate", "scorers"]
