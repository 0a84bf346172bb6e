"""How close ``Session.preview``'s prompt-token estimate is, on English text and on code.

The preview counts text with ``o200k_base`` (bpe-openai, offline): the tokenizer of OpenAI's
gpt-4o / gpt-5 families, so for them the text count is exact and only the chat format's
per-message overhead is a rule (OpenAI's cookbook). Two things are measured here:

- the character heuristic (``chars / 4``) the count falls back to without bpe-openai, against
  ``o200k_base``;
- ``o200k_base`` against another family's real tokenizer: the bundled local model's (SmolLM2,
  a Llama-style vocabulary, read with llama-cpp-python ``vocab_only``), which is how far the
  estimate is off for models that are not OpenAI's.

Samples, all offline: English prose from Python's own documentation (``pydoc_data.topics``) and
code from the standard library's sources, cut into pieces of about 2,000 characters. Figures are
the median and the 10th-90th percentile of (estimate / reference) over the pieces.

    python benchmarks/bench_estimate.py [--pieces 200]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oxen_notebook import _tokens


def english(pieces: int, size: int = 2000) -> list[str]:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return [text[i : i + size] for i in range(0, min(len(text), pieces * size), size)]


def code(pieces: int, size: int = 2000) -> list[str]:
    import asyncio
    import email
    import http.server
    import json
    import logging
    import pathlib
    import statistics as stats
    import string

    sources = "\n".join(
        inspect.getsource(m) for m in (asyncio, email, http.server, json, logging, pathlib, stats, string)
    )
    sources += "".join(Path(inspect.getfile(m)).read_text() for m in (logging, pathlib, stats, http.server))
    return [sources[i : i + size] for i in range(0, min(len(sources), pieces * size), size)]


def spread(ratios: list[float]) -> str:
    deciles = statistics.quantiles(ratios, n=10)
    return f"median {statistics.median(ratios):.3f}  (p10 {deciles[0]:.3f}, p90 {deciles[-1]:.3f})"


def local_tokenizer():
    try:
        from llama_cpp import Llama

        from oxen_notebook._local._model import model_path
    except ImportError:
        return None
    llama = Llama(model_path=str(model_path("local")), vocab_only=True, verbose=False)
    return lambda text: len(llama.tokenize(text.encode(), add_bos=False, special=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=200)
    args = parser.parse_args()
    print(f"counter: {_tokens.counter_name()}")
    other = local_tokenizer()
    for name, samples in (("English", english(args.pieces)), ("code", code(args.pieces))):
        exact = [_tokens.count_text(s) for s in samples]
        heuristic = [len(s) / _tokens.CHARS_PER_TOKEN / n for s, n in zip(samples, exact, strict=True)]
        print(
            f"{name:8} {len(samples)} pieces, {sum(map(len, samples)):,} chars, {sum(exact):,} o200k tokens"
        )
        print(f"  chars/4 vs o200k_base:           {spread(heuristic)}")
        if other is not None:
            theirs = [other(s) for s in samples]
            ratios = [n / m for n, m in zip(exact, theirs, strict=True)]
            print(f"  o200k_base vs SmolLM2 (local):   {spread(ratios)}")


if __name__ == "__main__":
    main()
