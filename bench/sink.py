"""The benchmark's HTTP sink: answers 200 at once and records who arrived when.

    python bench/sink.py --port 9000

Runs in its own process so that its CPU does not count against the hub, and is a bare
asyncio protocol (HTTP/1.1 keep-alive, Content-Length bodies only: what httpx sends)
because uvicorn with h11 costs several times more CPU per request on a 2-core machine.

Every request except ``/_…`` is recorded as ``[time.time(), path, id]``, where id is the
``X-Hub-Event-Id`` header (hub deliveries) or ``X-Bench-Id`` (the baseline). The parent
reads them back with ``GET /_records`` and counts them with ``GET /_count?path=/hub``.
"""

import argparse
import asyncio
import json
import signal
import time
from collections import Counter
from typing import Protocol
from urllib.parse import parse_qs

Record = tuple[float, str, str]

_OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
_ID_HEADERS = (b"x-hub-event-id", b"x-bench-id")


class Recording(Protocol):
    """What a sink keeps of each request, and how it answers ``/_…`` control requests."""

    def add(self, path: str, headers: dict[bytes, bytes], body: bytes) -> None: ...

    def control(self, target: str) -> bytes: ...


class Recorder:
    """What the sink has received, in arrival order, with a count per path."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.per_path: Counter[str] = Counter()

    def add(self, path: str, headers: dict[bytes, bytes], body: bytes) -> None:
        at = time.time()
        request_id = next((headers[h] for h in _ID_HEADERS if h in headers), b"").decode()
        self.records.append((at, path, request_id))
        self.per_path[path] += 1

    def control(self, target: str) -> bytes:
        """The body of an answer to ``/_records`` or ``/_count?path=…``."""
        path, _, query = target.partition("?")
        if path == "/_records":
            return json.dumps(self.records).encode()
        if path == "/_count":
            wanted = parse_qs(query).get("path", [])
            total = sum(self.per_path[p] for p in wanted) if wanted else len(self.records)
            return json.dumps(total).encode()
        return b"null"


class SinkProtocol(asyncio.Protocol):
    """One keep-alive connection: parse each request, record it, answer 200 (after
    ``delay`` seconds, which keeps sends in flight for a soak's faults to land on)."""

    def __init__(self, recorder: Recording, delay: float = 0.0) -> None:
        self._recorder = recorder
        self._delay = delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (request := self._next_request()) is not None:
            self._answer(*request)

    def _next_request(self) -> tuple[str, dict[bytes, bytes], bytes] | None:
        """The next complete request (target, headers, body), removed from the buffer."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buffer[:end].split(b"\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        if len(self._buffer) < end + 4 + length:
            return None
        body = self._buffer[end + 4 : end + 4 + length]
        self._buffer = self._buffer[end + 4 + length :]
        parts = head[0].decode("latin-1").split(" ")
        return (parts[1] if len(parts) > 1 else "/"), headers, body

    def _answer(self, target: str, headers: dict[bytes, bytes], body: bytes) -> None:
        assert self._transport is not None
        if target.startswith("/_"):
            answer = self._recorder.control(target)
            head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(answer)}\r\n\r\n".encode()
            self._transport.write(head + answer)
            return
        self._recorder.add(target.partition("?")[0], headers, body)
        if self._delay > 0:
            asyncio.get_running_loop().call_later(self._delay, self._reply)
        else:
            self._reply()

    def _reply(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_OK)


async def serve(host: str, port: int, recorder: Recording, delay: float = 0.0) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(recorder, delay), host, port, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, Recorder()))


if __name__ == "__main__":
    main()
