"""AMQP delivery and response consumption against the real RabbitMQ on 127.0.0.1:5672."""

import asyncio
import json

import aio_pika
import pytest
from temporalio.client import ScheduleOverlapPolicy

from hub.core.models import CircuitState, ConsumeInput, Direction, Outcome
from hub.runtime.embedded import free_port, port_in_use
from workflows.consume import SCHEDULE_ID, ConsumeResponsesWorkflow

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(scope="session")
def broker_up() -> None:
    assert port_in_use(5672), "RabbitMQ must listen on 127.0.0.1:5672 (.ci/run starts it)"


@pytest.fixture
async def channel(broker_up):
    connection = await aio_pika.connect_robust(BROKER)
    async with connection:
        yield await connection.channel()


async def fresh_queue(channel, name: str):
    queue = await channel.declare_queue(name, durable=False, auto_delete=False)
    await queue.purge()
    return queue


async def drain(queue, expected: int, seconds: float = 10) -> list:
    """Read messages (acking them) until `expected` arrived or time ran out."""
    messages = []
    deadline = asyncio.get_running_loop().time() + seconds
    while len(messages) < expected and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        messages.append(message)
    return messages


async def test_publish_by_rule_endpoint_with_message_properties(
    hub, channel, make_service, make_rule, unique
):
    queue = await fresh_queue(channel, f"{unique}-orders")
    service = await make_service(type="amqp", base_url=BROKER, response_queue=f"{unique}-replies")
    await make_rule(
        f"{unique}.order", service, endpoint=f"/{unique}-orders", template='{"n": {{data.n}}}'
    )

    result = await hub.emit(f"{unique}.order", {"n": 1}, event_id=f"{unique}-o1", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    [message] = await drain(queue, 1)
    assert message.body == b'{"n": 1}'
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    delivery_id = result.result.deliveries[0].delivery_id
    assert message.message_id == delivery_id == message.correlation_id
    assert message.reply_to == f"{unique}-replies"
    assert message.headers["x-hub-event-id"] == f"{unique}-o1"
    # The reply queue exists before any consumption run, so an early reply is not dropped.
    await channel.declare_queue(f"{unique}-replies", durable=True, passive=True)


async def test_publish_by_url_routing_key_and_declared_queue(
    hub, channel, make_service, make_rule, unique
):
    keyed = await fresh_queue(channel, f"{unique}-keyed")
    by_key = await make_service(type="amqp", base_url=f"{BROKER}?routing_key={unique}-keyed")
    declared = await make_service(type="amqp", base_url=f"{BROKER}?queue_declare={unique}-decl")
    bound = await make_service(
        type="amqp",
        base_url=f"{BROKER}?exchange=amq.topic&routing_key={unique}.topic&queue_declare={unique}-t",
    )
    for service in (by_key, declared, bound):
        await make_rule(f"{unique}.route", service)

    result = await hub.emit(f"{unique}.route", {"x": 1}, event_id=f"{unique}-rt", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    assert len(await drain(keyed, 1)) == 1
    # The hub declared these two queues (durable); the topic one is bound by its key.
    for name in (f"{unique}-decl", f"{unique}-t"):
        queue = await channel.declare_queue(name, durable=True, passive=True)
        [message] = await drain(queue, 1)
        assert json.loads(message.body)["id"] == f"{unique}-rt"


async def test_unroutable_message_is_retried_then_dead_lettered(
    hub, store, broker_up, make_service, make_rule, unique
):
    service = await make_service(
        type="amqp",
        base_url=f"{BROKER}?exchange=amq.direct&routing_key={unique}-nobody",
        max_attempts=2,
    )
    await make_rule(f"{unique}.lost", service)

    result = await hub.emit(f"{unique}.lost", {}, event_id=f"{unique}-u", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-u")
    assert dead.attempts == 2
    assert "unroutable" in dead.error and "NO_ROUTE" in dead.error
    logs = await store.log.recent(event_id=f"{unique}-u")
    assert sorted(r.attempt for r in logs) == [1, 2]
    assert all(r.method == "PUBLISH" and "amq.direct" in r.target for r in logs)


async def test_still_unroutable_after_declaring_the_queue_again_is_a_failed_attempt(
    hub, store, broker_up, make_service, make_rule, unique
):
    # The URL's queue is declared, but its key leads elsewhere: declaring it again on the
    # NO_ROUTE cannot help, so each attempt publishes twice at most, then fails.
    service = await make_service(
        type="amqp",
        base_url=f"{BROKER}?queue_declare={unique}-decl&routing_key={unique}-elsewhere",
        max_attempts=2,
    )
    await make_rule(f"{unique}.astray", service)

    result = await hub.emit(f"{unique}.astray", {}, event_id=f"{unique}-a", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-a")
    assert dead.attempts == 2
    assert "NO_ROUTE" in dead.error
    assert f"also after declaring queue '{unique}-decl' again" in dead.error
    connection = await aio_pika.connect(BROKER)
    async with connection:
        declared = await (await connection.channel()).get_queue(f"{unique}-decl")
        assert declared.declaration_result.message_count == 0
        await declared.delete(if_unused=False, if_empty=False)


async def test_a_channel_closed_by_the_broker_does_not_fail_the_next_delivery(
    hub, store, channel, make_service, make_rule, unique
):
    queue = await fresh_queue(channel, f"{unique}-next")
    # Publishing to an exchange that does not exist makes the broker close the channel.
    broken = await make_service(
        type="amqp", base_url=f"{BROKER}?exchange={unique}-none&routing_key=x", max_attempts=1
    )
    good = await make_service(type="amqp", base_url=f"{BROKER}?routing_key={queue.name}")
    await make_rule(f"{unique}.bad", broken)
    await make_rule(f"{unique}.good", good)

    bad = await hub.emit(f"{unique}.bad", {}, event_id=f"{unique}-bad", wait=True)
    after = await hub.emit(f"{unique}.good", {}, event_id=f"{unique}-good", wait=True)

    assert bad.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-bad")
    assert "NOT_FOUND" in dead.error
    assert after.result.outcome is Outcome.DELIVERED
    assert len(await drain(queue, 1)) == 1
    [row] = await store.log.recent(event_id=f"{unique}-good")
    assert (row.attempt, row.error) == (1, None)


async def test_broker_down_is_retried_counted_by_the_breaker_then_dead_lettered(
    hub, store, make_service, make_rule, unique
):
    url = f"amqp://guest:hunter2secret@127.0.0.1:{free_port()}/?routing_key=q"
    service = await make_service(
        type="amqp",
        base_url=url,
        max_attempts=3,
        cb_threshold=2,
        cb_cooldown=60,
        timeout=2,
        max_hold=1,
    )
    await make_rule(f"{unique}.down", service)

    result = await hub.emit(f"{unique}.down", {}, event_id=f"{unique}-bd", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-bd")
    assert dead.attempts == 2  # the third met the open circuit: held, then past max hold
    assert "Connect" in dead.error or "refused" in dead.error.lower()
    assert dead.error.startswith("hold expired") and "circuit_open" in dead.error
    logs = await store.log.recent(event_id=f"{unique}-bd")
    assert all("hunter2secret" not in (r.error or "") + (r.target or "") for r in logs)
    [circuit] = [c for c in await store.circuits.all() if c.service == service.name]
    assert circuit.state is CircuitState.OPEN


async def test_one_connection_serves_a_hundred_publishes(
    hub, worker, channel, make_service, make_rule, unique
):
    queue = await fresh_queue(channel, f"{unique}-many")
    service = await make_service(type="amqp", base_url=f"{BROKER}?routing_key={unique}-many")
    await make_rule(f"{unique}.many", service)
    opened_before = worker.amqp.connections_opened

    results = await asyncio.gather(
        *(hub.emit(f"{unique}.many", {"i": i}, wait=True) for i in range(100))
    )

    assert all(r.result.outcome is Outcome.DELIVERED for r in results)
    assert len(await drain(queue, 100)) == 100
    # The worker's connection to this broker already existed or was opened once.
    assert worker.amqp.connections_opened - opened_before <= 1
    assert worker.amqp.connections_opened <= 2  # this broker, and the test's dead port


async def consume_once(temporal, settings, unique: str, run: str):
    return await temporal.execute_workflow(
        ConsumeResponsesWorkflow.run,
        ConsumeInput(max_messages=100),
        id=f"consume-{unique}-{run}",
        task_queue=settings.task_queue,
    )


async def test_responses_are_logged_correlated_and_acked(
    hub, temporal, settings, store, channel, make_service, make_rule, unique
):
    out_queue = await fresh_queue(channel, f"{unique}-req")
    replies = await fresh_queue(channel, f"{unique}-resp")
    service = await make_service(
        type="amqp", base_url=f"{BROKER}?routing_key={unique}-req", response_queue=replies.name
    )
    await make_rule(f"{unique}.ask", service)
    await hub.emit(f"{unique}.ask", {}, event_id=f"{unique}-ask", wait=True)
    [request] = await drain(out_queue, 1)

    await channel.default_exchange.publish(
        aio_pika.Message(b'{"answer": 42}', correlation_id=request.correlation_id),
        routing_key=request.reply_to,
    )
    summary = await consume_once(temporal, settings, unique, "1")

    [mine] = [r for r in summary.results if r.service == service.name]
    assert (mine.consumed, mine.rejected, mine.error) == (1, 0, None)
    [inbound] = await store.log.recent(service=service.name, direction="in")
    assert inbound.direction is Direction.IN
    assert inbound.event_id == f"{unique}-ask"
    assert inbound.delivery_id == request.correlation_id
    assert inbound.response_excerpt == '{"answer": 42}'
    assert await replies.get(fail=False) is None  # acked, not waiting in the queue


async def test_poison_reply_goes_to_dlq_and_does_not_block(
    temporal, settings, store, channel, make_service, unique
):
    replies = await fresh_queue(channel, f"{unique}-resp")
    service = await make_service(type="amqp", base_url=BROKER, response_queue=replies.name)
    for body in (b"<html>not json</html>", b'{"ok": 1}', b'{"ok": 2}'):
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=replies.name)
    # The running index learns of the new service through its notification.
    await asyncio.sleep(0.2)

    summary = await consume_once(temporal, settings, unique, "p")

    [mine] = [r for r in summary.results if r.service == service.name]
    assert (mine.consumed, mine.rejected) == (2, 1)
    dead = await channel.declare_queue(f"{unique}-resp.dlq", durable=True, passive=True)
    [poison] = await drain(dead, 1)
    assert poison.body == b"<html>not json</html>"
    assert "not JSON" in poison.headers["x-hub-error"]
    logs = await store.log.recent(service=service.name, direction="in")
    assert sorted(r.status.value for r in logs) == ["failed", "ok", "ok"]
    assert await replies.get(fail=False) is None


async def test_schedule_exists_after_worker_start(temporal, settings, worker):
    description = await temporal.get_schedule_handle(SCHEDULE_ID).describe()
    assert description.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    [interval] = description.schedule.spec.intervals
    assert interval.every.total_seconds() == 60
    assert description.schedule.action.task_queue == settings.task_queue
