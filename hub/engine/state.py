"""The per-process state the HTTP faces share (the API and the console): the connections the
lifespan opens once, kept on ``app.state.api``."""

from dataclasses import dataclass, field

from temporalio.client import Client

from hub.engine.client import HubClient
from hub.engine.replay import Replayer
from hub.runtime.metrics import HubMetrics
from hub.store import Store


@dataclass
class HubState:
    """The connections the routes share, opened by the lifespan (or handed in by tests)."""

    store: Store
    temporal: Client
    hub: HubClient
    replayer: Replayer
    metrics: HubMetrics = field(default_factory=HubMetrics)
    """This process's metrics (``hub dev`` shares its worker's), served by /metrics."""
