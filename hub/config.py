"""Settings read from the environment (``HUB_`` prefix), shared by every entry point."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.core.egress import EgressPolicy
from hub.core.models import retention_days

DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"


class Settings(BaseSettings):
    """Configuration of the hub; unset database/Temporal mean the embedded defaults."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    database_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "hub"
    api_token: SecretStr | None = None
    viewer_token: SecretStr | None = None
    """HUB_VIEWER_TOKEN: read-only access to the API's GET routes and to the console."""
    temporal_ui_url: str = "http://127.0.0.1:8233"
    """HUB_TEMPORAL_UI_URL: where the console links to the Temporal Web UI."""
    metrics_public: bool = False
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """Where the worker serves GET /metrics (0: not at all)."""
    metrics_host: str = "127.0.0.1"
    """The worker's metrics address: loopback unless told (compose sets 0.0.0.0)."""
    secret_key: SecretStr | None = None
    data_dir: Path = Path(".hub")

    max_concurrent_activities: int = Field(default=200, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    max_concurrent_local_activities: int = Field(default=200, ge=1)
    workflow_sandbox: bool = False
    """HUB_WORKFLOW_SANDBOX: run the workflows in Temporal's sandbox, which refuses
    non-deterministic calls in workflow code. The hub's tests always run with it, so its own
    workflows are checked; off by default because it was 28-31 % of a worker's CPU per event
    (bench/results.md, issue 16). Turn it on while changing the workflows."""
    http_max_connections: int = Field(default=200, ge=1)
    log_retention: int = 30
    """HUB_LOG_RETENTION: days the delivery log keeps (``30``, ``30d``, or ``720h`` rounded up
    to whole days); older day partitions are dropped."""
    log_retention_days: int | None = Field(default=None, ge=1)
    """HUB_LOG_RETENTION_DAYS, the older name, used when HUB_LOG_RETENTION is not set."""
    log_prune_every: float = Field(default=3600.0, ge=1)
    rule_cache_seconds: float = Field(default=30.0, ge=0)
    responses_max_per_run: int = Field(default=500, ge=1)
    responses_every: float = Field(default=60.0, ge=1)
    egress_allow: str = ""
    """CIDRs and host names deliveries may reach although the egress guard refuses them."""
    response_max_bytes: int = Field(default=64 * 1024, ge=0)
    """How much of a response body an HTTP delivery reads before it closes the connection."""
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest event accepted (its JSON in UTF-8) by the API, webhooks, the SDK and the CLI."""
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest rendered payload (UTF-8 bytes); a larger rendering is dead-lettered."""
    codec_cors_origins: str = ""
    """Origins (space/comma separated) allowed to call the codec endpoint from a browser."""
    release_rate: float = Field(default=20.0, gt=0, le=100_000)
    """HUB_RELEASE_RATE: deliveries per second a service gets when its held deliveries are
    released (resume, circuit closed), unless its own rate is set: no stampede."""

    @field_validator("log_retention", mode="before")
    @classmethod
    def _retention_in_days(cls, value: object) -> int:
        return retention_days(value if isinstance(value, int) else str(value))

    @model_validator(mode="after")
    def _older_retention_name(self) -> "Settings":
        if "log_retention" not in self.model_fields_set and self.log_retention_days:
            self.log_retention = self.log_retention_days
        return self

    @field_validator("egress_allow")
    @classmethod
    def _valid_egress_allow(cls, value: str) -> str:
        EgressPolicy.parse(value)
        return value

    @property
    def egress_policy(self) -> EgressPolicy:
        """The egress guard's allow-list (HUB_EGRESS_ALLOW)."""
        return EgressPolicy.parse(self.egress_allow)

    @property
    def resolved_temporal_address(self) -> str:
        """The Temporal frontend to use: the configured one or the embedded dev server's."""
        return self.temporal_address or DEFAULT_TEMPORAL_ADDRESS
