"""When a value rides in a workflow history and when it is claim-checked into PostgreSQL.

Temporal keeps every workflow input, activity input and result in the history, which has a
size limit (2 MB per payload, 50 MB per history) and is replayed on every cache miss. Small
values stay inline (no database round trip); larger ones are stored once and the history
carries a key of about 80 bytes. The thresholds are measured in bench/claim_check.py: a
claim-check costs about 1.5 ms of CPU per event (four round trips) and breaks even near
16 KiB; 2 KiB keeps a one-rule history near 3 KB and any plan small, which we value more
than that millisecond.
"""

import hashlib

EVENT_INLINE_MAX = 2048
"""An event whose JSON (id, name, time and data) is up to this many bytes keeps its data in
the workflow input."""
PAYLOAD_INLINE_MAX = 2048
"""A rendered payload up to this many bytes (UTF-8) stays in the plan."""
PLAN_INLINE_BUDGET = 16 * 1024
"""At most this many bytes of payloads stay inline in one plan; the rest are claim-checked."""


def claim_key(kind: str, owner: str, body: str) -> str:
    """A key that names its content: the same value under the same owner, the same key."""
    digest = hashlib.sha256(body.encode()).hexdigest()[:32]
    return f"{kind}:{owner}:{digest}"
