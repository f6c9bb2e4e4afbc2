"""The soak's HTTP sink: answers 200 (after --reply-delay) and records who each request names.

    python bench/soak_sink.py --port 9000 [--reply-delay 0.05]

It is ``bench/sink.py`` (a bare asyncio protocol, HTTP/1.1 keep-alive, Content-Length bodies
only: what httpx sends) with a recorder that keeps what the soak checks of every request:
its arrival time, ``Idempotency-Key``, ``X-Hub-Attempt``, ``X-Hub-Event-Id``, and the
``event_id`` field of its JSON body. The parent reads them back with ``GET /_records`` (a
JSON list of ``[time, key, attempt, header_event_id, body_event_id]``) and counts them with
``GET /_count``. A short reply delay keeps a few sends in flight, so that a fault lands on
some of them.
"""

import argparse
import asyncio
import json
import time
from typing import Any

from sink import serve  # bench/sink.py: python puts this script's folder first on sys.path


def body_event_id(body: bytes) -> str | None:
    """The ``event_id`` field of a JSON object body; None if there is none."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return None
    value = parsed.get("event_id") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


class SoakRecorder:
    """Every request as ``[time, key, attempt, header_event_id, body_event_id]``."""

    def __init__(self) -> None:
        self.records: list[list[Any]] = []

    def add(self, path: str, headers: dict[bytes, bytes], body: bytes) -> None:
        self.records.append(
            [
                time.time(),
                headers.get(b"idempotency-key", b"").decode(),
                int(headers.get(b"x-hub-attempt", b"0") or 0),
                headers.get(b"x-hub-event-id", b"").decode(),
                body_event_id(body),
            ]
        )

    def control(self, target: str) -> bytes:
        """``/_records``: the list; ``/_count``: its length."""
        path = target.partition("?")[0]
        return json.dumps(self.records if path == "/_records" else len(self.records)).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply-delay", type=float, default=0.05, help="seconds before the 200")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, SoakRecorder(), args.reply_delay))


if __name__ == "__main__":
    main()
