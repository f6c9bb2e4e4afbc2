"""Payload encryption for Temporal: what the hub writes into a workflow history is sealed.

Every payload (event data, rendered bodies, results) goes through ``HubCodec`` on its way to
Temporal and back, so anyone who reads Temporal's database or UI without the key sees
ciphertext. AES-256-GCM, with a key derived by HKDF-SHA256 from each of the hub's secret
keys (``HUB_SECRET_KEY``, or hub dev's key file; see ``hub.secrets.secret_keys``): the first
key encrypts, and the id of the key used travels in the payload's metadata, so a payload
sealed before a rotation still opens while its key is listed behind the new one.

An encrypted payload is ``metadata = {encoding: binary/encrypted, encryption-key-id: <id>}``
and ``data = nonce (12 bytes) || ciphertext+tag`` of the original payload's protobuf bytes.
A payload without that encoding (a history written before encryption was on) is passed
through as it is. The API's ``/codec`` endpoint serves the same codec to the Temporal UI and
``temporal workflow show --codec-endpoint``. Failure messages (an activity's error text) are
not payloads and stay readable; see ``data_converter``.
"""

import base64
import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from hub.config import Settings
from hub.secrets import SecretBox, secret_keys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
_CIPHER_INFO = b"temporal-hub payload codec: AES-256-GCM key"
_KEY_ID_INFO = b"temporal-hub payload codec: key id"


class CodecError(ValueError):
    """A payload that cannot be decrypted: unknown key id, or not sealed by this hub."""


@dataclasses.dataclass(frozen=True)
class PayloadKey:
    """One derived key and its public id (an HKDF output of its own: it reveals nothing)."""

    id: bytes
    cipher: AESGCM

    @classmethod
    def derive(cls, secret: bytes) -> "PayloadKey":
        return cls(
            id=_hkdf(secret, _KEY_ID_INFO, 8).hex().encode(),
            cipher=AESGCM(_hkdf(secret, _CIPHER_INFO, 32)),
        )


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=info).derive(secret)


class HubCodec(PayloadCodec):
    """Encrypts with the first key, decrypts with whichever key a payload names."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("the payload codec needs at least one key")
        self._keys = [PayloadKey.derive(secret) for secret in secrets]
        self._by_id = {key.id: key for key in reversed(self._keys)}

    @classmethod
    def from_settings(cls, settings: Settings) -> "HubCodec | None":
        """The codec of the configured secret keys; None if there is no key.

        Raises ``SecretKeyError`` for a key list that is not valid.
        """
        keys = secret_keys(settings)
        SecretBox(keys)  # the same validation, and message, as for credentials
        listed = (keys or "").replace(",", " ").split()
        if not listed:
            return None
        return cls([base64.urlsafe_b64decode(key) for key in listed])

    @property
    def key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._keys[0].id.decode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.cipher.encrypt(nonce, payload.SerializeToString(), _aad(key.id))
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key.id}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"")
        key = self._by_id.get(key_id)
        if key is None:
            raise CodecError(
                f"a payload is encrypted with key id {key_id.decode(errors='replace')!r}, which "
                "none of the configured secret keys has: list the old key behind the new one in "
                "HUB_SECRET_KEY"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            return Payload.FromString(key.cipher.decrypt(nonce, sealed, _aad(key_id)))
        except (InvalidTag, DecodeError):
            raise CodecError(
                "a payload does not decrypt: it was altered, or not sealed by this hub"
            ) from None


def _aad(key_id: bytes) -> bytes:
    """The associated data: binds the ciphertext to its encoding and key id."""
    return ENCODING + b"\0" + key_id


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter every hub process uses, encrypting when a key is set.

    Failure messages and stack traces are encrypted too: a delivery's error quotes the
    receiver's response. The UI and ``temporal workflow show --codec-endpoint`` decode them.
    """
    codec = HubCodec.from_settings(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
