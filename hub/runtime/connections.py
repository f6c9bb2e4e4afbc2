"""How every hub process reaches its servers: the database URL and the Temporal client."""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from hub.config import Settings
from hub.runtime.embedded import embedded_database_url


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one under HUB_DATA_DIR."""
    return settings.database_url or embedded_database_url(settings.data_dir.resolve())


async def connect_temporal(settings: Settings) -> Client:
    """A Temporal client with the pydantic data converter every hub process uses."""
    return await Client.connect(
        settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
