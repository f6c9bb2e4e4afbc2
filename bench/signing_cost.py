"""What signing costs one delivery, in the worker's process, with no network.

    python bench/signing_cost.py [-n 20000] [--body-bytes 1024]

Times, interleaved, for HMAC and ed25519 with one signature (a signing service) and two (a
service inside a rotation's grace period):
  - sign:  the three Standard Webhooks headers over the body (hub.core.signing), what
           build_request and AmqpTransport.prepare add to an attempt;
  - open:  SecretBox.credentials for a service with those keys (decrypting and parsing the
           sealed keys), which every attempt does before it signs;
  - none:  SecretBox.credentials for a service without keys, for comparison.
Prints one JSON line of mean/p50/p99 microseconds per delivery.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.circuit_cost import summary
from hub.core.models import Service, SigningKey
from hub.core.signing import SigningScheme, generate, signature_headers
from hub.secrets import SecretBox


def service_with(box: SecretBox, scheme: SigningScheme, keys: int) -> Service:
    now = datetime.now(UTC)
    signing = []
    for i in range(keys):
        material = generate(scheme)
        signing.append(
            SigningKey(
                id=i + 1,
                scheme=scheme,
                public_key=material.public_key,
                created_at=now,
                secret=box.seal(material.secret),
            )
        )
    return Service(
        id=1,
        name="bench",
        base_url="http://h",
        signing_keys=signing,
        created_at=now,
        updated_at=now,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="timed calls per case")
    parser.add_argument("--body-bytes", type=int, default=1024)
    args = parser.parse_args()

    box = SecretBox(Fernet.generate_key().decode())
    body = b'{"x": "' + b"a" * max(0, args.body_bytes - 9) + b'"}'
    delivery_id = "order-42/7"
    unsigned = service_with(box, SigningScheme.HMAC, 0)
    cases: dict[str, Callable[[], object]] = {"none_open": lambda: box.credentials(unsigned)}
    for scheme in SigningScheme:
        for count in (1, 2):
            service = service_with(box, scheme, count)
            signers = box.credentials(service).signers
            assert len(signers) == count
            cases[f"{scheme.value}_{count}_sign"] = lambda s=signers: signature_headers(
                s, delivery_id, body
            )
            cases[f"{scheme.value}_{count}_open"] = lambda v=service: box.credentials(v)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.n):
        for name, call in cases.items():
            started = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - started)
    result = {"n": args.n, "body_bytes": len(body)}
    result |= {name: summary(times) for name, times in samples.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
