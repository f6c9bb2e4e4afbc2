"""Rule matching cost against the number of rules: the index against trying every pattern.

    .venv/bin/python bench/rule_matching.py [--counts 1,100,1000,10000] [--events 2000]

Half of the rules are wildcards (``evtN.*``), half exact names (``evtN.created``); each
event name matches one of each kind at most. Pure CPU, no servers. Prints ONE JSON line.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hub.core.matching import PatternIndex, matches


def measure(count: int, events: int) -> dict[str, float]:
    patterns = [f"evt{i}.*" if i % 2 else f"evt{i}.created" for i in range(count)]
    began = time.perf_counter()
    index = PatternIndex(patterns)
    build = time.perf_counter() - began
    names = [f"evt{random.randrange(count)}.created" for _ in range(events)]
    began = time.perf_counter()
    for name in names:
        index.positions(name)
    indexed = (time.perf_counter() - began) / events
    tried = names[: max(1, min(events, 200_000 // count))]
    began = time.perf_counter()
    for name in tried:
        [i for i, pattern in enumerate(patterns) if matches(pattern, name)]
    each = (time.perf_counter() - began) / len(tried)
    return {
        "index_us_per_event": round(indexed * 1e6, 2),
        "index_build_ms": round(build * 1e3, 1),
        "try_each_us_per_event": round(each * 1e6, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--counts", default="1,100,1000,10000")
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(json.dumps({str(c): measure(c, args.events) for c in counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
