"""The response cache: finished replies in SQLite, keyed on what was asked, never on who asked.

The key is a SHA-256 of the base URL and the request body (model, messages, parameters), without the
streaming options and without the API key. One SQLite file in WAL mode, one connection per thread and
a busy timeout, so the batch workers, the panel's thread and a second kernel can read and write it at
the same time. Only complete replies are stored (finish reason ``stop``, ``length`` or ``tool_calls``).

Mode ``"replay"`` answers only from the file and sends nothing: a request that is not there fails
with :class:`~oxen_notebook.CacheMissError` naming its key. It is meant for re-running notebooks in
CI without a network; ``OXEN_CACHE_MODE=replay`` puts every cache a Session opens into it, so the
notebook that recorded with ``cache="responses.sqlite"`` replays unchanged.

A damaged cache never stops a conversation. A stored reply that does not read back as one (bad
JSON, or the wrong shape) is a miss, logged once per cache, and is overwritten when the reply is
stored again; a cache that cannot be read or written later on is logged once and skipped. A file
that is not SQLite at all is refused when the Session opens it, in one line naming the file: it is
not moved aside and recreated, because the file may be the user's own or a replay recording, and
a replay from an empty new cache would fail every request anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CacheMissError, ParameterError

if TYPE_CHECKING:
    import sqlite3

__all__ = ["MODES", "MODE_ENV", "ResponseCache", "cache_key", "lookup", "lookup_first", "open_cache", "store"]

MODES = ("on", "refresh", "always", "replay")
MODE_ENV = "OXEN_CACHE_MODE"  # overrides the mode of every cache a Session opens (CI: replay)
_STORED_REASONS = {"stop", "length", "tool_calls"}
_UNKEYED = {"stream", "stream_options"}
_log = logging.getLogger("oxen_notebook")


def default_cache_path() -> Path:
    """``responses.sqlite`` under the user cache directory (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("oxen_notebook", appauthor=False)) / "responses.sqlite"


