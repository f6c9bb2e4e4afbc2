"""The ``hub`` console script: ``hub.cli``'s commands plus ``api`` and ``dev``.

Those two start the HTTP API and the console, other faces of the hub; ``hub.cli`` may not
import them, so they are added here, the one module above the faces.
"""

from typing import Annotated

import asyncpg
import typer
from pydantic import ValidationError
from temporalio.service import RPCError

from hub.cli import app
from hub.cli.context import cli_state
from hub.cli.errors import reported
from hub.cli.output import out
from hub.runtime.embedded import DevStackError
from hub.runtime.process import configure_logging, exit_now
from hub.runtime.tracing import API_SERVICE, DEV_SERVICE, setup_tracing
from hub.secrets import SecretKeyError

__all__ = ["app", "main"]


@app.command("dev", rich_help_panel="Run")
def dev_command(
    ctx: typer.Context,
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    api_port: Annotated[int, typer.Option(help="HTTP API port.")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Add a demo sink, service and rules; emit events.")
    ] = False,
    demo_port: Annotated[int, typer.Option(help="Port of the demo sink.")] = 8099,
) -> None:
    """Run the whole hub here: embedded Temporal (+UI) and PostgreSQL, worker, API, schedule.

    Servers named by HUB_TEMPORAL_ADDRESS / HUB_DATABASE_URL are used instead of embedded
    ones. Everything persists under HUB_DATA_DIR (default ./.hub), including the generated
    API token and secret key.
    """
    # Imported here, like the API below: only these commands need the web stack.
    from hub.dev.stack import DevPorts, run_dev

    configure_logging()
    setup_tracing(DEV_SERVICE)
    ports = DevPorts(temporal=temporal_port, ui=ui_port, api=api_port, demo=demo_port)
    with reported(
        DevStackError, SecretKeyError, ValidationError, OSError, asyncpg.PostgresError, RPCError
    ):
        run_dev(
            cli_state(ctx).settings,
            ports,
            demo=demo,
            say=lambda line: out.print(line, highlight=False),
        )


@app.command("api", rich_help_panel="Run")
def api_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Serve without HUB_API_TOKEN (dev only).")
    ] = False,
    with_worker: Annotated[
        bool,
        typer.Option(
            "--with-worker",
            help="Also run a worker in this process; events start on it eagerly (lower latency).",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (ingest, webhooks, admin; OpenAPI at /openapi.json) and the
    console at /ui.

    Without --with-worker the API is a stateless ingest face: it scales apart from the
    workers and answers 503 while Temporal or PostgreSQL is down. With it, one process also
    delivers, and each event's first workflow task skips the task queue (eager start).
    """
    from hub.api import serve
    from hub.console import mount_console

    configure_logging()
    setup_tracing(API_SERVICE)
    settings = cli_state(ctx).settings
    with reported(RuntimeError, ValidationError, OSError, asyncpg.PostgresError, RPCError):
        serve(
            settings,
            host=host,
            port=port,
            insecure_no_auth=insecure_no_auth,
            extend=lambda api: mount_console(api, settings),
            with_worker=with_worker,
        )


def main() -> None:
    """Run ``hub``, then end the process at once (see ``exit_now``) with the command's code."""
    try:
        app()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    exit_now(code)
