"""``hub service``: the HTTP APIs and AMQP brokers that rules deliver to."""

from typing import Annotated, Any

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.output import JsonOption, out
from hub.cli.parsing import given
from hub.cli.shared_options import shared_options
from hub.cli.views import TableView, on_off, print_saved, show_list, show_one
from hub.core.models import AuthType, Service, ServiceIn, ServicePatch, ServiceType, mask_url

group = AsyncTyper(help="External services (HTTP APIs, AMQP brokers).", no_args_is_help=True)

_TABLE: TableView[Service] = TableView(
    "Services",
    ["name", "type", "url", "auth", "timeout", "attempts", "backoff", "enabled"],
    lambda s: (
        s.name,
        s.type.value,
        mask_url(s.base_url),
        s.auth_type.value,
        s.timeout,
        s.max_attempts,
        s.backoff,
        "yes" if s.enabled else "no",
    ),
)


# How the options that ``add`` and ``update`` share (see ``_settings``) look in --help.
_AuthType = Annotated[AuthType | None, typer.Option("--auth-type")]
_Token = Annotated[str | None, typer.Option(help="Bearer token or API key (stored encrypted).")]
_Inbound = Annotated[str | None, typer.Option(help="Token that POST /webhooks/NAME must present.")]
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
    timeout: _Timeout = None,
    max_attempts: _MaxAttempts = None,
    backoff: _Backoff = None,
    cb_threshold: _Threshold = None,
    cb_cooldown: _Cooldown = None,
    response_queue: _ResponseQueue = None,
) -> dict[str, object]:
    """The options ``add`` and ``update`` share, as the service fields the user gave.

    Each parameter is named after its ServiceIn/ServicePatch field, so the fields are
    exactly this function's arguments.
    """
    return given(**locals())


def _fields(service: Service) -> dict[str, Any]:
    """``service show`` without secrets: the URL masked, the token only said to be set."""
    values = service.model_dump(mode="json")
    values["base_url"] = mask_url(service.base_url)
    values["token"] = "(set)" if service.token else "(none)"
    return values


async def _save(ctx: typer.Context, name: str, patch: ServicePatch, as_json: bool) -> None:
    """The one path of ``update``, ``enable`` and ``disable``: they differ in the patch."""
    service = await cli_state(ctx).with_store(lambda s: s.services.update(name, patch))
    print_saved(service, as_json, f"updated service {service.name} ({on_off(service.enabled)})")


@group.command("add")
@shared_options("settings", _settings)
async def service_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Unique name: lowercase letters, digits, _ . -")],
    url: Annotated[str, typer.Option("--url", help="Base URL (http/https, or amqp/amqps).")],
    service_type: Annotated[ServiceType, typer.Option("--type")] = ServiceType.HTTP,
    *,
    settings: dict[str, object],
    as_json: JsonOption = False,
) -> None:
    """Add a service that rules can deliver to (defaults: timeout 5, 5 attempts, backoff 1)."""
    spec = ServiceIn.model_validate(given(name=name, type=service_type, base_url=url, **settings))
    service = await cli_state(ctx).with_store(lambda s: s.services.create(spec))
    print_saved(service, as_json, f"added service {service.name} (id {service.id})")


@group.command("update")
@shared_options("settings", _settings)
async def service_update(
    ctx: typer.Context,
    name: str,
    url: Annotated[str | None, typer.Option("--url", help="New base URL.")] = None,
    *,
    settings: dict[str, object],
    as_json: JsonOption = False,
) -> None:
    """Change a service's settings; only the options given change."""
    patch = ServicePatch.model_validate(given(base_url=url, **settings))
    await _save(ctx, name, patch, as_json)


# One body serves both commands (registered enable first, as they are listed).
@group.command(
    "disable", help="Stop matching this service's rules (deliveries in flight go to the DLQ)."
)
@group.command("enable", help="Let rules deliver to this service again.")
async def service_switch(ctx: typer.Context, name: str) -> None:
    """``enable`` and ``disable``: the name the command was called by says which."""
    await _save(ctx, name, ServicePatch(enabled=ctx.info_name == "enable"), as_json=False)


@group.command("list")
async def service_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List services."""
    await show_list(ctx, as_json, lambda s: s.services.all(), _TABLE)


@group.command("show")
async def service_show(ctx: typer.Context, name: str, as_json: JsonOption = False) -> None:
    """Show one service (its token masked)."""
    await show_one(ctx, as_json, lambda s: s.services.get(name), _fields)


@group.command("delete")
async def service_delete(
    ctx: typer.Context,
    name: str,
    with_rules: Annotated[
        bool, typer.Option("--with-rules", help="Also delete the service's rules.")
    ] = False,
) -> None:
    """Delete a service (refused while rules use it, unless --with-rules)."""
    removed = await cli_state(ctx).with_store(
        lambda s: s.services.delete(name, with_rules=with_rules)
    )
    suffix = f" and {removed} rule(s)" if removed else ""
    out.print(f"deleted service {name}{suffix}")
