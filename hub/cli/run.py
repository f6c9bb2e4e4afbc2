"""``hub migrate`` and ``hub worker``: the long-running and one-shot processes of a deployment.

``hub api`` and ``hub dev`` belong here too, but they start the HTTP API, another face of the
hub, so ``hub.main`` adds them: ``hub.cli`` never imports ``hub.api``.
"""

import typer

from hub.cli.context import cli_state
from hub.cli.output import out
from hub.runtime.connections import database_url
from hub.store import migrate


async def migrate_command(ctx: typer.Context) -> None:
    """Apply pending database migrations (safe to run from several processes)."""
    applied = await migrate(database_url(cli_state(ctx).settings))
    out.print(f"applied {', '.join(applied)}" if applied else "database is up to date")


def worker_command() -> None:
    """Run a worker: executes dispatch workflows and delivery activities."""
    # Imported here: the worker pulls in every workflow and activity, which no other command needs.
    from hub.engine.worker import main

    main()
