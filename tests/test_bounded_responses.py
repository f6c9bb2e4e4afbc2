"""Bounded responses: a delivery reads at most HUB_RESPONSE_MAX_BYTES of a response, then
hangs up; the service timeout bounds the whole attempt, a body that trickles included."""

import asyncio
import gzip
import time

import psutil

from hub.core.models import EXCERPT_CHARS, Outcome
from hub.engine.worker import http_client
from hub.transport.base import Sent
from hub.transport.egress import EgressGuard
from hub.transport.http import HttpCall
from tests.raw_server import GIB, RawServer

PATTERN = b"0123456789abcdef" * 4096  # 64 KiB a chunk, the same bytes object every time
RSS_BOUND = 50 * 1024**2


async def peak_rss_while(work: asyncio.Future[object]) -> int:
    """The highest RSS of this process (where the session's worker runs) until work ends."""
    process, peak = psutil.Process(), 0
    while not work.done():
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.005)
    return peak


async def test_a_1_gib_response_is_cut_at_the_cap_and_memory_stays_flat(
    settings, hub, store, make_service, make_rule, unique
):
    async with RawServer(size=GIB, chunk=PATTERN) as server:
        service = await make_service(base_url=server.url, timeout=30, max_attempts=1)
        await make_rule(f"{unique}.huge", service)
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        emit = asyncio.ensure_future(
            hub.emit(f"{unique}.huge", {}, event_id=f"{unique}-g", wait=True)
        )
        peak = await peak_rss_while(emit)
        elapsed = time.perf_counter() - started
        result = emit.result()
        await asyncio.sleep(0.2)  # the server notices the hang-up on its next write

    assert result.result.outcome is Outcome.DELIVERED
    [row] = await store.log.recent(event_id=f"{unique}-g")
    assert row.status_code == 200
    assert row.response_excerpt == PATTERN[:EXCERPT_CHARS].decode()
    # The worker hung up after the cap: the rest of the gibibyte was never sent.
    assert server.hung_up == 1
    assert server.sent < 64 * 1024**2, server.sent
    assert peak - before < RSS_BOUND, f"RSS grew by {(peak - before) / 1024**2:.1f} MiB"
    print(
        f"\n1 GiB response: RSS before {before / 1024**2:.1f} MiB, peak {peak / 1024**2:.1f} MiB"
        f" (+{(peak - before) / 1024**2:.1f} MiB); attempt {row.latency_ms:.0f} ms,"
        f" emit-to-result {elapsed:.2f} s; server wrote {server.sent / 1024**2:.1f} MiB"
    )


async def test_a_trickling_body_times_out_at_the_service_timeout(
    hub, store, make_service, make_rule, unique
):
    # One byte a second: every read succeeds within the per-read timeout; only the
    # deadline on the whole attempt ends it.
    async with RawServer(size=100, chunk=b"x", interval=1.0) as server:
        service = await make_service(base_url=server.url, timeout=2, max_attempts=1)
        await make_rule(f"{unique}.drip", service)
        result = await hub.emit(f"{unique}.drip", {}, event_id=f"{unique}-d", wait=True)
        await asyncio.sleep(1.2)  # the server's next write finds the connection closed

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-d")
    assert dead.error == "timed out after 2s"
    [row] = await store.log.recent(event_id=f"{unique}-d")
    assert 2000 <= row.latency_ms < 2500
    assert 1 <= server.sent <= 3
    assert server.hung_up == 1


async def call(settings, url: str, max_bytes: int = 64 * 1024) -> Sent:
    """One request through the worker's kind of client (guarded, loopback allowed)."""
    async with http_client(settings, EgressGuard(settings.egress_policy)) as client:
        request = client.build_request("POST", url, content=b"{}")
        return await HttpCall(client, request, 5.0, max_bytes).send()


async def test_an_endless_error_body_is_cut_and_still_classified(settings):
    async with RawServer(status="503 Service Unavailable", size=GIB, chunk=PATTERN) as server:
        started = time.perf_counter()
        sent = await call(settings, f"{server.url}/x", max_bytes=1000)
        await asyncio.sleep(0.2)

    assert time.perf_counter() - started < 2
    assert sent.status_code == 503
    assert sent.retryable and not sent.healthy
    assert sent.error == f"HTTP 503 Service Unavailable: {PATTERN[:200].decode()}"
    assert sent.excerpt == PATTERN[:EXCERPT_CHARS].decode()
    assert server.hung_up == 1


async def test_the_cap_is_what_is_read(settings):
    body = b"a" * 300 + b"b" * 700
    async with RawServer(size=len(body), chunk=body) as server:
        sent = await call(settings, server.url, max_bytes=300)

    assert sent.excerpt == "a" * 300


async def test_identity_is_asked_for_and_a_compressed_body_is_still_read(
    hub, store, make_service, make_rule, unique
):
    body = gzip.compress(b'{"ok": true}')
    headers = {"Content-Encoding": "gzip"}
    async with RawServer(size=len(body), chunk=body, headers=headers) as server:
        service = await make_service(base_url=server.url)
        await make_rule(f"{unique}.gz", service)
        result = await hub.emit(f"{unique}.gz", {}, event_id=f"{unique}-z", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    # Only an excerpt is kept, so the body is asked for as it is: the cap counts real bytes.
    assert server.requests[0]["accept-encoding"] == "identity"
    [row] = await store.log.recent(event_id=f"{unique}-z")
    assert row.response_excerpt == '{"ok": true}'
