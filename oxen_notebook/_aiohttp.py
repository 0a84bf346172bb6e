"""The batch runner's connections: aiohttp's pool under httpx's requests and responses.

httpcore's async pool costs about twice aiohttp's CPU per request (its pool scans every connection
on each request and response; anyio wraps every socket call), and ``httpx.AsyncClient.send`` adds
as much again around it: a cookie jar filled through ``urllib``'s request and ``email``'s message
shims on every response, the merging of client and request headers, cookies and URL, the auth and
redirect flows. The API needs none of those (a bearer header, no cookies; httpx follows no
redirects by default either), so :class:`AiohttpClient` is the part of ``httpx.AsyncClient`` that
``_client.Client`` uses (``build_request``, ``send``, ``aclose``), without that layer.

httpx stays the interface: requests are ``httpx.Request`` (httpx encodes the JSON body), responses
``httpx.Response`` (read, decoded and closed by httpx), and aiohttp's errors become the httpx errors
httpcore would raise for the same failure, so ``_client.py`` retries and maps them the same way.
Only the connection pool and the HTTP/1.1 wire are aiohttp's. ``_client.py`` does not use it when
the environment names a proxy for the API (httpx's client honours those).

The pool's ``aiohttp.ClientSession`` is made on the loop of the first request and must be closed
there (``aclose``): the batch runner does, at the end of every batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import aiohttp
import httpx
import yarl

if TYPE_CHECKING:
    import ssl

__all__ = ["AiohttpClient"]


@contextmanager
def _mapped(phase: str) -> Iterator[None]:
    """aiohttp's errors as httpcore's: ``phase`` is ``connect`` (until the headers) or ``read``."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:  # connecting, or waiting for a free connection
        raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
    except asyncio.TimeoutError as exc:  # no data within the read timeout (SocketTimeoutError)
        raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
    except aiohttp.ClientConnectorError as exc:  # refused, unresolvable, TLS failures
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ClientPayloadError as exc:  # the body was cut off or malformed
        raise httpx.RemoteProtocolError(str(exc)) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(
            str(exc) or "Server disconnected without sending a response."
        ) from exc
    except aiohttp.ClientResponseError as exc:  # a malformed status line or headers
        raise httpx.RemoteProtocolError(str(exc)) from exc
    except (aiohttp.ClientConnectionError, aiohttp.ClientOSError) as exc:
        raise (httpx.ConnectError if phase == "connect" else httpx.ReadError)(str(exc)) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc)) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped("read"):
            async for chunk in self._response.content.iter_any():  # each piece as it arrives
                yield chunk

    async def aclose(self) -> None:
        response = self._response
        if response.content.at_eof():
            response.release()  # the connection goes back to the pool
        else:
            response.close()  # left early: drop the connection, the server sees it close


class AiohttpClient:
    """What ``_client.Client`` uses of an ``httpx.AsyncClient`` (``build_request``, ``send``,
    ``aclose``), on an ``aiohttp.ClientSession`` made on first use (on the running loop), without
    httpx's client layer: no cookie jar, auth or redirect flows, event hooks."""

    def __init__(self, timeout: httpx.Timeout, *, limit: int = 100, keepalive: float = 5.0) -> None:
        self._timeout = timeout.as_dict()
        self._wire_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout.pool, sock_connect=timeout.connect, sock_read=timeout.read
        )
        self._limit = limit
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    def build_request(
        self, method: str, url: httpx.URL, *, json: object = None, headers: dict[str, str] | None = None
    ) -> httpx.Request:
        """``url`` is absolute (``Client`` joins the base URL once per path); httpx encodes ``json``."""
        return httpx.Request(method, url, json=json, headers=headers, extensions={"timeout": self._timeout})

    def _ssl_for(self, url: httpx.URL) -> ssl.SSLContext | bool:
        if url.scheme != "https":
            return True  # unused: loading a CA bundle costs ~0.1 s, for nothing on plain HTTP
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # httpx's CA bundle and settings, not aiohttp's
        return self._ssl

    async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """As ``httpx.AsyncClient.send``: the response open if ``stream``, else read and closed."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=self._keepalive)
            # No cookies, redirects, decompression or proxies of aiohttp's: httpx decodes the body.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            )
        with _mapped("connect"):
            wire = await self._session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),  # httpx has quoted it already
                headers=request.headers.multi_items(),
                data=request.content or None,  # httpx has the body built: json= is bytes by now
                allow_redirects=False,
                ssl=self._ssl_for(request.url),
                timeout=self._wire_timeout,
            )
        response = httpx.Response(
            wire.status,
            headers=wire.raw_headers,
            stream=_Body(wire),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (wire.reason or "").encode()},
        )
        if not stream:
            try:
                await response.aread()  # httpx decodes the body (Content-Encoding) and closes the stream
            except BaseException:
                await response.aclose()
                raise
        return response

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
