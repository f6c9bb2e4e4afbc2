"""The egress guard's rules: every address class, HUB_EGRESS_ALLOW (CIDRs and host names,
and the one-line error of a bad entry), refusals when a service is configured, and a
delivery to a refused address dead-lettered without a connection.

Pinning and DNS rebinding are in test_egress_pinning.py.
"""

import asyncio
import os
import sys
from ipaddress import ip_address
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from hub.api import create_app
from hub.config import Settings
from hub.core.egress import EgressPolicy, EgressRefused
from hub.core.models import Outcome, ServiceIn, ServicePatch
from hub.dev.stack import allow_loopback
from hub.store import NotFoundError, Store, StoreError
from tests.raw_server import RawServer

ROOT = Path(__file__).resolve().parent.parent
HUB = str(Path(sys.executable).parent / "hub")
DENY = EgressPolicy()

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("64:ff9b:1::a01:203", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.170", "reserved"),
    ("192.0.2.10", "reserved"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("2001:db8::1", "reserved"),
    ("2001::1", "reserved"),
    ("100::1", "reserved"),
    ("::10.0.0.1", "reserved"),
    ("4000::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback: IPv4-mapped 127.0.0.1"),
    ("::ffff:10.1.2.3", "private: IPv4-mapped 10.1.2.3"),
    ("::ffff:169.254.169.254", "link-local: IPv4-mapped 169.254.169.254"),
    ("::ffff:100.64.0.1", "carrier-grade NAT: IPv4-mapped 100.64.0.1"),
    ("2002:7f00:1::", "loopback: 6to4 of 127.0.0.1"),
    ("2002:a01:203::1", "private: 6to4 of 10.1.2.3"),
    ("2002:a9fe:a9fe::1", "link-local: 6to4 of 169.254.169.254"),
    ("64:ff9b::a01:203", "private: NAT64 of 10.1.2.3"),
    ("64:ff9b::a9fe:a9fe", "link-local: NAT64 of 169.254.169.254"),
    ("64:ff9b::6440:1", "carrier-grade NAT: NAT64 of 100.64.0.1"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "192.0.1.1",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_each_address_class_is_refused_with_its_reason(address, reason):
    assert DENY.refusal(ip_address(address)) == reason
    with pytest.raises(EgressRefused) as refused:
        DENY.check(ip_address(address), "x.example")
    assert (
        str(refused.value) == f"egress refused: {ip_address(address)} ({reason}) for host x.example"
    )


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert DENY.refusal(ip_address(address)) is None
    DENY.check(ip_address(address), "x.example")


def test_the_message_names_the_address_reason_and_host():
    with pytest.raises(
        EgressRefused, match=r"^egress refused: 10\.1\.2\.3 \(private\) for host x$"
    ):
        DENY.check(ip_address("10.1.2.3"), "x")
    with pytest.raises(EgressRefused, match=r"^egress refused: 10\.1\.2\.3 \(private\)$"):
        DENY.check_url("http://10.1.2.3:8080/hook")


def test_an_allowed_cidr_lifts_the_refusal_inside_it_only():
    policy = EgressPolicy.parse("10.0.0.0/8, fd00::/8 169.254.169.254")
    for allowed in ("10.1.2.3", "::ffff:10.1.2.3", "2002:a01:203::1", "64:ff9b::a01:203"):
        assert policy.refusal(ip_address(allowed)) is None, allowed
    assert policy.refusal(ip_address("fd12::1")) is None
    assert policy.refusal(ip_address("169.254.169.254")) is None
    assert policy.refusal(ip_address("169.254.169.253")) == "link-local"
    assert policy.refusal(ip_address("11.0.0.1")) is None
    assert policy.refusal(ip_address("192.168.1.1")) == "private"
    assert policy.refusal(ip_address("fc00::1")) == "private"
    assert policy.refusal(ip_address("127.0.0.1")) == "loopback"


def test_allowed_host_names_match_exactly_or_below_a_wildcard():
    policy = EgressPolicy.parse("RabbitMQ *.svc.cluster.local")
    assert policy.allows_host("rabbitmq")
    assert policy.allows_host("rabbitmq.")
    assert policy.allows_host("orders.ns.svc.cluster.local")
    assert not policy.allows_host("svc.cluster.local")
    assert not policy.allows_host("rabbitmq.evil.example")
    assert not policy.allows_host("evil-rabbitmq")
    # A host name on the list says nothing about a literal address.
    with pytest.raises(EgressRefused):
        policy.check_url("amqp://guest:guest@10.0.0.5:5672/")


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("10.0.0.0/33", "not a valid CIDR"),
        ("10.0.0.1/8", "has host bits set"),
        ("300.1.2.3", "not a valid CIDR"),
        ("fe80::zz", "not a valid CIDR"),
        ("http://rabbitmq", "not a valid CIDR"),
        ("a..b", "neither a CIDR nor a host name"),
        ("-lead.example", "neither a CIDR nor a host name"),
    ],
)
def test_a_bad_entry_is_a_one_line_error(entry, says):
    with pytest.raises(ValueError, match=says) as bad:
        EgressPolicy.parse(f"127.0.0.1 {entry} rabbitmq")
    assert "\n" not in str(bad.value)
    with pytest.raises(ValidationError):
        Settings(egress_allow=f"127.0.0.1, {entry}")


@pytest.mark.parametrize(
    "command", [[HUB, "service", "list"], [HUB, "worker"], [sys.executable, "worker.py"]]
)
async def test_a_bad_cidr_stops_the_cli_and_the_worker_with_one_line(command):
    env = {**os.environ, "HUB_EGRESS_ALLOW": "127.0.0.1, 10.0.0.0/33"}
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: egress_allow: not a valid CIDR: ")
    assert "10.0.0.0/33" in lines[0]


def test_hub_dev_allows_loopback_and_says_so_in_one_line():
    said: list[str] = []
    policy = EgressPolicy.parse(allow_loopback("rabbitmq", said.append))
    assert policy.refusal(ip_address("127.0.0.1")) is None
    assert policy.refusal(ip_address("127.0.0.2")) is None
    assert policy.refusal(ip_address("::1")) is None
    assert policy.allows_host("rabbitmq")
    assert policy.refusal(ip_address("10.0.0.1")) == "private"
    assert said == [
        "egress: hub dev allows loopback (127.0.0.0/8, ::1); "
        "hub worker and hub api refuse it unless HUB_EGRESS_ALLOW lists it"
    ]


# configuration time


async def test_a_refused_literal_address_is_not_stored(store, unique):
    with pytest.raises(StoreError, match=r"^egress refused: 10\.1\.2\.3 \(private\)$"):
        await store.services.create(ServiceIn(name=f"{unique}-a", base_url="http://10.1.2.3/"))
    with pytest.raises(NotFoundError):
        await store.services.get(f"{unique}-a")
    amqp = ServiceIn(name=f"{unique}-b", type="amqp", base_url="amqp://u:p@[::ffff:100.64.0.9]/")
    with pytest.raises(StoreError, match=r"carrier-grade NAT: IPv4-mapped 100\.64\.0\.9"):
        await store.services.create(amqp)


async def test_an_update_to_a_refused_literal_changes_nothing(store, make_service):
    service = await make_service()
    with pytest.raises(StoreError, match=r"^egress refused: 169\.254\.169\.254 \(link-local\)$"):
        await store.services.update(
            service.name, ServicePatch(base_url="http://169.254.169.254/latest/meta-data")
        )
    assert (await store.services.get(service.name)).base_url == service.base_url


async def test_allowed_literals_and_host_names_are_stored(store, unique):
    allowing = Store(store.pool, store.box, EgressPolicy.parse("10.0.0.0/8"))
    made = await allowing.services.create(
        ServiceIn(name=f"{unique}-ok", base_url="http://10.1.2.3:8080/")
    )
    assert made.base_url == "http://10.1.2.3:8080/"
    # Names are not resolved here; a delivery checks what they resolve to.
    named = await store.services.create(
        ServiceIn(name=f"{unique}-name", base_url="http://internal.invalid/")
    )
    assert named.base_url == "http://internal.invalid/"


async def test_the_api_refuses_a_literal_address_with_a_400(settings, store, temporal, unique):
    token = "t" * 20
    app_settings = settings.model_copy(update={"api_token": SecretStr(token)})
    app = create_app(app_settings, store=store, temporal=temporal)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as api,
    ):
        body = {"name": f"{unique}-api", "base_url": "http://[fd00::1]:9000/"}
        created = await api.post("/services", json=body)
        missing = await api.get(f"/services/{unique}-api")

    assert created.status_code == 400, created.text
    assert created.json() == {"detail": "egress refused: fd00::1 (private)"}
    assert missing.status_code == 404


