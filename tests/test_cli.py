"""The ``hub`` command, run as a subprocess against the test run's database and Temporal."""

import asyncio
import json

import pytest
from temporalio.service import RPCError, RPCStatusCode

from hub.runtime.embedded import temporal_binary
from tests.cli_runner import assert_one_line_error

TOKEN = "tok-CLI-SECRET-123"


async def test_service_and_rule_lifecycle(cli, sink, unique):
    name = f"{unique}-api"
    added = await cli(
        "service",
        "add",
        name,
        "--url",
        sink.url,
        "--auth-type",
        "bearer",
        "--token",
        TOKEN,
        "--timeout",
        "2",
        "--max-attempts",
        "3",
        "--backoff",
        "0.1",
        "--json",
    )
    assert added.code == 0, added.stderr
    assert added.json()["name"] == name

    listed = await cli("service", "list", "--json")
    [service] = [s for s in listed.json() if s["name"] == name]
    assert service["max_attempts"] == 3
    assert service["timeout"] == 2
    assert service["auth_type"] == "bearer"

    shown = await cli("service", "show", name)
    assert shown.code == 0 and name in shown.stdout

    rule = await cli(
        "rule",
        "add",
        "--event",
        f"{unique}.signup",
        "--service",
        name,
        "--endpoint",
        "/signup",
        "--template",
        '{"email": "{{data.email}}"}',
        "--json",
    )
    assert rule.code == 0, rule.stderr
    rule_id = rule.json()["id"]
    assert [r["id"] for r in (await cli("rule", "list", "--service", name, "--json")).json()] == [
        rule_id
    ]
    assert (await cli("rule", "show", str(rule_id), "--json")).json()["endpoint"] == "/signup"

    refused = await cli("service", "delete", name)
    assert_one_line_error(refused, "1 rule")
    assert (await cli("rule", "delete", str(rule_id))).code == 0
    assert (await cli("service", "delete", name)).code == 0
    assert name not in (await cli("service", "list")).stdout


async def test_emit_wait_delivers_and_shows_in_logs(cli, sink, unique):
    name = f"{unique}-emit"
    assert (await cli("service", "add", name, "--url", sink.url)).code == 0
    assert (
        await cli(
            "rule",
            "add",
            "--event",
            f"{unique}.paid",
            "--service",
            name,
            "--template",
            '{"amount": {{data.amount}}}',
        )
    ).code == 0

    emitted = await cli(
        "emit",
        f"{unique}.paid",
        "--data",
        '{"amount": 12.5}',
        "--id",
        f"{unique}-e1",
        "--wait",
        "--json",
    )
    assert emitted.code == 0, emitted.stderr
    result = emitted.json()
    assert result["duplicate"] is False
    assert result["result"]["outcome"] == "delivered"
    [request] = sink.received
    assert request.body == b'{"amount": 12.5}'

    again = await cli("emit", f"{unique}.paid", "--id", f"{unique}-e1")
    assert again.code == 0 and "duplicate" in again.stdout

    logs = (await cli("logs", "--event", f"{unique}-e1", "--json")).json()
    assert [(r["status"], r["status_code"], r["service"]) for r in logs] == [("ok", 200, name)]
    table = await cli("logs", "--service", name)
    assert f"{unique}.paid" in table.stdout and "ok 200" in table.stdout

    unmatched = await cli("emit", f"{unique}.nobody-listens")
    assert unmatched.code == 0 and "no enabled rule matches" in unmatched.stdout


async def test_failed_delivery_is_in_dlq_list_and_show(cli, sink, unique):
    name = f"{unique}-dlq"
    sink.script("/fail", then=500)
    assert (
        await cli(
            "service", "add", name, "--url", sink.url, "--max-attempts", "2", "--backoff", "0.1"
        )
    ).code == 0
    assert (
        await cli(
            "rule",
            "add",
            "--event",
            f"{unique}.x",
            "--service",
            name,
            "--endpoint",
            "/fail",
            "--template",
            '{"n": {{data.n}}}',
        )
    ).code == 0

    emitted = await cli(
        "emit", f"{unique}.x", "--data", '{"n": 3}', "--id", f"{unique}-x", "--wait"
    )
    assert emitted.code == 2  # the event was dead-lettered
    assert "dead_lettered" in emitted.stdout

    [row] = (await cli("dlq", "list", "--service", name, "--json")).json()
    assert row["payload"] == '{"n": 3}'
    assert row["attempts"] == 2
    shown = (await cli("dlq", "show", str(row["id"]), "--json")).json()
    assert shown["event"]["data"] == {"n": 3}
    assert "HTTP 500" in shown["error"]


