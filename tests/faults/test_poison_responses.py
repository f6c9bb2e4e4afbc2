"""Fault drills: poison responses from a receiver must not wedge a delivery or the worker.

* a 500 whose body holds NUL bytes and invalid UTF-8, with a reason phrase and header values
  of bytes that are not UTF-8: the delivery is retried, then dead-lettered, and the log and
  the DLQ keep the excerpt without the NULs (PostgreSQL refuses NUL in text);
* a 200 whose body is a gibibyte of the same, with no length (it ends when the connection
  does): the delivery is delivered from the first bytes, the rest is never read, and the
  worker's memory stays flat.

The receivers are raw HTTP servers on 127.0.0.1 (tests/raw_server.py) answering bytes as
given; the worker is the session's (it runs in this process, so its RSS is ours).
"""

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass

import psutil
import pytest

from hub.core.models import EXCERPT_CHARS, Outcome
from tests.raw_server import GIB, RawServer
from tests.test_bounded_responses import peak_rss_while

POISON = b'{"error": "bo\x00om", "detail": "\xff\xfe\xc3(", "tail": "\x00end\x00"}'
# What is left once it is cleaned: NUL gone; each invalid byte replaced by U+FFFD or removed.
READABLE = '{"error": "boom", "detail": "(", "tail": "end"}'
ODD_HEAD = (
    b"HTTP/1.1 500 Bad \xff\xfe Day\r\n"
    b"Content-Type: text/plain; charset=\xff\xfe\r\n"  # no such codec
    b"Retry-After: \xff1\r\n"  # neither seconds nor a date
    b"X-Poison: caf\xe9 \x80\x81\xfe\r\n"
)
RSS_BOUND = 100 * 1024**2
WAIT = 60


@dataclass
class PoisonServer(RawServer):
    """A RawServer whose status line and headers are raw bytes (not UTF-8 text), and whose
    body, without ``length``, has no Content-Length: it ends when the connection closes."""

    head: bytes = b"HTTP/1.1 200 OK\r\n"
    length: bool = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            body_length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", request)
            await reader.readexactly(int(body_length[1]) if body_length else 0)
            self.requests.append({"head": request.decode("latin-1")})
            framing = f"Content-Length: {self.size}" if self.length else "Connection: close"
            writer.write(self.head + framing.encode() + b"\r\n\r\n")
            await self._write_body(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.hung_up += 1
        finally:
            writer.close()


def readable(text: str | None) -> str:
    """The text with U+FFFD dropped (whether invalid bytes were replaced or removed)."""
    assert text is not None
    return text.replace("\ufffd", "")


async def emit_within(hub, temporal, event: str, event_id: str, seconds: float = WAIT):
    """emit(wait=True), failing (and ending the workflow) if it does not complete in time."""
    try:
        async with asyncio.timeout(seconds):
            return await hub.emit(event, {}, event_id=event_id, wait=True)
    except TimeoutError:
        with contextlib.suppress(Exception):
            await temporal.get_workflow_handle(f"event-{event_id}").terminate("poison drill")
        pytest.fail(f"the workflow of {event_id} did not complete within {seconds:g} s (wedged)")


async def test_a_500_with_nul_and_invalid_utf8_is_retried_then_dead_lettered(
    hub, temporal, store, make_service, make_rule, unique
):
    server = PoisonServer(head=ODD_HEAD, size=len(POISON), chunk=POISON)
    async with server:
        service = await make_service(base_url=server.url, max_attempts=2, backoff=0.1)
        await make_rule(f"{unique}.poison", service)
        started = time.perf_counter()
        result = await emit_within(hub, temporal, f"{unique}.poison", f"{unique}-p")
        elapsed = time.perf_counter() - started

    assert result.result.outcome is Outcome.DEAD_LETTERED
    assert server.connections == 2  # both attempts reached the receiver, no more
    [dead] = await store.dlq.recent(event=f"{unique}-p")
    assert dead.attempts == 2
    assert "\x00" not in dead.error
    assert readable(dead.error).startswith("HTTP 500 Bad")
    assert readable(dead.error).endswith(f": {READABLE}")
    rows = await store.log.recent(event_id=f"{unique}-p")
    assert sorted(r.attempt for r in rows) == [1, 2]
    for row in rows:
        assert (row.status.value, row.status_code) == ("failed", 500)
        assert "\x00" not in (row.response_excerpt or "") + (row.error or "")
        assert readable(row.response_excerpt) == READABLE
        assert readable(row.error).endswith(f": {READABLE}")
    print(f"\nNUL/invalid UTF-8 500: dead-lettered after 2 attempts in {elapsed:.2f} s")


async def test_a_1_gib_endless_poison_body_is_cut_and_delivered(
    hub, temporal, store, make_service, make_rule, unique
):
    chunk = (b"\x00poison\xff\xfe " * 6554)[: 64 * 1024]  # 64 KiB, the same object each time
    server = PoisonServer(size=GIB, chunk=chunk, length=False)
    async with server:
        service = await make_service(base_url=server.url, timeout=30, max_attempts=2)
        for _ in range(3):  # three deliveries of the event, each answered with a gibibyte
            await make_rule(f"{unique}.huge", service)
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        emit = asyncio.ensure_future(emit_within(hub, temporal, f"{unique}.huge", f"{unique}-g"))
        peak = await peak_rss_while(emit)
        elapsed = time.perf_counter() - started
        result = emit.result()
        await asyncio.sleep(0.3)  # the server notices each hang-up on its next write

    assert result.result.outcome is Outcome.DELIVERED
    assert len(result.result.deliveries) == 3
    rows = await store.log.recent(event_id=f"{unique}-g")
    assert [(r.attempt, r.status.value, r.status_code) for r in rows] == [(1, "ok", 200)] * 3
    for row in rows:
        excerpt = row.response_excerpt or ""
        assert "\x00" not in excerpt
        assert 0 < len(excerpt) <= EXCERPT_CHARS
        assert readable(excerpt).startswith("poison poison")
    # Each delivery hung up after its cap: the gibibytes were never sent, let alone kept.
    assert (server.connections, server.hung_up) == (3, 3)
    assert server.sent < 3 * 64 * 1024**2, server.sent
    assert elapsed < 15, f"took {elapsed:.1f} s"
    grown = (peak - before) / 1024**2
    assert peak - before < RSS_BOUND, f"RSS grew by {grown:.1f} MiB"
    print(
        f"\n3 x 1 GiB endless poison bodies: delivered in {elapsed:.2f} s, RSS +{grown:.1f} MiB"
        f" (peak {peak / 1024**2:.0f} MiB), server wrote {server.sent / 1024**2:.1f} MiB"
    )
