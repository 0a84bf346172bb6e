"""Which finished row of a checkpoint answers which row of the data: a key per row, and the rows
that earlier runs finished, matched to the data by key as it is read.

A row's key is a 64-bit hash of its own content (every column, as the checkpoint stores it) and of
how much of a long value a prompt shows (``context_rows``/``context_chars``); with the template,
model, parameters, schema, system prompt and attachments (the manifest, compared as a whole), it
determines the request. A finished row is reused only for a row of the data with its key, so an
edited, inserted, removed or reordered row is sent (an edited one again), every other is reused, and
no reply is ever shown next to a row it did not answer. Of equal rows (the same key), each finished
row answers one: the one at the same position first, then the first one free.

Memory on resume: about 33 bytes per finished row (key, position, its number, whether it is taken,
where it goes now), numpy arrays, and none per row of the data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["Finished", "row_key"]


def _plain(value: Any) -> Any:
    """A value JSON cannot hold, as text that still tells two values apart (an array in full)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return repr(value)


def row_key(data: dict[str, Any], limits: dict[str, int | None]) -> int:
    """The row's key: a signed 64-bit integer (what Parquet stores)."""
    text = json.dumps(
        [[[str(k), v] for k, v in data.items()], limits.get("rows"), limits.get("chars")],
        ensure_ascii=False,
        default=_plain,
    )
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class Finished:
    """The rows earlier runs finished, numbered in the order they were written (parts in order,
    rows in each part), and which of them this run reuses (:attr:`moved`: the row of the data each
    answers now, ``-1`` for none)."""

    def __init__(self, keys: Any, positions: Any, usable: Any) -> None:
        import numpy as np

        self.moved = np.full(len(keys), -1, dtype=np.int64)
        self.reused = 0
        numbers = np.arange(len(keys), dtype=np.int64)
        order = np.lexsort((numbers, positions, keys))  # by key, then position, then when written
        keys, positions = keys[order], positions[order]
        # Of a row stored twice (run again by retry_errors), its last run; and not a failed row
        # that is to run again.
        last = np.ones(len(keys), dtype=bool)
        last[:-1] = (keys[1:] != keys[:-1]) | (positions[1:] != positions[:-1])
        keep = last & usable[order]
        self._numbers = order[keep]
        self._keys = keys[keep]
        self._positions = positions[keep]
        self._taken = np.zeros(len(self._keys), dtype=bool)
        self._free: dict[int, int] = {}  # of equal keys from ``lo``: the first that may be free

    def __len__(self) -> int:
        return len(self._keys)

    def claim(self, position: int, key: int) -> bool:
        """Whether a finished row answers row ``position`` (whose key is ``key``): if so it is
        taken (it answers no other row) and the row is not sent."""
        import numpy as np

        keys = self._keys
        if not len(keys):
            return False
        lo = int(np.searchsorted(keys, key, "left"))
        if lo == len(keys) or keys[lo] != key:
            return False
        hi = int(np.searchsorted(keys, key, "right"))
        found = -1
        if hi - lo == 1:
            found = lo if not self._taken[lo] else -1
        else:
            at = lo + int(np.searchsorted(self._positions[lo:hi], position))
            if at < hi and self._positions[at] == position and not self._taken[at]:
                found = at  # the same row, where it was
            else:
                free = self._free.get(lo, lo)
                while free < hi and self._taken[free]:
                    free += 1
                self._free[lo] = free
                found = free if free < hi else -1
        if found < 0:
            return False
        self._taken[found] = True
        self.moved[self._numbers[found]] = position
        self.reused += 1
        return True
