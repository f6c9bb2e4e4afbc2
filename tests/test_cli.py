"""The ``hub`` command, run as a subprocess against the test run's database and Temporal."""

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.devstack import temporal_binary

HUB = str(Path(sys.executable).parent / "hub")
TOKEN = "tok-CLI-SECRET-123"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(settings, worker):
    env = {
        **os.environ,
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_TEMPORAL_ADDRESS": settings.temporal_address,
        "HUB_TASK_QUEUE": settings.task_queue,
        "HUB_SECRET_KEY": settings.secret_key.get_secret_value(),
        "COLUMNS": "200",
    }

    async def run(*args: str) -> Run:
        process = await asyncio.create_subprocess_exec(
            HUB, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        return Run(process.returncode, stdout.decode(), stderr.decode())

    return run


def assert_one_line_error(run: Run, *fragments: str) -> None:
    assert run.code == 1, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0]


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
    assert f"{unique}-e1" in table.stdout

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
        (("service", "add", "Bad Name", "--url", sink.url), "name"),
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
