"""The soak's HTTP sink: answers 200 (after --reply-delay) and records who each request names.

    python bench/soak_sink.py --port 9000 [--reply-delay 0.05]

Like ``bench/sink.py`` (a bare asyncio protocol, HTTP/1.1 keep-alive, Content-Length bodies
only: what httpx sends), but it keeps what the soak checks of every request: its arrival time,
``Idempotency-Key``, ``X-Hub-Attempt``, ``X-Hub-Event-Id``, and the ``event_id`` field of its
JSON body. The parent reads them back with ``GET /_records`` (a JSON list of
``[time, key, attempt, header_event_id, body_event_id]``) and counts them with ``GET /_count``.
A short reply delay keeps a few sends in flight, so that a fault lands on some of them.
"""

import argparse
import asyncio
import json
import signal
import time
from typing import Any

_OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


def body_event_id(body: bytes) -> str | None:
    """The ``event_id`` field of a JSON object body; None if there is none."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return None
    value = parsed.get("event_id") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


class SinkProtocol(asyncio.Protocol):
    """One keep-alive connection: parse each request, record it, answer 200."""

    def __init__(self, records: list[list[Any]], delay: float) -> None:
        self._records = records
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
            answer = json.dumps(
                self._records if target == "/_records" else len(self._records)
            ).encode()
            head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(answer)}\r\n\r\n".encode()
            self._transport.write(head + answer)
            return
        self._records.append(
            [
                time.time(),
                headers.get(b"idempotency-key", b"").decode(),
                int(headers.get(b"x-hub-attempt", b"0") or 0),
                headers.get(b"x-hub-event-id", b"").decode(),
                body_event_id(body),
            ]
        )
        if self._delay > 0:
            asyncio.get_running_loop().call_later(self._delay, self._reply)
        else:
            self._reply()

    def _reply(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_OK)


async def serve(host: str, port: int, delay: float) -> None:
    """Serve until SIGTERM or SIGINT."""
    records: list[list[Any]] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(records, delay), host, port, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply-delay", type=float, default=0.05, help="seconds before the 200")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.reply_delay))


if __name__ == "__main__":
    main()
