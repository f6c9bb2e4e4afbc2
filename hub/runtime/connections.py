"""How every hub process reaches its servers: the database URL and the Temporal client."""

from temporalio.client import Client

from hub.config import Settings
from hub.runtime.codec import data_converter
from hub.runtime.embedded import embedded_database_url


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one under HUB_DATA_DIR."""
    return settings.database_url or embedded_database_url(settings.data_dir.resolve())


async def connect_temporal(settings: Settings, *, lazy: bool = False) -> Client:
    """A Temporal client with the data converter every hub process uses: pydantic, and
    payloads encrypted with the hub's secret key when one is configured (hub.runtime.codec).

    ``lazy`` connects on the first call instead of now, so a process can start while
    Temporal is down; until Temporal answers, each call fails (and the next one tries again).
    """
    return await Client.connect(
        settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        lazy=lazy,
    )
