"""Pinning: a connection goes to the address the guard checked, resolved once, while the
Host header and TLS (SNI and certificate verification) keep the host name; so a resolver
that changes its answer (DNS rebinding) cannot slip a refused address through.

Resolvers here are the guard's hook: names under .test exist only in them, so a request that
reached its server can only have gone to the address the hook gave and the guard checked.
All traffic stays on 127.0.0.1; the refused answers (public or 127.0.0.2) are never dialled.
"""

import asyncio
from collections.abc import Sequence

import aiormq
import pytest
from aiormq.abc import SSLCerts
from yarl import URL

from hub.core.egress import EgressPolicy, EgressRefused
from hub.engine.worker import http_client
from hub.transport.amqp import AmqpPool
from hub.transport.egress import EgressGuard, GuardedTcp
from hub.transport.http import HttpCall
from tests.raw_server import RawServer, certificate, server_tls

PUBLIC = "93.184.215.14"


class Answers:
    """A resolver hook: each name answers from its list, one answer per lookup, the last
    repeated; ``asked`` records every lookup."""

    def __init__(self, **answers: list[list[str]]) -> None:
        self._answers = {name.replace("_", "."): list(seq) for name, seq in answers.items()}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        queue = self._answers.get(host)
        if not queue:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return queue.pop(0) if len(queue) > 1 else queue[0]


# the guard on its own (no connection is made)


async def test_a_public_answer_then_a_loopback_one_is_refused_at_the_second_lookup():
    answers = Answers(rebind_example=[[PUBLIC], ["127.0.0.1"]])
    guard = EgressGuard(EgressPolicy(), answers)

    assert await guard.addresses("rebind.example", 443) == [PUBLIC]
    with pytest.raises(EgressRefused) as refused:
        await guard.addresses("rebind.example", 443)
    assert str(refused.value) == "egress refused: 127.0.0.1 (loopback) for host rebind.example"
    # One lookup per connection: what was checked is what a connection gets.
    assert answers.asked == ["rebind.example", "rebind.example"]


async def test_one_refused_answer_among_several_refuses_the_host():
    answers = Answers(split_example=[[PUBLIC, "127.0.0.1", "2606:4700::1"]])
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 \(loopback\) for host split\.example"):
        await EgressGuard(EgressPolicy(), answers).addresses("split.example", 80)


async def test_literal_addresses_are_checked_without_a_lookup():
    answers = Answers()
    guard = EgressGuard(EgressPolicy(), answers)
    assert await guard.addresses(PUBLIC, 80) == [PUBLIC]
    with pytest.raises(EgressRefused, match=r"^egress refused: fe80::1 \(link-local\)$"):
        await guard.addresses("fe80::1", 80)
    assert answers.asked == []


async def test_an_allowed_host_name_passes_whatever_it_resolves_to():
    answers = Answers(rabbitmq=[["172.18.0.5"]], other=[["172.18.0.5"]])
    guard = EgressGuard(EgressPolicy.parse("rabbitmq"), answers)
    assert await guard.addresses("rabbitmq", 5672) == ["172.18.0.5"]
    with pytest.raises(EgressRefused, match=r"172\.18\.0\.5 \(private\) for host other"):
        await guard.addresses("other", 5672)


# HTTP


async def test_http_goes_to_the_checked_address_with_the_host_name(settings, sink):
    # The session allows 127.0.0.1 only; the second answer (127.0.0.2) is refused.
    answers = Answers(pinned_test=[["127.0.0.1"], ["127.0.0.2"]])
    url = f"http://pinned.test:{sink.port}/pinned"
    async with http_client(settings, EgressGuard(settings.egress_policy, answers)) as client:
        first = await HttpCall(client, client.build_request("POST", url, content=b"{}"), 5).send()
        again = await HttpCall(client, client.build_request("POST", url, content=b"{}"), 5).send()
    async with http_client(settings, EgressGuard(settings.egress_policy, answers)) as client:
        later = await HttpCall(client, client.build_request("POST", url, content=b"{}"), 5).send()

    assert (first.status_code, first.error) == (200, None)
    assert (again.status_code, again.error) == (200, None)
    assert [r.headers["host"] for r in sink.at("/pinned")] == [f"pinned.test:{sink.port}"] * 2
    # The pooled connection was checked once, when it was opened.
    assert answers.asked == ["pinned.test", "pinned.test"]
    # A new connection looks up again and is refused: no retry, breaker untouched.
    assert later.error == "egress refused: 127.0.0.2 (loopback) for host pinned.test"
    assert (later.retryable, later.healthy, later.status_code) == (False, True, None)
    assert len(sink.at("/pinned")) == 2


