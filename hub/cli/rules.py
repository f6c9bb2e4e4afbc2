"""``hub rule``: which events go to which service, and how."""

from typing import Annotated

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.output import JsonOption, out, print_fields, print_json
from hub.cli.parsing import given, read_template
from hub.cli.views import TableView, on_off, print_saved, show_list
from hub.core.control import MISSING_KEY
from hub.core.models import HttpMethod, Rule, RuleIn, RulePatch
from hub.engine.hold_counts import lane_depth

group = AsyncTyper(help="Rules: which events go to which service, and how.", no_args_is_help=True)

_TABLE: TableView[Rule] = TableView(
    "Rules",
    ["id", "event", "service", "method", "endpoint", "template", "enabled", "prio", "order key"],
    lambda r: (
        r.id,
        r.event,
        r.service,
        r.method.value,
        r.endpoint,
        (r.template[:40] + "…") if len(r.template) > 40 else r.template or "(whole event)",
        "yes" if r.enabled else "no",
        r.priority,
        r.order_key or "-",
    ),
)

# Text, parsed by the model: a bad priority is a one-line error like any other bad value.
_Priority = Annotated[
    str | None, typer.Option(help="1 (served first) to 5 (last); default 3.", metavar="<1..5>")
]
_OrderKey = Annotated[
    str | None,
    typer.Option(
        help="Deliver in emission order per value of this dotted path (data.user_id); events "
        f"without it share the lane {MISSING_KEY}; update: empty removes ordering."
    ),
]


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
    priority: _Priority = None,
    order_key: _OrderKey = None,
    as_json: JsonOption = False,
) -> None:
    """Add a rule: events matching --event go to --service."""
    spec = RuleIn.model_validate(
        given(
            event=event,
            service=service,
            method=method,
            endpoint=endpoint,
            template=read_template(template),
            enabled=not disabled,
            priority=priority,
            order_key=order_key or None,
        )
    )
    rule = await cli_state(ctx).with_store(lambda s: s.rules.create(spec))
    line = f"added rule {_route(rule)} {rule.method.value} {rule.endpoint or '/'}"
    line += (
        f" (priority {rule.priority}{f', ordered by {rule.order_key}' if rule.order_key else ''})"
    )
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
    """Show one rule, with how many of its deliveries wait in ordered lanes."""
    state = cli_state(ctx)
    rule = await state.with_store(lambda s: s.rules.get(rule_id))
    depth = await lane_depth(await state.temporal_or_none(), rule.id)
    if as_json:
        print_json(rule.model_dump(mode="json") | {"lane_depth": depth})
        return
    values = rule.model_dump(mode="json") | {
        "order_key": rule.order_key or "(unordered)",
        "lane_depth": "unknown (Temporal unreachable)" if depth is None else depth,
    }
    print_fields(values)


@group.command("update")
async def rule_update(
    ctx: typer.Context,
    rule_id: int,
    event: Annotated[str | None, typer.Option(help="Event name or pattern.")] = None,
    service: Annotated[str | None, typer.Option(help="Service name.")] = None,
    method: Annotated[HttpMethod | None, typer.Option(case_sensitive=False)] = None,
    endpoint: Annotated[str | None, typer.Option(help="Path appended to the URL.")] = None,
    template: Annotated[str | None, typer.Option(help="Payload template, or @file.")] = None,
    priority: _Priority = None,
    order_key: _OrderKey = None,
    as_json: JsonOption = False,
) -> None:
    """Change a rule; only the options given change."""
    if template is not None:
        template = read_template(template)
    fields = given(
        event=event,
        service=service,
        method=method,
        endpoint=endpoint,
        template=template,
        priority=priority,
        order_key=order_key,
    )
    if order_key == "":
        fields["order_key"] = None
    patch = RulePatch.model_validate(fields)
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
