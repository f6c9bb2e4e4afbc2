"""What the commands of one ``hub`` run share, kept on the Typer context (``ctx.obj``)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cached_property
from typing import TypeVar

import typer
from temporalio.client import Client
from temporalio.service import RPCError

from hub.config import Settings
from hub.runtime.connections import connect_temporal, database_url
from hub.secrets import SecretBox
from hub.store import Store

T = TypeVar("T")
log = logging.getLogger(__name__)

TEMPORAL_CONNECT_TIMEOUT = 5.0


class CliState:
    """The settings, read from the environment once per run, and a way to reach the store.

    Both are lazy: a command that needs neither never reads them (``template preview`` reads
    only the settings, for the payload limit), and a bad setting or secret key fails inside
    the command, which reports it as one line.
    """

    @cached_property
    def settings(self) -> Settings:
        """The hub's settings (``HUB_*`` variables)."""
        return Settings()

    @asynccontextmanager
    async def store(self, *, max_size: int = 2) -> AsyncIterator[Store]:
        """A store on its own small pool: a command makes a few queries, then the run ends."""
        settings = self.settings
        box = SecretBox.from_settings(settings)
        policy = settings.egress_policy
        async with Store.open(
            database_url(settings), box=box, egress=policy, max_size=max_size
        ) as store:
            yield store

    async def with_store(self, action: Callable[[Store], Awaitable[T]]) -> T:
        """Run one store action on a short-lived pool."""
        async with self.store() as store:
            return await action(store)

    async def temporal_or_none(self) -> Client | None:
        """A Temporal client, or None when Temporal cannot be reached: a view then shows its
        held counts as unknown, and a resume leaves the held deliveries to their timers."""
        try:
            return await asyncio.wait_for(connect_temporal(self.settings), TEMPORAL_CONNECT_TIMEOUT)
        except (RuntimeError, RPCError, OSError, TimeoutError) as err:
            log.debug("Temporal unreachable: %s", err)
            return None


def cli_state(ctx: typer.Context) -> CliState:
    """The run's shared state: set by the root callback, created here if a caller skipped it."""
    return ctx.ensure_object(CliState)
