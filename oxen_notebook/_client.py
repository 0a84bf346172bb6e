"""HTTP to the chat-completions API: httpx clients, retries with backoff, error mapping.

One ``Client`` serves the hosted API and the embedded local model (an httpx transport), sync and
async. Retries follow the openai SDK: connection errors, timeouts, 408, 409, 429 and 5xx, two
retries, ``min(0.5 * 2**n, 8)`` seconds less up to 25 % jitter, or ``Retry-After`` when it is
sensible. A 429 pauses every request of the client, not just the one that got it. Streams are
retried only until the response starts; the reply decides what to do after that.

A request also has a total ``deadline`` (seconds from its start to its last byte, retries
included; httpx's timeouts are per read, so a server trickling a byte at a time never trips them),
and a body is read with a bound (``_limits.MAX_BODY_BYTES``): no chat reply comes near it. A redirect
is an error that names where it points: following it would send the key elsewhere.

Within :func:`aiohttp_connections` (the batch runner's loop), async clients made for the hosted
API are ``_aiohttp.AiohttpClient``: aiohttp's pool under httpx's requests and responses, without
httpx's client layer, about half the CPU per request. Not when aiohttp is missing or the
environment names a proxy for the API; elsewhere, and for the sync client, httpx's own client.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import random
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._auth import Secret, find_api_key, host_of
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    InsufficientCreditsError,
    MissingAPIKeyError,
    one_line,
    status_error,
)
from ._limits import DEFAULT_DEADLINE, BodyReader, with_body
from ._retries import notify_retry

if TYPE_CHECKING:
    import httpx

    from ._aiohttp import AiohttpClient

__all__ = ["DEFAULT_BASE_URL", "Client", "aiohttp_connections", "proxy_for"]

DEFAULT_BASE_URL = "https://hub.oxen.ai/api/ai"
_ERROR_BODY_BYTES = 64 * 2**10  # an error body is cut here: its first lines say what went wrong
_RETRY_STATUSES = {408, 409, 429}
_MAX_RETRY_AFTER = 60.0
_USER_AGENT = "oxen-notebook/0.1"
_use_aiohttp: contextvars.ContextVar[bool] = contextvars.ContextVar("oxen_use_aiohttp", default=False)


@contextlib.contextmanager
def aiohttp_connections(enabled: bool = True) -> Iterator[None]:
    """If ``enabled``, async clients first made in this context (this task and the tasks it
    starts) pool their connections with aiohttp, if it is installed. Whoever enters it closes the
    loop's clients when done (:meth:`Client.aclose_loop`): an aiohttp pool cannot be left for the
    garbage collector."""
    token = _use_aiohttp.set(enabled)
    try:
        yield
    finally:
        _use_aiohttp.reset(token)


def proxy_for(base_url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...) names for
    ``base_url``, as httpx's client would find it; ``None`` for a direct connection."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    url = urlsplit(base_url)
    if url.hostname is None or proxy_bypass(url.hostname):
        return None
    proxies = getproxies()
    return proxies.get(url.scheme) or proxies.get("all")


def _aiohttp_client(base_url: str, timeout: httpx.Timeout) -> AiohttpClient | None:
    if proxy_for(base_url) is not None:  # httpx's client goes through it; aiohttp's pool would not
        return None
    try:
        from ._aiohttp import AiohttpClient
    except ImportError:  # aiohttp is not installed: httpx's own pool
        return None
    return AiohttpClient(timeout)


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None


def _request_id(headers: httpx.Headers, secret: str | None = None) -> str | None:
    value = headers.get("x-request-id") or headers.get("request-id") or headers.get("oxen-request-id")
    return one_line(value, 100, secret=secret) if value else None


class Client:
    """Sends requests with retries and turns failures into :class:`OxenError` values."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: Secret | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        deadline: float | None = DEFAULT_DEADLINE,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        key_required: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        #: Seconds a request may take in all (``None``: no limit); see :meth:`deadline_error`.
        self.deadline = deadline
        self.key_required = key_required
        self._transport = transport
        self._async_transport = async_transport
        self._sync_client: httpx.Client | None = None
        self._async_clients: dict[tuple[int, bool], httpx.AsyncClient | AiohttpClient] = {}
        self._urls: dict[str, httpx.URL] = {}
        self._lock = threading.Lock()
        self._pause_until = 0.0

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    # -- plumbing -------------------------------------------------------------------------------

    def _secret(self) -> str | None:
        if self.api_key is None:
            self.api_key = find_api_key(self.base_url)
        if self.api_key is None:
            if self.key_required:
                raise MissingAPIKeyError(host_of(self.base_url))
            return None
        return self.api_key.reveal()

    def _headers(self, extra: dict[str, str] | None, stream: bool) -> dict[str, str]:
        headers = {
            "User-Agent": _USER_AGENT,
            "Accept": "text/event-stream" if stream else "application/json",
        }
        secret = self._secret()
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        if extra:
            headers.update({str(k): str(v) for k, v in extra.items()})
        return headers

    def _timeout(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    def sync_client(self) -> httpx.Client:
        with self._lock:
            if self._sync_client is None:
                import httpx

                self._sync_client = httpx.Client(
                    base_url=self.base_url, timeout=self._timeout(), transport=self._transport
                )
            return self._sync_client

    def async_client(self) -> httpx.AsyncClient | AiohttpClient:
        """The running loop's client (its connections belong to that loop): within
        :func:`aiohttp_connections` an ``AiohttpClient`` if it can serve, else an ``httpx.AsyncClient``."""
        import asyncio

        key = (id(asyncio.get_running_loop()), self._async_transport is None and _use_aiohttp.get())
        with self._lock:
            client = self._async_clients.get(key)
            if client is None:
                import httpx

                timeout = self._timeout()
                client = (key[1] and _aiohttp_client(self.base_url, timeout)) or httpx.AsyncClient(
                    base_url=self.base_url, timeout=timeout, transport=self._async_transport
                )
                self._async_clients[key] = client
            return client

    def close(self) -> None:
        """Close the sync client; forget the async ones (each belongs to its own event loop)."""
        with self._lock:
            if self._sync_client is not None:
                self._sync_client.close()
                self._sync_client = None
            self._async_clients.clear()

    async def aclose_loop(self) -> None:
        """Close the async clients bound to the running event loop (their connections die with it)."""
        import asyncio

        loop = id(asyncio.get_running_loop())
        with self._lock:
            clients = [self._async_clients.pop(key) for key in list(self._async_clients) if key[0] == loop]
        for client in clients:
            await client.aclose()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def key_text(self) -> str | None:
        """The key this client sends, if it has found one (never looks it up): what to redact
        from text a server sends back, since a hostile or careless server may echo it."""
        return self.api_key.reveal() if self.api_key else None

    def _error(self, response: httpx.Response, model: str | None) -> APIStatusError:
        secret = self.key_text()
        error = status_error(
            response.status_code,
            response.content,
            request_id=_request_id(response.headers, secret),
            retry_after=_retry_after(response.headers),
            model=model,
            secret=secret,
        )
        if response.status_code == 429:
            self._pause(self._delay(error, 0))
        return error

    def _transport_error(self, exc: Exception) -> APIConnectionError:
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"no answer from {host_of(self.base_url)} within the timeout ({type(exc).__name__}); "
                "try again, or raise Session(timeout=...)."
            )
        said = one_line(exc, 200, secret=self.key_text())  # h11 quotes what the server sent
        return APIConnectionError(
            f"cannot reach {host_of(self.base_url)} ({type(exc).__name__}: {said}); "
            "check your network and base_url."
        )

    def deadline_error(self, *, partial: bool = False) -> APITimeoutError:
        """The one-line error of a request that ran past :attr:`deadline`."""
        kept = "; the partial reply was kept" if partial else ""
        return APITimeoutError(
            f"no complete answer from {host_of(self.base_url)} within the {self.deadline:g} s deadline{kept} "
            "(raise Session(deadline=...) for very long replies, or None for no limit)."
        )

    def _deadline(self, deadline: float | None) -> float | None:
        """The request's deadline on the monotonic clock: the caller's, else ``deadline`` from now."""
        if deadline is None and self.deadline is not None:
            return time.monotonic() + self.deadline
        return deadline

    def _attempt_timeouts(self, request: httpx.Request, deadline: float | None) -> None:
        """Before an attempt: no per-read wait may outlast what is left of the deadline."""
        if deadline is None:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise self.deadline_error()
        wait = min(self.timeout, left)
        request.extensions["timeout"] = {
            "connect": min(self.connect_timeout, left),
            "read": wait,
            "write": wait,
            "pool": wait,
        }

    def _redirected(self, response: httpx.Response) -> APIStatusError:
        secret = self.key_text()
        where = one_line(response.headers.get("location") or "no Location given", 200, secret=secret)
        return APIStatusError(
            f"{response.status_code} redirect ({where}): oxen_notebook does not follow redirects, which "
            "would send your key to another address; if that address is right, make it the base_url.",
            status=response.status_code,
            request_id=_request_id(response.headers, secret),
        )

    def read_body(self, response: httpx.Response, deadline: float | None, *, cut: int | None = None) -> bytes:
        """An open response's body, read within ``MAX_BODY_BYTES`` (or cut at ``cut`` bytes)
        and the deadline; the response is closed after."""
        try:
            body = BodyReader(response, deadline, cut, late=self.deadline_error)
            for piece in response.iter_bytes():
                if body.full(piece):
                    break
        finally:
            response.close()
        return body.value()

    async def aread_body(
        self, response: httpx.Response, deadline: float | None, *, cut: int | None = None
    ) -> bytes:
        """The async twin of :meth:`read_body`."""
        try:
            body = BodyReader(response, deadline, cut, late=self.deadline_error)
            async for piece in response.aiter_bytes():
                if body.full(piece):
                    break
        finally:
            await response.aclose()
        return body.value()

    def _pause(self, seconds: float) -> None:
        with self._lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _paused_for(self) -> float:
        return self._pause_until - time.monotonic()

    @staticmethod
    def _delay(error: APIError, attempt: int) -> float:
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and 0 <= retry_after <= _MAX_RETRY_AFTER:
            return retry_after
        return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())

    def _next_delay(
        self, outcome: httpx.Response | Exception, attempt: int, model: str | None, deadline: float | None
    ) -> float:
        """The seconds to wait before retrying a failed attempt; raises its error when it is final
        (also when the wait would pass the deadline)."""
        if isinstance(outcome, Exception):
            if deadline is not None and time.monotonic() >= deadline:  # its read timeout was the deadline's
                raise self.deadline_error()
            error: APIError = self._transport_error(outcome)
        else:
            error = self._error(outcome, model)
        delay = self._retry_delay(error, attempt)
        if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
            raise error
        notify_retry(error, delay, attempt + 1, self.max_retries)
        return delay

    def _retry_delay(self, error: APIError, attempt: int) -> float | None:
        if attempt >= self.max_retries or isinstance(error, InsufficientCreditsError):
            return None  # out of credits stays out of credits, whatever the status says
        if isinstance(error, APIStatusError):
            status = error.status or 0
            if status not in _RETRY_STATUSES and status < 500:
                return None
        elif not isinstance(error, APIConnectionError):
            return None
        return self._delay(error, attempt)

    def _build(self, method: str, path: str, body: Any, headers: dict | None, stream: bool, client: Any):
        return client.build_request(
            method, self._url(path), json=body, headers=self._headers(headers, stream)
        )

    def _url(self, path: str) -> httpx.URL:
        """``path`` (``/models``, maybe with a query) under the base URL; parsed once, as httpx
        would parse a relative one twice a request."""
        url = self._urls.get(path)
        if url is None:
            import httpx

            url = httpx.URL(self.base_url + path)
            if "?" not in path:
                self._urls[path] = url
        return url

    # -- requests -------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        model: str | None = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        """Send with retries; return a successful response (open, if ``stream``) or raise.
        ``deadline`` (monotonic clock) ends it, retries and body included; default :attr:`deadline`
        seconds from now."""
        import httpx

        client = self.sync_client()
        request = self._build(method, path, json, headers, stream, client)
        deadline = self._deadline(deadline)
        for attempt in itertools.count():
            while (wait := self._paused_for()) > 0:  # another request's 429 pauses this one too
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise self.deadline_error()
                time.sleep(wait)
            self._attempt_timeouts(request, deadline)
            try:
                response = client.send(request, stream=True)
                if 300 <= response.status_code < 400:
                    self.read_body(response, deadline, cut=_ERROR_BODY_BYTES)
                    raise self._redirected(response)
                if response.status_code < 400:
                    if stream:
                        return response
                    return with_body(response, self.read_body(response, deadline))
                outcome: httpx.Response | Exception = with_body(
                    response, self.read_body(response, deadline, cut=_ERROR_BODY_BYTES)
                )
            except httpx.TransportError as exc:
                outcome = exc
            time.sleep(self._next_delay(outcome, attempt, model, deadline))
        raise AssertionError("unreachable")

    async def asend(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        model: str | None = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        """The async twin of :meth:`send`."""
        import asyncio

        import httpx

        client = self.async_client()
        request = self._build(method, path, json, headers, stream, client)
        deadline = self._deadline(deadline)
        for attempt in itertools.count():
            while (wait := self._paused_for()) > 0:
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise self.deadline_error()
                await asyncio.sleep(wait)
            self._attempt_timeouts(request, deadline)
            try:
                response = await client.send(request, stream=True)
                if 300 <= response.status_code < 400:
                    await self.aread_body(response, deadline, cut=_ERROR_BODY_BYTES)
                    raise self._redirected(response)
                if response.status_code < 400:
                    if stream:
                        return response
                    return with_body(response, await self.aread_body(response, deadline))
                outcome: httpx.Response | Exception = with_body(
                    response, await self.aread_body(response, deadline, cut=_ERROR_BODY_BYTES)
                )
            except httpx.TransportError as exc:
                outcome = exc
            await asyncio.sleep(self._next_delay(outcome, attempt, model, deadline))
        raise AssertionError("unreachable")

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.send("GET", path if not params else f"{path}?{_query(params)}")
        return response.json()


def _query(params: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in params.items() if v is not None})
