"""The HTTP API: ingest (events, webhooks), administration, health and Prometheus metrics.

Every route except ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer
$HUB_API_TOKEN``; ``/webhooks/{service}`` takes that service's own inbound token instead.
No response carries a credential: services are shown as ``ServiceOut``, which only says
whether a token is set, and validation errors never echo the input back.

``app`` builds the application; ``routes`` holds one router per resource; ``deps`` the
shared state and auth; ``schemas`` and ``examples`` what is read and written; ``errors``,
``middleware`` and ``metrics`` the rest.
"""

from hub.api.app import create_app, serve

__all__ = ["create_app", "serve"]