def cache_key(base_url: str, body: dict[str, Any]) -> str:
    """A stable digest of the endpoint and the request body; the key is never part of it."""
    keyed = {k: v for k, v in body.items() if k not in _UNKEYED}
    text = json.dumps(
        {"base_url": base_url.rstrip("/"), "body": keyed},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """Finished replies in a SQLite file.

    ``mode`` is ``"on"`` (read and write requests sent with ``temperature=0``), ``"refresh"`` (never
    read, always write: re-asks and overwrites), ``"always"`` (read and write whatever the
    temperature) or ``"replay"`` (read whatever the temperature, never write, and a miss is a
    :class:`~oxen_notebook.CacheMissError`: nothing is sent). Change it at any time:
    ``session.cache.mode = "refresh"``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, mode: str = "on") -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.mode = mode
        if mode == "replay" and not self.path.exists():
            raise ParameterError(
                f"the replay cache {str(self.path)!r} does not exist: record it first with "
                "Session(cache=path, temperature=0), or give the file that was recorded."
            )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._said: set[str] = set()  # what was logged already (once per cache)
        import sqlite3

        try:
            self._connect()  # fail now, not at the first request, if the path is unusable
        except sqlite3.OperationalError as exc:  # a folder, no permission, a locked file
            self.close()
            raise ParameterError(
                f"the response cache {str(self.path)!r} cannot be opened ({exc}): give the path of "
                "a file in a folder you can write (cache=False for none)."
            ) from None
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ParameterError(
                f"the response cache {str(self.path)!r} cannot be used ({exc}): it is not a SQLite "
                "file, or it is damaged. Move or delete it (it holds only cached replies) to start "
                "a new cache, or pass another path (cache=False for none)."
            ) from None

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ParameterError(f"cache mode {value!r} is invalid: expected one of {', '.join(MODES)}.")
        self._mode = value

    @property
    def replaying(self) -> bool:
        """Whether the mode is ``"replay"``: answers come only from the file, nothing is sent."""
        return self._mode == "replay"

    def __repr__(self) -> str:
        return f"ResponseCache(path={str(self.path)!r}, mode={self.mode!r})"

    def _connect(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        import sqlite3

        connection.execute("PRAGMA busy_timeout = 30000")
        # Switching to WAL takes an exclusive lock without waiting on the busy handler: two kernels
        # opening a new cache file at once can get "database is locked" here. Try again briefly.
        for attempt in range(100):
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS replies ("
            " key TEXT PRIMARY KEY, model TEXT NOT NULL, created_at REAL NOT NULL, reply TEXT NOT NULL)"
        )

    def cacheable(self, body: dict[str, Any]) -> bool:
        """Whether this request may be answered from, and stored in, the cache."""
        return self.mode in ("always", "replay") or body.get("temperature") == 0

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply for ``key`` (text, finish_reason, usage, tool_calls), or ``None``; a
        damaged one (bad JSON, the wrong shape) is ``None`` too, logged once per cache."""
        row = self._connect().execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        if not row:
            return None
        try:
            reply = json.loads(row[0])
        except (TypeError, ValueError, RecursionError):
            reply = None
        if not _whole(reply):
            self.say_once(
                "row",
                f"oxen_notebook: the response cache {str(self.path)!r} holds a damaged reply (key "
                f"{key[:12]}…): it counts as a miss and is replaced when that reply is stored again.",
            )
            return None
        return reply

    def say_once(self, kind: str, line: str) -> None:
        """Log ``line`` as a warning, once per ``kind`` for this cache."""
        if kind not in self._said:
            self._said.add(kind)
            _log.warning(line)

    def put(self, key: str, model: str, reply: dict[str, Any]) -> None:
        """Store (or replace) the reply for ``key``."""
        self._connect().execute(
            "INSERT OR REPLACE INTO replies (key, model, created_at, reply) VALUES (?, ?, ?, ?)",
            (key, model, time.time(), json.dumps(reply, ensure_ascii=False)),
        )

    def lookup(self, base_url: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The stored reply for this request, if the mode allows reading it; in replay mode a
        miss raises :class:`~oxen_notebook.CacheMissError`."""
        if self.mode == "refresh" or not self.cacheable(body):
            return None
        key = cache_key(base_url, body)
        hit = self.get(key)
        if hit is None and self.replaying:
            raise CacheMissError(key, reason=self._damaged(key))
        return hit

    def _damaged(self, key: str) -> str | None:
        """Why a replay missed ``key`` when a row is there (it is damaged), else ``None``."""
        found = self._connect().execute("SELECT 1 FROM replies WHERE key = ?", (key,)).fetchone()
        return "its stored reply is damaged; record it again" if found else None

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def clear(self) -> None:
        """Delete every stored reply."""
        self._connect().execute("DELETE FROM replies")

    def close(self) -> None:
        """Close every connection this cache opened (any thread)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()


def open_cache(cache: bool | str | os.PathLike[str] | ResponseCache | None) -> ResponseCache | None:
    """``Session(cache=...)``: ``True``, ``"refresh"``, ``"always"``, ``"replay"``, a file path, or a
    ``ResponseCache``. ``OXEN_CACHE_MODE``, when set, is the mode of any but a ``ResponseCache``."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, ResponseCache):
        return cache
    forced = os.environ.get(MODE_ENV, "").strip()
    if forced and forced not in MODES:
        raise ParameterError(f"{MODE_ENV}={forced!r} is invalid: expected one of {', '.join(MODES)}.")
    if cache is True:
        return ResponseCache(mode=forced or "on")
    if isinstance(cache, str) and cache in MODES:
        return ResponseCache(mode=forced or cache)
    if isinstance(cache, (str, os.PathLike)):
        return ResponseCache(cache, mode=forced or "on")
    raise ParameterError(
        f"cache={cache!r} is invalid: expected True, 'refresh', 'always', 'replay', a file path or False."
    )


def store(cache: ResponseCache, base_url: str, body: dict[str, Any], reply: dict[str, Any]) -> None:
    """Keep ``reply`` (text, finish_reason, usage, tool_calls) if it is complete and the mode takes
    this request (never in replay mode); a cache that cannot be written is logged, never raised."""
    if cache.replaying or reply.get("finish_reason") not in _STORED_REASONS or not cache.cacheable(body):
        return
    import sqlite3

    try:
        cache.put(cache_key(base_url, body), str(body.get("model", "")), reply)
    except (sqlite3.Error, OSError, TypeError, ValueError) as exc:
        where = f"oxen_notebook: the response cache {str(cache.path)!r}"
        cache.say_once("write", f"{where} could not be written ({exc}); replies are not being cached.")


def lookup(cache: ResponseCache, base_url: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The stored reply for this request, or ``None``; a cache that cannot be read is logged (in
    replay mode, a miss or an unreadable cache raises :class:`~oxen_notebook.CacheMissError`)."""
    import sqlite3

    try:
        return cache.lookup(base_url, body)
    except (sqlite3.Error, OSError) as exc:
        if cache.replaying:
            raise CacheMissError(
                cache_key(base_url, body), reason=f"the cache could not be read: {exc}"
            ) from None
        where = f"oxen_notebook: the response cache {str(cache.path)!r}"
        cache.say_once("read", f"{where} could not be read ({exc}); requests are sent instead.")
        return None


def lookup_first(
    cache: ResponseCache, base_url: str, bodies: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The first of ``bodies`` that is stored, as ``(reply, body)``; ``(None, bodies[0])`` when none
    is. In replay mode a miss of every body raises the first one's :class:`CacheMissError`."""
    first: CacheMissError | None = None
    for body in bodies:
        try:
            hit = lookup(cache, base_url, body)
        except CacheMissError as miss:
            first = first or miss
            continue
        if hit is not None:
            return hit, body
    if first is not None:
        raise first
    return None, bodies[0]


def _whole(reply: Any) -> bool:
    """Whether a stored value is a reply as :func:`store` writes it."""
    if not isinstance(reply, dict):
        return False
    calls = reply.get("tool_calls") or []
    return (
        isinstance(reply.get("text") or "", str)
        and isinstance(reply.get("finish_reason") or "", str)
        and isinstance(reply.get("usage") or {}, dict)
        and isinstance(calls, list)
        and all(
            isinstance(call, dict)
            and isinstance(call.get("function"), dict)
            and isinstance(call["function"].get("name"), str)
            and isinstance(call["function"].get("arguments", ""), str)
            for call in calls
        )
    )
