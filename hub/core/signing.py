"""Standard Webhooks signatures: secrets, signing and verification (pure, no I/O).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the ``webhook-signature``
header holds one or more space-separated signatures, so a receiver keeps verifying while a
secret is rotated.

* Symmetric (``hmac``): the secret is ``whsec_`` + base64 of 24 to 64 random bytes (the hub
  makes 32); the signature is ``v1,`` + base64 of HMAC-SHA256.
* Asymmetric (``ed25519``): the signing key is ``whsk_`` + base64 of the 32-byte seed followed
  by the 32-byte public key (a key pair, as Svix serialises it); receivers get ``whpk_`` +
  base64 of the 32-byte public key; the signature is ``v1a,`` + base64 of the Ed25519
  signature.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HMAC_PREFIX = "whsec_"
SECRET_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
HMAC_SECRET_BYTES = 32
TOLERANCE_SECONDS = 300
"""How far an inbound webhook's timestamp may be from now, either way (five minutes)."""

_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw
_RAW_PRIVATE = serialization.PrivateFormat.Raw


class SigningScheme(StrEnum):
    HMAC = "hmac"
    ED25519 = "ed25519"


def signing_scheme(value: object) -> SigningScheme:
    """The scheme a value names; a one-line ValueError for anything else."""
    for scheme in SigningScheme:
        if isinstance(value, str) and value == scheme.value:
            return scheme
    shown = repr(value) if isinstance(value, str) and len(value) <= 40 else "value"
    raise ValueError(f"unknown signing scheme {shown}: use hmac or ed25519")


class SignatureError(ValueError):
    """An inbound webhook whose headers do not verify; the message says why."""


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 with or without its padding; a one-line ValueError otherwise."""
    body = text.rstrip("=")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"malformed {what}: the part after the prefix is not base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_hmac_secret(value: str) -> bytes:
    """The key bytes of a ``whsec_`` secret."""
    if not value.startswith(HMAC_PREFIX):
        raise ValueError(f"malformed signing secret: it must start with {HMAC_PREFIX}")
    key = _b64decode(value.removeprefix(HMAC_PREFIX), "signing secret")
    if not 24 <= len(key) <= 64:
        raise ValueError(
            f"malformed signing secret: {HMAC_PREFIX} needs 24 to 64 bytes, this has {len(key)}"
        )
    return key


def parse_secret_key(value: str) -> Ed25519PrivateKey:
    """The private key of a ``whsk_`` value (seed + public key, or the seed alone)."""
    if not value.startswith(SECRET_KEY_PREFIX):
        raise ValueError(f"malformed signing key: it must start with {SECRET_KEY_PREFIX}")
    raw = _b64decode(value.removeprefix(SECRET_KEY_PREFIX), "signing key")
    if len(raw) not in (32, 64):
        raise ValueError(
            "malformed signing key: an ed25519 key pair is 64 bytes (or a 32-byte seed)"
        )
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if len(raw) == 64 and key.public_key().public_bytes(_RAW, _RAW_PUBLIC) != raw[32:]:
        raise ValueError("malformed signing key: its public half does not belong to its seed")
    return key


@dataclass(frozen=True)
class KeyMaterial:
    """A new signing secret: ``secret`` is kept sealed, ``shown`` is what receivers need."""

    scheme: SigningScheme
    secret: str
    public_key: str | None = None

    @property
    def shown(self) -> str:
        """What to print once: the whsec_ secret, or the whpk_ public key (never the whsk_)."""
        return self.public_key or self.secret


def generate(scheme: SigningScheme) -> KeyMaterial:
    """A fresh random secret (hmac) or key pair (ed25519)."""
    if scheme is SigningScheme.HMAC:
        return KeyMaterial(scheme, HMAC_PREFIX + _b64(secrets.token_bytes(HMAC_SECRET_BYTES)))
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(_RAW, _RAW_PRIVATE, serialization.NoEncryption())
    public = key.public_key().public_bytes(_RAW, _RAW_PUBLIC)
    return KeyMaterial(
        scheme, SECRET_KEY_PREFIX + _b64(seed + public), PUBLIC_KEY_PREFIX + _b64(public)
    )


@dataclass(frozen=True)
class HmacSigner:
    key: bytes

    def sign(self, content: bytes) -> str:
        return "v1," + _b64(hmac.digest(self.key, content, hashlib.sha256))


@dataclass(frozen=True)
class Ed25519Signer:
    key: Ed25519PrivateKey

    def sign(self, content: bytes) -> str:
        return "v1a," + _b64(self.key.sign(content))


Signer = HmacSigner | Ed25519Signer


def signer(scheme: SigningScheme, secret: str) -> Signer:
    """The signer of a stored secret (whsec_ for hmac, whsk_ for ed25519)."""
    if scheme is SigningScheme.HMAC:
        return HmacSigner(parse_hmac_secret(secret))
    return Ed25519Signer(parse_secret_key(secret))


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def signature_headers(
    signers: Sequence[Signer], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for these exact body bytes; none without signers."""
    if not signers:
        return {}
    stamp = int(time.time()) if timestamp is None else timestamp
    content = signed_content(msg_id, stamp, body)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: " ".join(s.sign(content) for s in signers),
    }


def verify(
    key: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """The webhook-id of a request whose ``v1`` signature verifies with ``key``.

    ``headers`` must answer lower-case names. Raises SignatureError: headers missing, a
    timestamp that is not an integer or further than ``tolerance`` seconds from now, or no
    signature that matches (compared in constant time).
    """
    msg_id = headers.get(ID_HEADER)
    stamp = headers.get(TIMESTAMP_HEADER)
    signatures = headers.get(SIGNATURE_HEADER)
    if not (msg_id and stamp and signatures):
        raise SignatureError(
            f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
        )
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise SignatureError(f"invalid {TIMESTAMP_HEADER}: not a Unix time in seconds")
    skew = int(stamp) - (time.time() if now is None else now)
    if abs(skew) > tolerance:
        when = "old" if skew < 0 else "far in the future"
        raise SignatureError(f"{TIMESTAMP_HEADER} too {when}: outside the {tolerance}s tolerance")
    expected = hmac.digest(key, signed_content(msg_id, int(stamp), body), hashlib.sha256)
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            return msg_id
    raise SignatureError("no signature matches the service's inbound secret")