async def test_https_verifies_and_names_the_host_while_connecting_to_the_address(
    settings, tmp_path, monkeypatch
):
    cert, key = certificate("secure.test", tmp_path)
    wrong_cert, wrong_key = certificate("other.test", tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's trust store: this CA only
    answers = Answers(secure_test=[["127.0.0.1"]])
    guard = EgressGuard(settings.egress_policy, answers)
    async with RawServer(tls=server_tls(cert, key)) as good, http_client(settings, guard) as client:
        url = f"https://secure.test:{good.port}/"
        sent = await HttpCall(client, client.build_request("POST", url, content=b"{}"), 5).send()
    async with (
        RawServer(tls=server_tls(wrong_cert, wrong_key)) as impostor,
        http_client(settings, guard) as client,
    ):
        url = f"https://secure.test:{impostor.port}/"
        refused = await HttpCall(client, client.build_request("GET", url), 5).send()

    assert (sent.status_code, sent.error) == (200, None)
    assert good.server_names == ["secure.test"]  # SNI
    assert good.requests[0]["host"] == f"secure.test:{good.port}"
    # The certificate is checked against the name, not the address dialled.
    assert refused.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in (refused.error or "")
    assert impostor.requests == []


# AMQP


async def test_amqp_connects_to_the_checked_address_of_the_broker_name(settings):
    answers = Answers(broker_test=[["127.0.0.1"]], evil_test=[["127.0.0.2"]])
    pool = AmqpPool(EgressGuard(settings.egress_policy, answers))
    try:
        channel = await pool.channel("amqp://guest:guest@broker.test:5672/", connect_timeout=5)
        assert not channel.is_closed
        assert pool.connections_opened == 1
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.2 \(loopback\) for host evil\.test"):
            await pool.channel("amqp://guest:guest@evil.test:5672/", connect_timeout=5)
    finally:
        await pool.close()
    # Checked once before connecting, and the connection used that answer.
    assert answers.asked == ["broker.test", "evil.test"]
    assert pool.connections_opened == 1


async def test_a_broker_reconnection_is_checked_again(settings):
    answers = Answers(broker_test=[["127.0.0.2"]])
    factory = GuardedTcp(EgressGuard(settings.egress_policy, answers))
    provider = aiormq.SSLContextProvider(
        ssl_context=None, ssl_certs=SSLCerts(None, None, None, None, None, True), loop=None
    )
    with pytest.raises(
        aiormq.exceptions.AMQPConnectionError, match=r"egress refused: 127\.0\.0\.2"
    ):
        await factory.create(URL("amqp://broker.test:5672/"), ssl_context_provider=provider)
    assert answers.asked == ["broker.test"]


async def test_amqps_names_and_verifies_the_broker_host_on_the_checked_address(settings, tmp_path):
    cert, key = certificate("broker.test", tmp_path)
    answers = Answers(broker_test=[["127.0.0.1"]])
    factory = GuardedTcp(EgressGuard(settings.egress_policy, answers))
    # What aiormq builds from an amqps:// URL with ?cafile=...
    certs = SSLCerts(cafile=str(cert), capath=None, cadata=None, key=None, cert=None, verify=True)
    provider = aiormq.SSLContextProvider(
        ssl_context=None, ssl_certs=certs, loop=asyncio.get_running_loop()
    )
    async with RawServer(tls=server_tls(cert, key)) as broker:
        url = URL(f"amqps://broker.test:{broker.port}/")
        _, writer = await factory.create(url, ssl_context_provider=provider)
        peer = writer.get_extra_info("peername")
        writer.close()

    assert peer[0] == "127.0.0.1"
    assert broker.server_names == ["broker.test"]
    assert writer.get_extra_info("ssl_object").server_hostname == "broker.test"
