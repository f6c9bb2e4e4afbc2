"""The span of one send (an HTTP request, an AMQP publish), and what it may record.

A span may reach a third-party collector, so it never holds a secret: no credentials, no URL
path or query (webhook URLs often carry their token in either), no payload, no response body.
It names the server, the hub's ids (delivery, event, attempt) and the outcome; the delivery
log, found by the delivery id, has the rest.
"""

from collections.abc import Mapping
from urllib.parse import urlsplit

import aio_pika
import httpx
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from hub.core.tracing import failed
from hub.transport.base import Sent

DEFAULT_PORTS = {"http": 80, "https": 443, "amqp": 5672, "amqps": 5671}

Attributes = dict[str, AttributeValue]


def server_attributes(url: str) -> Attributes:
    """``server.address`` and ``server.port`` of a URL (nothing else of it)."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return {}
    found: Attributes = {}
    if parts.hostname:
        found["server.address"] = parts.hostname
    if port:
        found["server.port"] = port
    return found


def hub_attributes(
    delivery_id: str | None, event_id: object, event_name: object, attempt: object
) -> Attributes:
    """The hub's ids, as the request or message carries them in its headers."""
    found: Attributes = {
        "hub.delivery.id": delivery_id or "",
        "hub.event.id": str(event_id or ""),
        "hub.event.name": str(event_name or ""),
    }
    if isinstance(attempt, int) or (isinstance(attempt, str) and attempt.isdigit()):
        found["hub.attempt"] = int(attempt)
    return found


def http_attributes(request: httpx.Request) -> Attributes:
    """An HTTP request: method, scheme, server, the hub's ids."""
    headers = request.headers
    return {
        "http.request.method": request.method,
        "url.scheme": request.url.scheme,
        **server_attributes(str(request.url)),
        **hub_attributes(
            headers.get("Idempotency-Key"),
            headers.get("X-Hub-Event-Id"),
            headers.get("X-Hub-Event"),
            headers.get("X-Hub-Attempt"),
        ),
    }


def amqp_attributes(
    message: aio_pika.Message, exchange: str, routing_key: str, broker_url: str
) -> Attributes:
    """An AMQP publish: broker, exchange, routing key, message id, the hub's ids."""
    headers: Mapping[str, object] = message.headers
    return {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": message.message_id or "",
        **server_attributes(broker_url),
        **hub_attributes(
            message.message_id,
            headers.get("x-hub-event-id"),
            headers.get("x-hub-event"),
            headers.get("x-hub-attempt"),
        ),
    }


def record(current: Span | None, sent: Sent) -> None:
    """The send's outcome on its span: the status code, and for a failure an ERROR status
    whose description is the error's first clause (never the response body it may quote)."""
    if current is None:
        return
    if sent.status_code is not None:
        current.set_attribute("http.response.status_code", sent.status_code)
    if sent.error is not None:
        kind = str(sent.status_code) if sent.status_code is not None else "_OTHER"
        failed(current, kind, sent.error.split(": ", 1)[0][:200])
