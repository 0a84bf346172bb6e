"""The batch runner's aiohttp pool (``_aiohttp.py``) against httpx's own: the same responses, the
same errors for the same failures, and the batch tests' faults with every batch on aiohttp."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from oxen_notebook import APIConnectionError, APITimeoutError, RateLimitError
from oxen_notebook._aiohttp import AiohttpClient
from oxen_notebook._auth import Secret
from oxen_notebook._batch import _runner
from oxen_notebook._client import Client, aiohttp_connections
from tests import test_batch
from tests.conftest import TEST_KEY
from tests.fake_api import Script

BODY = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}


def _send(base_url: str, aiohttp: bool, *, stream: bool = False, timeout: float = 5.0, read: bool = True):
    """POST BODY with a fresh client on a fresh loop; return (status, body, transport type)."""

    async def main():
        client = Client(base_url, api_key=Secret(TEST_KEY), timeout=timeout, max_retries=0)
        with aiohttp_connections(aiohttp):
            try:
                response = await client.asend(
                    "POST", "/chat/completions", json={**BODY, "stream": stream}, stream=stream
                )
                kind = type(client.async_client()).__name__
                body = b"".join([c async for c in response.aiter_bytes()]) if stream and read else None
                body = response.content if not stream else body
                await response.aclose()
                return response.status_code, body, kind
            finally:
                await client.aclose_loop()

    return asyncio.run(main())


@pytest.mark.parametrize("aiohttp", [False, True])
def test_the_same_responses_on_either_pool(fake_api, aiohttp):
    fake_api.enqueue(Script(text="Echo: hi"), Script(text="Echo: hi"))
    status, body, kind = _send(fake_api.base_url, aiohttp)
    assert (status, b"Echo: hi" in body) == (200, True)
    assert kind == ("AiohttpClient" if aiohttp else "AsyncClient")
    status, body, _ = _send(fake_api.base_url, aiohttp, stream=True)
    assert status == 200 and body.rstrip().endswith(b"data: [DONE]")
    headers = [{k.lower(): v for k, v in r["headers"].items()} for r in fake_api.requests[-2:]]
    assert [h["authorization"] for h in headers] == [f"Bearer {TEST_KEY}"] * 2
    assert [h["user-agent"] for h in headers] == ["oxen-notebook/0.1"] * 2
    assert [h["accept"] for h in headers] == ["application/json", "text/event-stream"]


@pytest.mark.parametrize("aiohttp", [False, True])
def test_the_same_errors_on_either_pool(fake_api, aiohttp):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/api/ai"
    with pytest.raises(
        APIConnectionError, match=r"^cannot reach 127\.0\.0\.1:\d+ \(ConnectError: .*\); check"
    ):
        _send(closed, aiohttp)
    fake_api.enqueue(Script(text="slow", stall_after=0, stall_seconds=1.0))
    with pytest.raises(APITimeoutError, match=r"within the timeout \(ReadTimeout\)"):
        _send(fake_api.base_url, aiohttp, timeout=0.3)
    fake_api.enqueue(Script(text="cut " * 100, drop_after=0))
    with pytest.raises(APIConnectionError, match=r"\(RemoteProtocolError: .*\)") as caught:
        _send(fake_api.base_url, aiohttp)
    assert not isinstance(caught.value, APITimeoutError)
    fake_api.enqueue(Script(status=429, headers={"Retry-After": "0"}, error={"error": {"message": "slow"}}))
    with pytest.raises(RateLimitError):
        _send(fake_api.base_url, aiohttp)
    assert "\n" not in str(caught.value)


def test_a_stream_left_early_closes_its_connection(fake_api):
    fake_api.enqueue(Script(chunks=["x "] * 50, delay=0.02))
    closed = fake_api.closed_early
    status, _, _ = _send(fake_api.base_url, True, stream=True, read=False)
    assert status == 200
    for _ in range(100):
        if fake_api.closed_early > closed:
            break
        asyncio.run(asyncio.sleep(0.02))
    assert fake_api.closed_early == closed + 1


def test_a_proxy_named_for_the_api_is_used_and_no_proxy_is_honoured(fake_api, monkeypatch):
    """aiohttp's pool knows no proxies: with one named for the API the batch goes through httpx's
    client, which uses it (here a port nobody listens on, so the request fails there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with pytest.raises(APIConnectionError, match=r"ConnectError"):
        _send(fake_api.base_url, True)
    assert fake_api.requests == []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fake_api.enqueue(Script(text="Echo: hi"))
    status, body, kind = _send(fake_api.base_url, True)
    assert (status, kind, b"Echo: hi" in body) == (200, "AiohttpClient", True)


def test_plain_http_loads_no_ca_bundle():
    client = AiohttpClient(httpx.Timeout(5.0))
    assert client._ssl_for(httpx.URL("http://127.0.0.1/")) is True
    assert client._ssl is None


@pytest.mark.parametrize(
    "test",
    [
        test_batch.test_429_storm_sends_nothing_during_the_pause,
        test_batch.test_real_sigint_cancels_in_flight_requests,
        test_batch.test_interrupt_from_progress_callback_keeps_finished_rows,
        test_batch.test_failed_row_is_recorded_and_the_others_continue,
        test_batch.test_rows_are_sent_unstreamed_unless_stream_is_true,
        test_batch.test_streamed_rows_retry_broken_streams_and_streams_that_end_with_nothing,
        test_batch.test_unstreamed_rows_survive_body_faults,
        test_batch.test_map_params_reach_every_request,
    ],
    ids=lambda test: test.__name__,
)
@pytest.mark.slow
def test_the_batch_faults_with_every_batch_on_aiohttp(fake_api, monkeypatch, test):
    monkeypatch.setattr(_runner, "_AIOHTTP_ROWS", 0)
    test(fake_api)
