"""Who is signed in to the console (``hub.console.auth`` makes and reads the cookie)."""

from dataclasses import dataclass
from datetime import datetime

ADMIN = "admin"
VIEWER = "viewer"


@dataclass(frozen=True)
class Session:
    """A signed-in session: ``admin`` (the API token) or ``viewer`` (HUB_VIEWER_TOKEN)."""

    role: str
    csrf: str
    expires: datetime

    @property
    def can_write(self) -> bool:
        """Whether this session may change anything (pages hide their buttons otherwise)."""
        return self.role == ADMIN