async def test_the_cli_refuses_a_literal_address_with_one_line(settings, worker, unique):
    env = {
        **os.environ,
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_SECRET_KEY": settings.secret_key.get_secret_value(),
    }
    args = ["service", "add", f"{unique}-cli", "--url", "http://192.168.0.10/"]
    process = await asyncio.create_subprocess_exec(
        HUB, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert stderr.decode().strip() == "error: egress refused: 192.168.0.10 (private)"


# delivery time


async def test_a_refused_address_is_dead_lettered_without_a_connection(
    hub, store, make_service, make_rule, unique
):
    """127.0.0.2 is loopback, and the session allows only 127.0.0.1: a listener there must
    never see a connection. The URL is written by SQL, as a row older than the check would be."""
    async with RawServer(host="127.0.0.2") as listener:
        service = await make_service(max_attempts=3)
        await make_rule(f"{unique}.refused", service)
        with pytest.raises(StoreError) as at_config:
            await store.services.update(service.name, ServicePatch(base_url=listener.url))
        await store.pool.execute(
            "UPDATE services SET base_url = $1 WHERE id = $2", listener.url, service.id
        )
        await hub.index.refresh(min_version=await store.rules.config_version())
        result = await hub.emit(f"{unique}.refused", {}, event_id=f"{unique}-x", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-x")
    assert dead.error == str(at_config.value) == "egress refused: 127.0.0.2 (loopback)"
    assert dead.attempts == 1  # not retryable
    assert listener.connections == 0
    [circuit] = [c for c in await store.circuits.all() if c.service == service.name]
    assert circuit.failures == 0  # the service is not at fault: the breaker does not count it


async def test_a_refused_broker_is_dead_lettered_without_a_connection(
    hub, store, make_service, make_rule, unique
):
    async with RawServer(host="127.0.0.2") as listener:
        url = f"amqp://127.0.0.2:{listener.port}/?routing_key=q"
        service = await make_service(type="amqp", base_url="amqp://127.0.0.1/")
        await make_rule(f"{unique}.broker", service)
        await store.pool.execute("UPDATE services SET base_url = $1 WHERE id = $2", url, service.id)
        await hub.index.refresh(min_version=await store.rules.config_version())
        result = await hub.emit(f"{unique}.broker", {}, event_id=f"{unique}-q", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-q")
    assert dead.error == "egress refused: 127.0.0.2 (loopback)"
    assert dead.attempts == 1
    assert listener.connections == 0
