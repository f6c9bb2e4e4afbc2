from datetime import UTC, datetime, timedelta

import httpx
import pytest

from hub.core.models import (
    AuthType,
    Delivery,
    HttpMethod,
    RetrySettings,
    Service,
    ServiceType,
)
from hub.secrets import Credentials
from hub.transport.http import MAX_RETRY_AFTER, build_request, join_url, query_params, retry_after

# --- join_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "endpoint", "expected"),
    [
        ("http://h", "x", "http://h/x"),
        ("http://h", "/x", "http://h/x"),
        ("http://h/", "x", "http://h/x"),
        ("http://h/", "/x", "http://h/x"),
        ("http://h/api/", "/v1/x", "http://h/api/v1/x"),
        ("http://h/api", "v1/x", "http://h/api/v1/x"),
        ("http://h/api/", "/v1/x?a=1", "http://h/api/v1/x?a=1"),
        ("http://h", "", "http://h"),
        ("http://h/", "", "http://h/"),
        ("http://h/api/", "", "http://h/api/"),
    ],
)
def test_join_url(base, endpoint, expected):
    assert join_url(base, endpoint) == expected


# --- retry_after -----------------------------------------------------------------------------

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", timedelta(seconds=3)),
        (" 3 ", timedelta(seconds=3)),
        ("0", timedelta(0)),
        ("Mon, 01 Jan 2024 12:00:30 GMT", timedelta(seconds=30)),
        ("Mon, 01 Jan 2024 12:10:00 GMT", timedelta(minutes=10)),
        ("Mon, 01 Jan 2024 11:59:00 GMT", timedelta(0)),
        ("Sun, 01 Jan 2023 00:00:00 GMT", timedelta(0)),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("86400", MAX_RETRY_AFTER),
        ("3601", MAX_RETRY_AFTER),
        ("3600", timedelta(hours=1)),
        ("Fri, 01 Jan 2100 00:00:00 GMT", MAX_RETRY_AFTER),
    ],
)
def test_retry_after(header, expected):
    assert retry_after(header, now=NOW) == expected


def test_max_retry_after_is_one_hour():
    assert timedelta(hours=1) == MAX_RETRY_AFTER


# --- query_params ----------------------------------------------------------------------------


def test_query_params_encodes_values():
    payload = {
        "s": "a b",
        "empty": "",
        "none": None,
        "int": 1,
        "float": 1.5,
        "t": True,
        "f": False,
        "obj": {"a": 1, "b": [1, 2]},
        "arr": [1, "x"],
    }
    assert query_params(payload) == {
        "s": "a b",
        "empty": "",
        "none": "",
        "int": "1",
        "float": "1.5",
        "t": "true",
        "f": "false",
        "obj": '{"a":1,"b":[1,2]}',
        "arr": '[1,"x"]',
    }


@pytest.mark.parametrize("payload", [[1, 2], "x", 1, None, True])
def test_query_params_rejects_non_objects(payload):
    with pytest.raises(ValueError, match="JSON object"):
        query_params(payload)


# --- build_request ---------------------------------------------------------------------------

CLIENT = httpx.AsyncClient()
STAMP = datetime(2024, 1, 1, tzinfo=UTC)
PAYLOAD = '{"id": 7,  "name": "caf\u00e9",\n "tags": ["a"]}'


def service(auth_type: AuthType = AuthType.NONE, token: str | None = None) -> Service:
    return Service(
        id=1,
        name="svc",
        base_url="http://example.test/api/",
        auth_type=auth_type,
        token=token,
        created_at=STAMP,
        updated_at=STAMP,
    )


def credentials(token: str = "") -> Credentials:
    """The service's URL and token as the SecretBox opens them."""
    return Credentials(url="http://example.test/api/", token=token)


def delivery(method: HttpMethod = HttpMethod.POST, payload: str | None = PAYLOAD) -> Delivery:
    return Delivery(
        id="dlv-123",
        event_id="evt-1",
        event_name="order.created",
        rule_id=2,
        service_id=1,
        service="svc",
        service_type=ServiceType.HTTP,
        method=method,
        endpoint="/orders",
        payload=payload,
        retry=RetrySettings(max_attempts=3, backoff=1.0, timeout=5.0),
    )


def test_get_puts_payload_in_query_string_without_body():
    payload = '{"q": "a b", "n": 1, "flag": true, "none": null}'
    request = build_request(CLIENT, service(), delivery(HttpMethod.GET, payload), 1, credentials())
    assert request.method == "GET"
    assert str(request.url) == "http://example.test/api/orders?q=a+b&n=1&flag=true&none="
    assert request.content == b""
    assert "content-type" not in request.headers


@pytest.mark.parametrize("method", [HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH])
def test_body_methods_send_exact_payload_as_json(method):
    request = build_request(CLIENT, service(), delivery(method), 1, credentials())
    assert request.method == method.value
    assert str(request.url) == "http://example.test/api/orders"
    assert request.content == PAYLOAD.encode()
    assert request.headers["content-type"] == "application/json"


def test_delete_sends_no_body():
    request = build_request(CLIENT, service(), delivery(HttpMethod.DELETE), 1, credentials())
    assert request.method == "DELETE"
    assert str(request.url) == "http://example.test/api/orders"
    assert request.content == b""
    assert "content-type" not in request.headers


@pytest.mark.parametrize(
    ("auth_type", "token", "expected"),
    [
        (AuthType.BEARER, "s3cret", {"authorization": "Bearer s3cret"}),
        (AuthType.APIKEY, "s3cret", {"x-api-key": "s3cret"}),
        (AuthType.NONE, None, {}),
    ],
)
def test_auth_headers(auth_type, token, expected):
    creds = credentials(token or "")
    request = build_request(CLIENT, service(auth_type, token), delivery(), 1, creds)
    auth = {k: v for k, v in request.headers.items() if k in ("authorization", "x-api-key")}
    assert auth == expected


def test_hub_headers():
    request = build_request(CLIENT, service(), delivery(), 3, credentials())
    assert request.headers["idempotency-key"] == "dlv-123"
    assert request.headers["x-hub-event"] == "order.created"
    assert request.headers["x-hub-event-id"] == "evt-1"
    assert request.headers["x-hub-attempt"] == "3"
    assert request.headers["user-agent"].startswith("temporal-hub/")


def test_get_with_array_payload_raises():
    with pytest.raises(ValueError, match="JSON object"):
        build_request(CLIENT, service(), delivery(HttpMethod.GET, "[1, 2]"), 1, credentials())


def test_missing_payload_raises():
    with pytest.raises(ValueError, match="no payload"):
        build_request(CLIENT, service(), delivery(payload=None), 1, credentials())
