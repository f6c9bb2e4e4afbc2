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
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from hub.config import Settings
from hub.core.models import Service, SigningKey, mask_url
from hub.core.signing import Signer, parse_hmac_secret, signer

KEY_FILE = "secret.key"
API_TOKEN_FILE = "api.token"


class SecretKeyError(RuntimeError):
    """A credential had to be encrypted or decrypted without the right key."""


@dataclass(frozen=True)
class Credentials:
    """What a call to a service needs in clear: its URL (with any password), its token, and
    the signers of its active signing keys (current first; none: deliveries go unsigned)."""

    url: str
    token: str
    signers: tuple[Signer, ...] = ()


def secret_keys(settings: Settings) -> str | None:
    """The configured key list: HUB_SECRET_KEY, else ``$HUB_DATA_DIR/secret.key``, else None.

    Every key user (``SecretBox``, and the Temporal payload codec) finds its keys here.
    """
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.data_dir / KEY_FILE
    return path.read_text().strip() if path.exists() else None


class SecretBox:
    """Seals with the newest key and opens with any listed key (or refuses, with no key).

    ``keys`` is HUB_SECRET_KEY: one Fernet key, or several separated by commas or spaces,
    newest first. Listing a new key first and keeping the old one behind it lets every
    process read what was sealed before; ``hub secrets rotate`` then re-seals the rows with
    the new key, after which the old one can go.
    """

    def __init__(self, keys: str | None) -> None:
        listed = (keys or "").replace(",", " ").split()
        try:
            self._fernets = [Fernet(key.encode()) for key in listed]
        except ValueError:
            raise SecretKeyError(
                "HUB_SECRET_KEY is not a valid key list (each key is 32 url-safe base64-encoded "
                "bytes; several keys are separated by commas, newest first)"
            ) from None
        self._fernet = MultiFernet(self._fernets) if self._fernets else None

    @classmethod
    def from_settings(cls, settings: Settings) -> "SecretBox":
        return cls(secret_keys(settings))

    def seal(self, plain: str) -> str:
        return self._require().encrypt(plain.encode()).decode()

    def open(self, sealed: SecretStr | str) -> str:
        value = sealed.get_secret_value() if isinstance(sealed, SecretStr) else sealed
        try:
            return self._require().decrypt(value.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored credential cannot be decrypted: no key in HUB_SECRET_KEY is the one "
                "it was stored with"
            ) from None

    def reseal(self, sealed: str) -> str | None:
        """The value sealed with the newest key, or None if it already is."""
        newest = self._require_newest()
        try:
            newest.decrypt(sealed.encode())
        except InvalidToken:
            return self.seal(self.open(sealed))
        return None

    def _require_newest(self) -> Fernet:
        self._require()
        return self._fernets[0]

    def seal_url(self, url: str) -> tuple[str, str | None]:
        """(the URL to show and store in ``base_url``, its sealed form if it has a password)."""
        masked = mask_url(url)
        return masked, (self.seal(url) if masked != url else None)

    def seal_secret(self, secret: SecretStr | None) -> str | None:
        return self.seal(secret.get_secret_value()) if secret else None

    def credentials(self, service: Service, now: datetime | None = None) -> Credentials:
        """The service's URL, token and signers in clear, for one call.

        A key whose expiry has passed no longer signs, even while the rule index that holds
        it has not reloaded yet.
        """
        url = self.open(service.secret_url) if service.secret_url else service.base_url
        moment = now or datetime.now(UTC)
        return Credentials(
            url=url,
            token=self.open(service.token) if service.token else "",
            signers=tuple(self.signer(k) for k in service.signing_keys if k.active(moment)),
        )

    def signer(self, key: SigningKey) -> Signer:
        """The signer of a stored signing key."""
        return signer(key.scheme, self.open(key.secret))

    def inbound_secret(self, service: Service) -> bytes | None:
        """The key signed webhooks to this service are verified with; None if it has none."""
        if service.inbound_secret is None:
            return None
        return parse_hmac_secret(self.open(service.inbound_secret))

    def inbound_token(self, service: Service) -> str | None:
        """The token a webhook sender must present, in clear; None if the service has none."""
        return self.open(service.inbound_token) if service.inbound_token else None

    def _require(self) -> MultiFernet:
        if self._fernet is None:
            raise SecretKeyError(
                "no secret key: set HUB_SECRET_KEY (python -c 'from cryptography.fernet import "
                "Fernet; print(Fernet.generate_key().decode())'), or run hub dev once"
            )
        return self._fernet


def private_dir(path: Path) -> Path:
    """The directory, created if missing and made 0700 in any case: HUB_DATA_DIR holds the
    secret key, the API token, and the dev servers' databases with every event's payload.

    0710 is left alone: run as root, the embedded PostgreSQL runs as a user in our group
    that must pass through (hub.runtime.embedded opens it so), and closing it under a
    running server would crash it.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 not in (0o700, 0o710):
        path.chmod(0o700)
    return path


def ensure_key_file(data_dir: Path) -> str:
    """The Fernet key in ``secret.key`` under data_dir, created on first use."""
    return _private_file(data_dir / KEY_FILE, lambda: Fernet.generate_key().decode())


def ensure_api_token(data_dir: Path) -> str:
    """The dev API token in ``api.token`` under data_dir, created on first use."""
    return _private_file(data_dir / API_TOKEN_FILE, lambda: secrets.token_urlsafe(24))


def _private_file(path: Path, make: Callable[[], str]) -> str:
    """The file's content; the file is created (mode 600, never overwritten) if missing."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(make())
    return path.read_text().strip()
