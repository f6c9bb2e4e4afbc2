"""Credentials at rest: service tokens, inbound tokens and URL passwords, Fernet-encrypted.

The one place that seals a credential (the store calls it on every write) and opens one
(the activities for a call, the API for a webhook check). The key comes from
``HUB_SECRET_KEY``, else from ``$HUB_DATA_DIR/secret.key`` (which
``hub dev`` creates on its first run). Only processes that use a credential need the key:
the worker (to call services) and the API (to check webhook tokens). Listing services does
not decrypt anything.
"""

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from hub.config import Settings
from hub.core.models import Service, mask_url

KEY_FILE = "secret.key"
API_TOKEN_FILE = "api.token"


class SecretKeyError(RuntimeError):
    """A credential had to be encrypted or decrypted without the right key."""


@dataclass(frozen=True)
class Credentials:
    """What a call to a service needs in clear: its URL (with any password) and its token."""

    url: str
    token: str


class SecretBox:
    """Seals and opens credentials with one Fernet key (or refuses, with no key)."""

    def __init__(self, key: str | None) -> None:
        try:
            self._fernet = Fernet(key.encode()) if key else None
        except ValueError:
            raise SecretKeyError(
                "HUB_SECRET_KEY is not a valid key (32 url-safe base64-encoded bytes)"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> "SecretBox":
        if settings.secret_key is not None:
            return cls(settings.secret_key.get_secret_value())
        path = settings.data_dir / KEY_FILE
        return cls(path.read_text().strip() if path.exists() else None)

    def seal(self, plain: str) -> str:
        return self._require().encrypt(plain.encode()).decode()

    def open(self, sealed: SecretStr | str) -> str:
        value = sealed.get_secret_value() if isinstance(sealed, SecretStr) else sealed
        try:
            return self._require().decrypt(value.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored credential cannot be decrypted: HUB_SECRET_KEY is not the key it "
                "was stored with"
            ) from None

    def seal_url(self, url: str) -> tuple[str, str | None]:
        """(the URL to show and store in ``base_url``, its sealed form if it has a password)."""
        masked = mask_url(url)
        return masked, (self.seal(url) if masked != url else None)

    def seal_secret(self, secret: SecretStr | None) -> str | None:
        return self.seal(secret.get_secret_value()) if secret else None

    def credentials(self, service: Service) -> Credentials:
        """The service's URL and token in clear, for one call."""
        url = self.open(service.secret_url) if service.secret_url else service.base_url
        return Credentials(url=url, token=self.open(service.token) if service.token else "")

    def inbound_token(self, service: Service) -> str | None:
        """The token a webhook sender must present, in clear; None if the service has none."""
        return self.open(service.inbound_token) if service.inbound_token else None

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise SecretKeyError(
                "no secret key: set HUB_SECRET_KEY (python -c 'from cryptography.fernet import "
                "Fernet; print(Fernet.generate_key().decode())'), or run hub dev once"
            )
        return self._fernet


def ensure_key_file(data_dir: Path) -> str:
    """The Fernet key in ``secret.key`` under data_dir, created on first use."""
    return _private_file(data_dir / KEY_FILE, lambda: Fernet.generate_key().decode())


def ensure_api_token(data_dir: Path) -> str:
    """The dev API token in ``api.token`` under data_dir, created on first use."""
    return _private_file(data_dir / API_TOKEN_FILE, lambda: secrets.token_urlsafe(24))


def _private_file(path: Path, make: Callable[[], str]) -> str:
    """The file's content; the file is created (mode 600, never overwritten) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(make())
    return path.read_text().strip()
