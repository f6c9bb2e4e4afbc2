"""The request-body examples shown in the OpenAPI document (and fuzzed against real rows).

They name the service ``crm`` and rule 1, which the fuzz test seeds, so they reach rows.
"""

from fastapi.openapi.models import Example

EXAMPLES: dict[str, dict[str, Example]] = {
    "event": {
        "order": {
            "summary": "An event with its own id",
            "value": {"name": "order.created", "id": "order-42", "data": {"id": 42, "total": 9.5}},
        }
    },
    "service": {
        "http": {
            "summary": "An HTTP API with a bearer token that also takes webhooks",
            "value": {
                "name": "crm",
                "base_url": "https://crm.example.com/api",
                "auth_type": "bearer",
                "token": "s3cret",
                "inbound_token": "hook-s3cret",
                "max_attempts": 3,
            },
        }
    },
    "service_patch": {
        "timeout": {"summary": "Slower calls", "value": {"timeout": 10}},
        "control": {
            "summary": "Twice the share, at most 10 a second, held at most an hour",
            "value": {"weight": 2, "rate": "10/s", "max_hold": 3600},
        },
        "no_rate": {"summary": "Remove the rate limit", "value": {"rate": None}},
    },
    "rule": {
        "orders": {
            "summary": "Order events to the CRM",
            "value": {
                "event": "order.*",
                "service": "crm",
                "endpoint": "/orders",
                "template": '{"id": {{data.id}}, "event": "{{name}}"}',
            },
        },
        "ordered": {
            "summary": "Urgent, in order per customer",
            "value": {
                "event": "order.*",
                "service": "crm",
                "endpoint": "/orders",
                "priority": 1,
                "order_key": "data.customer_id",
            },
        },
    },
    "rule_patch": {
        "disable": {"summary": "Stop matching", "value": {"enabled": False}},
        "unordered": {"summary": "Stop ordering", "value": {"order_key": None}},
    },
    "replay": {"service": {"summary": "One service's rows", "value": {"service": "crm"}}},
}
