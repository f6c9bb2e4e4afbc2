"""Event-name patterns: exact names, or ``*`` standing for any run of characters."""

import re
from functools import lru_cache


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex for a rule's event pattern (``order.*``, ``\\core\\event\\user_*``)."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def matches(pattern: str, name: str) -> bool:
    """Whether an event name matches a rule's pattern, exactly or through wildcards."""
    if "*" not in pattern:
        return pattern == name
    return compile_pattern(pattern).fullmatch(name) is not None