async def test_workflow_is_listed_by_the_temporal_cli(cli, settings, sink, unique):
    name = f"{unique}-vis"
    assert (await cli("service", "add", name, "--url", sink.url)).code == 0
    assert (await cli("rule", "add", "--event", f"{unique}.seen", "--service", name)).code == 0
    assert (await cli("emit", f"{unique}.seen", "--id", f"{unique}-seen", "--wait")).code == 0

    for _ in range(50):
        process = await asyncio.create_subprocess_exec(
            temporal_binary(),
            "workflow",
            "list",
            "--address",
            settings.temporal_address,
            "-q",
            f"HubEventName='{unique}.seen'",
            "-o",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, _ = await process.communicate()
        if f"event-{unique}-seen" in stdout.decode():
            break
        await asyncio.sleep(0.2)
    assert f"event-{unique}-seen" in stdout.decode()


async def test_template_preview(cli):
    run = await cli(
        "template",
        "preview",
        "--template",
        '{"who": "{{data.name}}", "n": {{data.n}}}',
        "--data",
        '{"name": "Zoë \\"Z\\"", "n": 2}',
    )
    assert run.code == 0
    assert run.stdout.strip() == '{"who": "Zoë \\"Z\\"", "n": 2}'


async def test_bad_input_gives_one_line_and_writes_nothing(cli, sink, unique):
    before = (await cli("service", "list", "--json")).json()
    cases = [
        (("service", "add", f"{unique}-u", "--url", "not a url"), "invalid URL"),
        (("service", "add", f"{unique}-u", "--url", "ftp://x"), "invalid URL"),
        (
            ("service", "add", f"{unique}-m", "--url", sink.url, "--max-attempts", "7"),
            "max_attempts",
        ),
        (
            ("service", "add", f"{unique}-a", "--url", sink.url, "--auth-type", "bearer"),
            "needs a token",
        ),
        # Printed literally: rich markup would eat the [...] of the pattern.
        (("service", "add", "Bad Name", "--url", sink.url), "'^[a-z0-9][a-z0-9_.-]{0,62}$'"),
    ]
    for args, fragment in cases:
        assert_one_line_error(await cli(*args), fragment)
    assert (await cli("service", "list", "--json")).json() == before

    name = f"{unique}-ok"
    assert (await cli("service", "add", name, "--url", sink.url)).code == 0
    assert_one_line_error(await cli("service", "add", name, "--url", sink.url), "already exists")
    rules_before = (await cli("rule", "list", "--json")).json()
    rule_cases = [
        (("rule", "add", "--event", "e", "--service", f"{unique}-nope"), "no service named"),
        (
            ("rule", "add", "--event", "e", "--service", name, "--template", '{"a": {{data.a}}'),
            "invalid JSON",
        ),
        (
            (
                "rule",
                "add",
                "--event",
                "e",
                "--service",
                name,
                "--method",
                "GET",
                "--template",
                "[1]",
            ),
            "JSON object",
        ),
        (
            ("rule", "add", "--event", "e", "--service", name, "--template", "@/nonexistent.json"),
            "cannot read template file",
        ),
    ]
    for args, fragment in rule_cases:
        assert_one_line_error(await cli(*args), fragment)
    assert (await cli("rule", "list", "--json")).json() == rules_before

    assert_one_line_error(await cli("emit", "x", "--data", "{not json"), "not valid JSON")
    assert_one_line_error(await cli("emit", "x", "--data", "[1, 2]"), "JSON object")
    assert_one_line_error(await cli("emit", "has space"), "name")
    assert_one_line_error(await cli("dlq", "show", "999999"), "no DLQ entry")
    assert_one_line_error(await cli("rule", "show", "999999"), "no rule")


async def test_token_never_printed(cli, sink, unique):
    name = f"{unique}-secret"
    add = await cli(
        "service",
        "add",
        name,
        "--url",
        sink.url,
        "--auth-type",
        "apikey",
        "--token",
        TOKEN,
        "--json",
    )
    outputs = [add]
    outputs.append(await cli("service", "list", "--json"))
    outputs.append(await cli("service", "list"))
    outputs.append(await cli("service", "show", name))
    outputs.append(await cli("service", "show", name, "--json"))
    outputs.append(
        await cli(
            "service", "add", name, "--url", sink.url, "--auth-type", "apikey", "--token", TOKEN
        )
    )
    for run in outputs:
        assert TOKEN not in run.stdout + run.stderr
    assert add.json()["token"] == "**********"


async def test_circuit_list_and_reset(cli, sink, unique):
    name = f"{unique}-cb"
    sink.script("/cb", then=503)
    assert (
        await cli(
            "service",
            "add",
            name,
            "--url",
            sink.url,
            "--max-attempts",
            "1",
            "--cb-threshold",
            "1",
            "--cb-cooldown",
            "120",
        )
    ).code == 0
    assert (
        await cli("rule", "add", "--event", f"{unique}.cb", "--service", name, "--endpoint", "/cb")
    ).code == 0
    assert (await cli("emit", f"{unique}.cb", "--wait")).code == 2

    [circuit] = [c for c in (await cli("circuit", "list", "--json")).json() if c["service"] == name]
    assert circuit["state"] == "open"
    assert circuit["failures"] == 1
    assert 100 < circuit["retry_in"] <= 120
    assert name in (await cli("circuit", "list")).stdout

    assert_one_line_error(await cli("circuit", "reset"), "--all")
    assert_one_line_error(await cli("circuit", "reset", f"{unique}-nope"), "no service")
    reset = await cli("circuit", "reset", name)
    assert reset.code == 0 and "reset 1 circuit" in reset.stdout
    [circuit] = [c for c in (await cli("circuit", "list", "--json")).json() if c["service"] == name]
    assert (circuit["state"], circuit["failures"]) == ("closed", 0)
    assert (await cli("circuit", "reset", "--all")).code == 0


async def test_amqp_service_and_responses_consume(cli, unique):
    url = f"amqp://guest:guest@127.0.0.1:5672/?routing_key={unique}-q"
    added = await cli(
        "service",
        "add",
        f"{unique}-mq",
        "--type",
        "amqp",
        "--url",
        url,
        "--response-queue",
        f"{unique}-replies",
        "--json",
    )
    assert added.code == 0, added.stderr
    listing = (await cli("service", "list")).stdout
    assert f"{unique}-mq" in listing and "guest:***@" in listing and "guest:guest" not in listing

    run = await cli("responses", "consume", "--json")
    assert run.code == 0, run.stderr
    [mine] = [r for r in run.json()["results"] if r["service"] == f"{unique}-mq"]
    assert mine == {
        "service": f"{unique}-mq",
        "queue": f"{unique}-replies",
        "consumed": 0,
        "rejected": 0,
        "error": None,
    }
    assert_one_line_error(
        await cli("service", "add", f"{unique}-bad", "--type", "amqp", "--url", "http://x"),
        "amqp://",
    )


async def test_service_and_rule_updates(cli, sink, unique):
    name = f"{unique}-upd"
    assert (await cli("service", "add", name, "--url", sink.url)).code == 0
    updated = await cli(
        "service",
        "update",
        name,
        "--timeout",
        "9",
        "--auth-type",
        "bearer",
        "--token",
        TOKEN,
        "--max-attempts",
        "2",
        "--json",
    )
    assert updated.code == 0, updated.stderr
    assert (updated.json()["timeout"], updated.json()["max_attempts"]) == (9, 2)
    assert TOKEN not in updated.stdout
    # Only what was given changed; an inconsistent change is refused whole.
    assert_one_line_error(
        await cli("service", "update", name, "--max-attempts", "9"), "max_attempts"
    )
    assert_one_line_error(await cli("service", "update", name, "--url", "ftp://x"), "invalid URL")
    shown = (await cli("service", "show", name, "--json")).json()
    assert (shown["timeout"], shown["max_attempts"], shown["base_url"]) == (9, 2, sink.url)
    assert (await cli("service", "disable", name)).code == 0
    assert (await cli("service", "show", name, "--json")).json()["enabled"] is False
    assert (await cli("service", "enable", name)).code == 0

    rule_id = str(
        (await cli("rule", "add", "--event", f"{unique}.a", "--service", name, "--json")).json()[
            "id"
        ]
    )
    changed = await cli(
        "rule",
        "update",
        rule_id,
        "--endpoint",
        "/new",
        "--method",
        "put",
        "--template",
        '{"v": {{data.v}}}',
        "--json",
    )
    assert changed.code == 0, changed.stderr
    assert (changed.json()["endpoint"], changed.json()["method"]) == ("/new", "PUT")
    assert_one_line_error(
        await cli("rule", "update", rule_id, "--template", '{"v": '), "invalid JSON"
    )
    assert_one_line_error(await cli("rule", "update", rule_id, "--service", "nope-x"), "no service")
    assert (await cli("rule", "disable", rule_id)).code == 0
    assert (await cli("rule", "show", rule_id, "--json")).json()["enabled"] is False
    emitted = await cli("emit", f"{unique}.a", "--data", '{"v": 1}')
    assert "no enabled rule matches" in emitted.stdout
    assert (await cli("rule", "enable", rule_id)).code == 0
    assert (await cli("emit", f"{unique}.a", "--data", '{"v": 1}', "--wait")).code == 0
    [request] = sink.at("/new")
    assert (request.method, request.body) == ("PUT", b'{"v": 1}')


async def test_dlq_replay_resends_the_stored_bytes(cli, store, sink, unique):
    name = f"{unique}-rp"
    sink.script("/rp", then=500)
    assert (await cli("service", "add", name, "--url", sink.url, "--max-attempts", "1")).code == 0
    rule_id = (
        await cli(
            "rule",
            "add",
            "--event",
            f"{unique}.rp",
            "--service",
            name,
            "--endpoint",
            "/rp",
            "--template",
            '{"v": {{data.v}}, "s": "{{data.s}}"}',
            "--json",
        )
    ).json()["id"]
    for i in range(3):
        assert (
            await cli("emit", f"{unique}.rp", "--data", f'{{"v": {i}, "s": "é{i}"}}', "--wait")
        ).code == 2
    rows = (await cli("dlq", "list", "--service", name, "--json")).json()
    assert len(rows) == 3
    first = rows[-1]
    # The template changes after the failure: a replay must not re-render.
    assert (await cli("rule", "update", str(rule_id), "--template", '{"changed": 1}')).code == 0

    still_down = await cli("dlq", "replay", str(first["id"]))
    assert still_down.code == 2 and "failed again" in still_down.stderr
    kept = await store.dlq.get(first["id"])
    assert kept.resolved_at is None and kept.replay_count == 1 and "HTTP 500" in kept.error

    sink.script("/rp", then=200)
    fixed = await cli("dlq", "replay", str(first["id"]), "--json")
    assert fixed.code == 0, fixed.stderr
    assert fixed.json()["delivered"] == 1
    assert sink.at("/rp")[-1].body == first["payload"].encode()
    assert first["payload"] == '{"v": 0, "s": "é0"}'
    resolved = await store.dlq.get(first["id"])
    assert resolved.resolved_at is not None and resolved.replay_count == 2
    again = await cli("dlq", "replay", str(first["id"]), "--json")
    assert again.json()["skipped"] == 1

    bulk = await cli("dlq", "replay", "--all", "--service", name, "--json")
    assert bulk.code == 0, bulk.stderr
    assert bulk.json() == {"requested": 2, "started": 2, "delivered": 2, "failed": 0, "skipped": 0}
    assert (await cli("dlq", "list", "--service", name, "--json")).json() == []
    bodies = sorted(r.body for r in sink.at("/rp") if r.body != b'{"v": 0, "s": "\xc3\xa90"}')
    assert b'{"v": 1, "s": "\xc3\xa91"}' in bodies and b'{"v": 2, "s": "\xc3\xa92"}' in bodies
    assert_one_line_error(await cli("dlq", "replay"), "--all")


async def test_dlq_delete_and_flush(cli, sink, unique):
    name = f"{unique}-fl"
    sink.script("/fl", then=404)
    assert (await cli("service", "add", name, "--url", sink.url)).code == 0
    assert (
        await cli("rule", "add", "--event", f"{unique}.fl", "--service", name, "--endpoint", "/fl")
    ).code == 0
    for _ in range(2):
        assert (await cli("emit", f"{unique}.fl", "--wait")).code == 2
    first, second = (await cli("dlq", "list", "--service", name, "--json")).json()
    assert (await cli("dlq", "delete", str(first["id"]))).code == 0
    assert_one_line_error(await cli("dlq", "delete", str(first["id"])), "no DLQ entry")
    assert_one_line_error(await cli("dlq", "flush", "--older-than", "soon"), "invalid duration")
    kept = await cli("dlq", "flush", "--older-than", "1h")
    assert kept.code == 0
    assert [r["id"] for r in (await cli("dlq", "list", "--service", name, "--json")).json()] == [
        second["id"]
    ]
    await asyncio.sleep(1.1)
    assert (await cli("dlq", "flush", "--older-than", "1s")).code == 0
    assert (await cli("dlq", "list", "--service", name, "--json")).json() == []


async def test_emit_refuses_an_event_over_the_size_limit(cli, temporal, sink, unique):
    name = f"{unique}-big"
    assert (await cli("service", "add", name, "--url", sink.url)).code == 0
    assert (await cli("rule", "add", "--event", f"{unique}.big", "--service", name)).code == 0
    small_limit = {"HUB_MAX_EVENT_BYTES": "2048"}

    big = json.dumps({"pad": "x" * 4000})
    refused = await cli(
        "emit", f"{unique}.big", "--data", big, "--id", f"{unique}-big", "--wait", env=small_limit
    )
    assert_one_line_error(refused, "over the limit of 2048 bytes", "HUB_MAX_EVENT_BYTES")
    assert refused.stdout == ""
    with pytest.raises(RPCError) as missing:
        await temporal.get_workflow_handle(f"event-{unique}-big").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    assert sink.received == []

    # The same limit lets a small event through to its delivery.
    small = await cli("emit", f"{unique}.big", "--data", '{"n": 1}', "--wait", env=small_limit)
    assert small.code == 0, small.stderr
    [delivered] = sink.received
    assert json.loads(delivered.body)["data"] == {"n": 1}
