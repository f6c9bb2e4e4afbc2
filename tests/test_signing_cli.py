"""``hub service`` signing options, and secret option values from stdin or the environment,
run as a subprocess against the test run's database and Temporal."""

import standardwebhooks

from hub.core.models import Outcome
from tests.cli_runner import Run
from tests.cli_runner import assert_one_line_error as one_line_error


def issued(run: Run, label: str) -> str:
    """The value printed after ``label:`` (the one time a secret is shown)."""
    assert run.code == 0, run
    [line] = [line for line in run.stdout.splitlines() if line.startswith(label)]
    return line.split(": ", 1)[1].strip()


async def test_sign_rotate_and_show_never_print_a_secret_twice(cli, sink, unique):
    name = f"{unique}-cs"
    added = await cli("service", "add", name, "--url", sink.url, "--sign")
    secret = issued(added, "signing secret")
    assert secret.startswith("whsec_") and f"added service {name}" in added.stdout
    rotated = await cli("service", "rotate-secret", name, "--grace", "2h")
    second = issued(rotated, "signing secret")
    assert second.startswith("whsec_") and second != secret

    shown = await cli("service", "show", name)
    keys = next(line for line in shown.stdout.splitlines() if line.startswith("signing_keys"))
    assert keys.count("hmac created") == 2 and "current" in keys and "expires" in keys
    as_json = (await cli("service", "show", name, "--json")).json()
    assert [k["expires_at"] is None for k in as_json["signing_keys"]] == [True, False]
    assert all(
        set(k) == {"id", "scheme", "public_key", "created_at", "expires_at"}
        for k in as_json["signing_keys"]
    )
    listed = await cli("service", "list", "--json")
    for run in (shown, listed, await cli("service", "show", name, "--json")):
        assert secret not in run.stdout and second not in run.stdout

    updated = await cli("service", "update", name, "--sign", "hmac", "--timeout", "7")
    assert updated.code == 0 and "signing secret" not in updated.stdout  # already signs
    off = await cli("service", "update", name, "--no-sign", "--json")
    assert off.json()["signing_keys"] == [] and "signing_secret" not in off.json()
    one_line_error(await cli("service", "rotate-secret", name), "does not sign")
    again = await cli("service", "update", name, "--sign", "--json")
    assert again.json()["signing_secret"].startswith("whsec_")


async def test_ed25519_public_key(cli, sink, unique):
    name = f"{unique}-ed"
    added = await cli("service", "add", name, "--sign", "ed25519", "--url", sink.url)
    public = issued(added, "public key")
    assert public.startswith("whpk_") and "whsk_" not in added.stdout
    shown = await cli("service", "show", name, "--public-key")
    assert shown.code == 0 and shown.stdout.strip() == public
    rotated = await cli("service", "rotate-secret", name, "--json")
    assert rotated.json()["signing_secret"].startswith("whpk_")
    both = await cli("service", "show", name, "--public-key")
    assert both.stdout.split() == [rotated.json()["signing_secret"], public]
    plain = f"{unique}-plain"
    assert (await cli("service", "add", plain, "--url", sink.url)).code == 0
    one_line_error(await cli("service", "show", plain, "--public-key"), "no public key")


async def test_bad_signing_input_is_one_line_and_changes_nothing(cli, sink, unique):
    name = f"{unique}-bad"
    assert (await cli("service", "add", name, "--url", sink.url)).code == 0
    before = (await cli("service", "show", name, "--json")).json()
    for args, fragment in [
        (("--inbound-secret", "whsec_!!notbase64"), "not base64"),
        (("--inbound-secret", "hunter2-plain"), "must start with whsec_"),
        (("--inbound-secret", "whsec_c2hvcnQ="), "24 to 64 bytes"),
        (("--sign", "rsa"), "unknown signing scheme 'rsa'"),
        (("--sign", "--no-sign"), "cannot be given together"),
    ]:
        run = await cli("service", "update", name, *args)
        one_line_error(run, fragment)
        assert "hunter2" not in run.stderr and "!!notbase64" not in run.stderr
    one_line_error(await cli("service", "rotate-secret", name, "--grace", "soon"), "duration")
    one_line_error(await cli("service", "rotate-secret", name, "--grace", "60d"), "30 days")
    assert (await cli("service", "show", name, "--json")).json() == before
    refused = await cli("service", "add", f"{name}2", "--url", sink.url, "--sign", "hmac256")
    one_line_error(refused, "unknown signing scheme")
    assert (await cli("service", "show", f"{name}2")).code == 1


async def test_secret_values_from_stdin_and_the_environment(cli, hub, store, sink, unique):
    name = f"{unique}-in"
    inbound_secret = "whsec_" + "A" * 43 + "="
    added = await cli(
        "service",
        "add",
        name,
        "--url",
        "env:HUB_TEST_SINK_URL",
        "--auth-type",
        "bearer",
        "--token",
        "-",
        "--inbound-token",
        "env:HUB_TEST_INBOUND",
        "--inbound-secret",
        inbound_secret,
        "--sign",
        stdin="tok-from-stdin-42\nignored\n",
        env={"HUB_TEST_SINK_URL": sink.url, "HUB_TEST_INBOUND": "inbound-from-env"},
    )
    secret = issued(added, "signing secret")
    service = await store.services.get(name)
    assert service.base_url == sink.url
    assert store.box.inbound_token(service) == "inbound-from-env"
    assert service.inbound_secret is not None
    rule = await cli(
        "rule", "add", "--event", f"{unique}.in", "--service", name, "--endpoint", "/in"
    )
    assert rule.code == 0, rule
    await hub.index.refresh(min_version=await store.rules.config_version())
    result = await hub.emit(f"{unique}.in", {"x": 1}, wait=True)
    assert result.result.outcome is Outcome.DELIVERED
    [received] = sink.at("/in")
    assert received.headers["authorization"] == "Bearer tok-from-stdin-42"
    standardwebhooks.Webhook(secret).verify(received.body, received.headers)

    one_line_error(
        await cli(
            "service", "update", name, "--token", "-", "--inbound-token", "-", stdin="a\nb\n"
        ),
        "only one option can read stdin",
    )
    one_line_error(await cli("service", "update", name, "--token", "-"), "stdin is empty")
    one_line_error(
        await cli("service", "update", name, "--url", "env:HUB_TEST_UNSET_VARIABLE"),
        "HUB_TEST_UNSET_VARIABLE is not set",
    )
    assert (await store.services.get(name)).token == service.token
    helped = await cli("service", "update", "--help")
    assert "env:NAME" in helped.stdout and "--no-sign" in helped.stdout
