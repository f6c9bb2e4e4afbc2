"""``hub rule``: which events go to which service, and how."""

from typing import Annotated

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.output import JsonOption, out
from hub.cli.parsing import given, read_template
from hub.cli.views import TableView, on_off, print_saved, show_list, show_one
from hub.core.models import HttpMethod, Rule, RuleIn, RulePatch

group = AsyncTyper(help="Rules: which events go to which service, and how.", no_args_is_help=True)

_TABLE: TableView[Rule] = TableView(
    "Rules",
    ["id", "event", "service", "method", "endpoint", "template", "enabled"],
    lambda r: (
        r.id,
        r.event,
        r.service,
        r.method.value,
        r.endpoint,
        (r.template[:40] + "…") if len(r.template) > 40 else r.template or "(whole event)",
        "yes" if r.enabled else "no",
    ),
)


def _route(rule: Rule) -> str:
    """``ID: EVENT -> SERVICE``: how the summary lines name a rule."""
    return f"{rule.id}: {rule.event} -> {rule.service}"


async def _save(ctx: typer.Context, rule_id: int, patch: RulePatch, as_json: bool) -> None:
    """The one path of ``update``, ``enable`` and ``disable``: they differ in the patch."""
    rule = await cli_state(ctx).with_store(lambda s: s.rules.update(rule_id, patch))
    print_saved(rule, as_json, f"updated rule {_route(rule)} ({on_off(rule.enabled)})")


@group.command("add")
async def rule_add(
    ctx: typer.Context,
    event: Annotated[str, typer.Option(help="Event name or pattern with * (order.*).")],
    service: Annotated[str, typer.Option(help="Service name.")],
    method: Annotated[HttpMethod, typer.Option(case_sensitive=False)] = HttpMethod.POST,
    endpoint: Annotated[str, typer.Option(help="Path appended to the service URL.")] = "",
    template: Annotated[str, typer.Option(help="Payload template, or @file.")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a rule: events matching --event go to --service."""
    spec = RuleIn(
        event=event,
        service=service,
        method=method,
        endpoint=endpoint,
        template=read_template(template),
        enabled=not disabled,
    )
    rule = await cli_state(ctx).with_store(lambda s: s.rules.create(spec))
    line = f"added rule {_route(rule)} {rule.method.value} {rule.endpoint or '/'}"
    print_saved(rule, as_json, line, highlight=False)


@group.command("list")
async def rule_list(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option(help="Only this service's rules.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List rules."""
    await show_list(ctx, as_json, lambda s: s.rules.all(service=service), _TABLE)


@group.command("show")
async def rule_show(ctx: typer.Context, rule_id: int, as_json: JsonOption = False) -> None:
    """Show one rule."""
    await show_one(ctx, as_json, lambda s: s.rules.get(rule_id))


@group.command("update")
async def rule_update(
    ctx: typer.Context,
    rule_id: int,
    event: Annotated[str | None, typer.Option(help="Event name or pattern.")] = None,
    service: Annotated[str | None, typer.Option(help="Service name.")] = None,
    method: Annotated[HttpMethod | None, typer.Option(case_sensitive=False)] = None,
    endpoint: Annotated[str | None, typer.Option(help="Path appended to the URL.")] = None,
    template: Annotated[str | None, typer.Option(help="Payload template, or @file.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a rule; only the options given change."""
    if template is not None:
        template = read_template(template)
    patch = RulePatch.model_validate(
        given(event=event, service=service, method=method, endpoint=endpoint, template=template)
    )
    await _save(ctx, rule_id, patch, as_json)


# One body serves both commands (registered enable first, as they are listed).
@group.command("disable", help="Stop this rule from matching.")
@group.command("enable", help="Let this rule match again.")
async def rule_switch(ctx: typer.Context, rule_id: int) -> None:
    """``enable`` and ``disable``: the name the command was called by says which."""
    await _save(ctx, rule_id, RulePatch(enabled=ctx.info_name == "enable"), as_json=False)


@group.command("delete")
async def rule_delete(ctx: typer.Context, rule_id: int) -> None:
    """Delete a rule."""
    await cli_state(ctx).with_store(lambda s: s.rules.delete(rule_id))
    out.print(f"deleted rule {rule_id}")
