"""``hub service``: the HTTP APIs and AMQP brokers that rules deliver to."""

from typing import Annotated, Any

import typer

from hub.cli import delivery_control as control
from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.errors import UsageError
from hub.cli.output import JsonOption, out, print_json
from hub.cli.parsing import given, parse_duration
from hub.cli.secret_input import SECRET_HELP, SignCommand, SignOption, read_secrets
from hub.cli.shared_options import shared_options
from hub.cli.views import TableView, on_off, print_saved
from hub.core.models import AuthType, Service, ServiceIn, ServicePatch, ServiceType, mask_url

group = AsyncTyper(help="External services (HTTP APIs, AMQP brokers).", no_args_is_help=True)

_TABLE: TableView[Service] = TableView(
    "Services",
    [
        "name",
        "type",
        "url",
        "auth",
        "timeout",
        "attempts",
        "backoff",
        "enabled",
        "paused",
        "weight",
        "rate",
    ],
    lambda s: (
        s.name,
        s.type.value,
        mask_url(s.base_url),
        s.auth_type.value,
        s.timeout,
        s.max_attempts,
        s.backoff,
        "yes" if s.enabled else "no",
        "yes" if s.paused_at else "no",
        f"{s.weight:g}",
        s.rate or "-",
    ),
)


# How the options that ``add`` and ``update`` share (see ``_settings``) look in --help.
_AuthType = Annotated[AuthType | None, typer.Option("--auth-type")]
_Token = Annotated[
    str | None, typer.Option(help=f"Bearer token or API key (stored encrypted); {SECRET_HELP}")
]
_Inbound = Annotated[
    str | None, typer.Option(help=f"Token that POST /webhooks/NAME must present; {SECRET_HELP}")
]
_InboundSecret = Annotated[
    str | None,
    typer.Option(
        help="whsec_ secret that verifies signed webhooks (Standard Webhooks) to POST "
        f"/webhooks/NAME; empty removes it; {SECRET_HELP}"
    ),
]
_Sign = Annotated[str | None, SignOption]
_Timeout = Annotated[float | None, typer.Option("--timeout", help="Seconds per attempt.")]
_MaxAttempts = Annotated[int | None, typer.Option(help="Attempts per delivery, 1..5.")]
_Backoff = Annotated[float | None, typer.Option(help="Seconds before the first retry; doubles.")]
_Threshold = Annotated[int | None, typer.Option(help="Failures in a row that open the circuit.")]
_Cooldown = Annotated[float | None, typer.Option(help="Seconds an open circuit waits.")]
_ResponseQueue = Annotated[str | None, typer.Option(help="AMQP queue replies arrive on.")]


def _settings(
    auth_type: _AuthType = None,
    token: _Token = None,
    inbound_token: _Inbound = None,
    inbound_secret: _InboundSecret = None,
    sign: _Sign = None,
    timeout: _Timeout = None,
    max_attempts: _MaxAttempts = None,
    backoff: _Backoff = None,
    cb_threshold: _Threshold = None,
    cb_cooldown: _Cooldown = None,
    response_queue: _ResponseQueue = None,
    weight: control.Weight = None,
    rate: control.RateOpt = None,
    max_hold: control.MaxHold = None,
) -> dict[str, object]:
    """The options ``add`` and ``update`` share, as the service fields the user gave.

    Each parameter is named after its ServiceIn/ServicePatch field, so the fields are
    exactly this function's arguments (``--rate none`` and ``--max-hold 24h`` converted).
    """
    return control.control_fields(given(**locals()))


# The options whose values may come from stdin or the environment, by field.
_SECRET_OPTIONS = {
    "base_url": "--url",
    "token": "--token",
    "inbound_token": "--inbound-token",
    "inbound_secret": "--inbound-secret",
}


def _fields(service: Service) -> dict[str, Any]:
    """``service show`` without secrets: the URL masked, the token only said to be set,
    signing keys by scheme and dates."""
    values = service.model_dump(mode="json")
    values["base_url"] = mask_url(service.base_url)
    values["token"] = "(set)" if service.token else "(none)"
    values["inbound_secret"] = "(set)" if service.inbound_secret else "(none)"
    values["signing_keys"] = "; ".join(_key_line(k) for k in values["signing_keys"]) or "(none)"
    values["rate"] = service.rate or "(no limit)"
    values["max_hold"] = control.duration_text(service.max_hold)
    values["paused_at"] = control.paused_text(service)
    return values


def _key_line(key: dict[str, Any]) -> str:
    """One signing key for people: scheme, created, and current or its expiry."""
    until = f"expires {key['expires_at']}" if key["expires_at"] else "current"
    return f"{key['scheme']} created {key['created_at']} {until}"


def _print_saved(service: Service, as_json: bool, line: str) -> None:
    """``print_saved``, plus the signing secret the save made, shown this once."""
    issued = service.issued_secret.get_secret_value() if service.issued_secret else None
    if as_json:
        print_json(service.model_dump(mode="json") | ({"signing_secret": issued} if issued else {}))
        return
    print_saved(service, as_json, line)
    if issued:
        what = "public key" if issued.startswith("whpk_") else "signing secret (shown once)"
        out.print(f"{what}: {issued}", highlight=False, soft_wrap=True)


