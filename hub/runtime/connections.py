"""How every hub process reaches its servers: the database URL and the Temporal client."""

from collections.abc import Sequence

from temporalio.client import Client, Interceptor

from hub.config import Settings
from hub.runtime.codec import data_converter
from hub.runtime.embedded import embedded_database_url
from hub.runtime.telemetry import process_runtime
from hub.runtime.tracing import temporal_interceptors


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one under HUB_DATA_DIR."""
    return settings.database_url or embedded_database_url(settings.data_dir.resolve())


async def connect_temporal(
    settings: Settings,
    *,
    lazy: bool = False,
    interceptors: Sequence[Interceptor] | None = None,
) -> Client:
    """A Temporal client with the data converter every hub process uses: pydantic, and
    payloads encrypted with the hub's secret key when one is configured (hub.runtime.codec).

    ``lazy`` connects on the first call instead of now, so a process can start while
    Temporal is down; until Temporal answers, each call fails (and the next one tries again).
    Every client of the process shares its one runtime (hub.runtime.telemetry).
    ``interceptors`` default to Temporal's tracing interceptor while tracing is on
    (hub.runtime.tracing), and to none while it is off.
    """
    return await Client.connect(
        settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        lazy=lazy,
        interceptors=temporal_interceptors() if interceptors is None else interceptors,
        runtime=process_runtime().runtime,
    )
