"""Size limits on what goes through the hub: one event size, measured the same way everywhere.

An event's size is the UTF-8 length of its JSON as the hub stores and sends it
(``Event.model_dump_json()``). The API, webhooks, the SDK and the CLI all refuse an event over
``HUB_MAX_EVENT_BYTES`` with ``EventTooLarge``; rendered payloads have their own limit
(``HUB_MAX_PAYLOAD_BYTES``, see ``hub.core.templating.PayloadTooLarge``).
"""

from hub.core.models.event import Event

EVENT_LIMIT_SETTING = "HUB_MAX_EVENT_BYTES"


class EventTooLarge(ValueError):
    """An event over the event size limit; ``size`` and ``limit`` are in bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"event is {size} bytes, over the limit of {limit} bytes ({EVENT_LIMIT_SETTING})"
        )
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[type["EventTooLarge"], tuple[int, int]]:
        return (type(self), (self.size, self.limit))


def event_bytes(event: Event) -> int:
    """The event's size: bytes of its JSON in UTF-8, as stored and sent."""
    return len(event.model_dump_json().encode())


def check_event_size(event: Event, max_bytes: int) -> None:
    """Raise EventTooLarge if the event is over ``max_bytes``; exactly ``max_bytes`` is fine."""
    size = event_bytes(event)
    if size > max_bytes:
        raise EventTooLarge(size, max_bytes)
