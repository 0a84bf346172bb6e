"""Which client serves a model: the hosted API's, or the embedded model's in-process transport.

The local model plugs in here and only here, as an httpx transport pair; everything above a
:class:`Client` (retries, SSE, replies, records) is the same for both.
"""

from __future__ import annotations

import threading

from ._auth import Secret
from ._client import Client
from ._local import LOCAL_BASE_URL, is_local_model

__all__ = ["ClientPool"]


class ClientPool:
    """The hosted client, made now, and the local one, made on first use of a ``local`` model."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Secret | None,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        deadline: float | None = None,
    ) -> None:
        self._options = {
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "max_retries": max_retries,
            "deadline": deadline,
        }
        self.hosted = Client(base_url, api_key=api_key, **self._options)
        self._local: Client | None = None
        self._lock = threading.Lock()

    @property
    def max_retries(self) -> int:
        return int(self._options["max_retries"])

    def for_model(self, model: str) -> Client:
        """The client for ``model`` (``local`` / ``local:/path.gguf`` run in-process)."""
        if not is_local_model(model):
            return self.hosted
        from ._local import local_transports

        with self._lock:
            if self._local is None:
                sync, asynchronous = local_transports()
                self._local = Client(
                    LOCAL_BASE_URL,
                    transport=sync,
                    async_transport=asynchronous,
                    key_required=False,
                    **self._options,
                )
            return self._local

    def close(self) -> None:
        """Close every client's connections (they reopen if used again)."""
        self.hosted.close()
        if self._local is not None:
            self._local.close()
