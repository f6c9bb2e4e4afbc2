"""bench/sink.py with a recorder that also keeps a hash of each body, for bench/cost_curves.py.

    python bench/curve_sink.py --port 9000

The event-size curve checks that the bytes that arrived are the bytes the hub rendered, and
the signing curve that signed deliveries carry a signature: so each record is
``[time, path, id, sha256 of the body, body bytes, signed]`` (``GET /_records``).
"""

import argparse
import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.sink import serve


class HashingRecorder:
    """Every request's arrival, id, body hash and size, and whether it was signed."""

    def __init__(self) -> None:
        self.records: list[tuple[float, str, str, str, int, bool]] = []

    def add(self, path: str, headers: dict[bytes, bytes], body: bytes) -> None:
        rid = headers.get(b"x-hub-event-id", b"").decode()
        digest = hashlib.sha256(body).hexdigest()
        signed = b"webhook-signature" in headers
        self.records.append((time.time(), path, rid, digest, len(body), signed))

    def control(self, target: str) -> bytes:
        return json.dumps(self.records).encode() if target == "/_records" else b"null"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve("127.0.0.1", args.port, HashingRecorder()))


if __name__ == "__main__":
    main()