async def _save(ctx: typer.Context, name: str, patch: ServicePatch, as_json: bool) -> None:
    """The one path of ``update``, ``enable`` and ``disable``: they differ in the patch."""
    service = await cli_state(ctx).with_store(lambda s: s.services.update(name, patch))
    _print_saved(service, as_json, f"updated service {service.name} ({on_off(service.enabled)})")


@group.command("add", cls=SignCommand)
@shared_options("settings", _settings)
async def service_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Unique name: lowercase letters, digits, _ . -")],
    url: Annotated[
        str, typer.Option("--url", help=f"Base URL (http/https, or amqp/amqps); {SECRET_HELP}")
    ],
    service_type: Annotated[ServiceType, typer.Option("--type")] = ServiceType.HTTP,
    *,
    settings: dict[str, object],
    as_json: JsonOption = False,
) -> None:
    """Add a service that rules can deliver to (defaults: timeout 5, 5 attempts, backoff 1)."""
    fields = read_secrets(given(base_url=url, **settings), _SECRET_OPTIONS)
    spec = ServiceIn.model_validate(given(name=name, type=service_type, **fields))
    service = await cli_state(ctx).with_store(lambda s: s.services.create(spec))
    _print_saved(service, as_json, f"added service {service.name} (id {service.id})")


@group.command("update", cls=SignCommand)
@shared_options("settings", _settings)
async def service_update(
    ctx: typer.Context,
    name: str,
    url: Annotated[str | None, typer.Option("--url", help=f"New base URL; {SECRET_HELP}")] = None,
    no_sign: Annotated[
        bool, typer.Option("--no-sign", help="Stop signing deliveries; remove every key.")
    ] = False,
    *,
    settings: dict[str, object],
    as_json: JsonOption = False,
) -> None:
    """Change a service's settings; only the options given change.

    --sign on a service that signs with another scheme rotates to a new key, the old one
    signing beside it for 24h.
    """
    # ``settings`` holds only what was given; a null in it (``--rate none``) is meant.
    fields = read_secrets(given(base_url=url) | settings, _SECRET_OPTIONS)
    if no_sign:
        if "sign" in fields:
            raise UsageError("--sign and --no-sign cannot be given together")
        fields["sign"] = None
    await _save(ctx, name, ServicePatch.model_validate(fields), as_json)


@group.command("rotate-secret")
async def service_rotate_secret(
    ctx: typer.Context,
    name: str,
    grace: Annotated[
        str,
        typer.Option(help="How long the old keys keep signing beside the new one (0: stop now)."),
    ] = "24h",
    as_json: JsonOption = False,
) -> None:
    """Make a new signing secret, printed this once; during the grace period every delivery
    carries both signatures, then only the new one."""
    period = parse_duration(grace)
    service = await cli_state(ctx).with_store(lambda s: s.services.rotate_secret(name, period))
    _print_saved(service, as_json, f"rotated the signing secret of {service.name} (grace {grace})")


# One body serves both commands (registered enable first, as they are listed).
@group.command(
    "disable", help="Stop matching this service's rules (deliveries in flight go to the DLQ)."
)
@group.command("enable", help="Let rules deliver to this service again.")
async def service_switch(ctx: typer.Context, name: str) -> None:
    """``enable`` and ``disable``: the name the command was called by says which."""
    await _save(ctx, name, ServicePatch(enabled=ctx.info_name == "enable"), as_json=False)


_PublicKeyFlag = Annotated[
    bool, typer.Option("--public-key", help="Print only the ed25519 public key(s), whpk_.")
]
_WithRulesFlag = Annotated[
    bool, typer.Option("--with-rules", help="Also delete the service's rules.")
]


@group.command("list")
async def service_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List services, with how many deliveries each holds."""
    await control.list_services(ctx, as_json, _TABLE)


@group.command("show")
async def service_show(
    ctx: typer.Context,
    name: str,
    public_key: _PublicKeyFlag = False,
    as_json: JsonOption = False,
) -> None:
    """Show one service: its token masked, its signing keys by scheme and dates, never their
    secrets; how many of its deliveries are held, and why."""
    if not public_key:
        await control.show_service(ctx, name, as_json, _fields)
        return
    service = await cli_state(ctx).with_store(lambda s: s.services.get(name))
    keys = [k.public_key for k in service.signing_keys if k.public_key]
    if not keys:
        raise UsageError(f"service {name!r} does not sign with ed25519: it has no public key")
    if as_json:
        print_json({"public_keys": keys})
    else:
        for key in keys:
            out.print(key, highlight=False, soft_wrap=True)


group.command("pause")(control.service_pause)
group.command("resume")(control.service_resume)


@group.command("delete")
async def service_delete(
    ctx: typer.Context,
    name: str,
    with_rules: _WithRulesFlag = False,
) -> None:
    """Delete a service (refused while rules use it, unless --with-rules)."""
    removed = await cli_state(ctx).with_store(
        lambda s: s.services.delete(name, with_rules=with_rules)
    )
    suffix = f" and {removed} rule(s)" if removed else ""
    out.print(f"deleted service {name}{suffix}")
