"""The ``hub`` Typer app: its groups, in the order ``hub --help`` lists them.

``hub.main`` adds ``api`` and ``dev`` to the "Run" panel, after ``migrate`` and ``worker``.
"""

import typer

from hub.cli import circuits, dlq, events, responses, rules, run, secrets, services, templates
from hub.cli.async_typer import AsyncTyper
from hub.cli.context import CliState

app = AsyncTyper(
    help="Temporal integration hub: deliver events to HTTP APIs and AMQP brokers, durably.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(ctx: typer.Context) -> None:
    """Give every command one shared state, so settings are read once per run."""
    ctx.ensure_object(CliState)


app.command("migrate", rich_help_panel="Run")(run.migrate_command)
app.command("worker", rich_help_panel="Run")(run.worker_command)
app.command("emit", rich_help_panel="Events")(events.emit_command)
app.command("logs", rich_help_panel="Events")(events.logs_command)
app.add_typer(services.group, name="service", rich_help_panel="Configure")
app.add_typer(rules.group, name="rule", rich_help_panel="Configure")
app.add_typer(dlq.group, name="dlq", rich_help_panel="Operate")
app.add_typer(templates.group, name="template", rich_help_panel="Configure")
app.add_typer(circuits.group, name="circuit", rich_help_panel="Operate")
app.add_typer(responses.group, name="responses", rich_help_panel="Operate")
app.add_typer(secrets.group, name="secrets", rich_help_panel="Operate")
