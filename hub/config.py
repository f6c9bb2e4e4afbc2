"""Settings read from the environment (``HUB_`` prefix), shared by every entry point."""

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"


class Settings(BaseSettings):
    """Configuration of the hub; unset database/Temporal mean the embedded defaults."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    database_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    task_queue: str = "hub"
    api_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    data_dir: Path = Path(".hub")

    max_concurrent_activities: int = Field(default=200, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    max_concurrent_local_activities: int = Field(default=200, ge=1)
    http_max_connections: int = Field(default=200, ge=1)
    log_retention_days: int = Field(default=30, ge=1)
    log_prune_every: float = Field(default=3600.0, ge=1)
    rule_cache_seconds: float = Field(default=30.0, ge=0)
    responses_max_per_run: int = Field(default=500, ge=1)
    responses_every: float = Field(default=60.0, ge=1)

    @cached_property
    def resolved_temporal_address(self) -> str:
        """The Temporal frontend to use: the configured one or the embedded dev server's."""
        return self.temporal_address or DEFAULT_TEMPORAL_ADDRESS
