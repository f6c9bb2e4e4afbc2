"""A raw HTTP/1.1 server on a loopback address for the egress and bounded-response tests.

uvicorn (tests/sink.py) cannot show what these tests look at: how many connections arrived,
how many body bytes went out before the client hung up, a body that trickles, the TLS
server name a client asked for. Each connection reads one request and answers it with a
body of ``size`` bytes, written ``chunk`` at a time, ``interval`` seconds apart.
"""

import asyncio
import datetime
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GIB = 1024**3


@dataclass
class RawServer:
    host: str = "127.0.0.1"
    status: str = "200 OK"
    size: int = 2
    chunk: bytes = b"{}"
    interval: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    sent: int = 0
    """Body bytes written (and drained into the socket) over all connections."""
    hung_up: int = 0
    """Connections the client closed before the whole body was written."""
    server_names: list[str | None] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> "RawServer":
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            pairs = [line.split(":", 1) for line in lines if ":" in line]
            request = {name.strip().lower(): value.strip() for name, value in pairs}
            self.requests.append(request)
            await reader.readexactly(int(request.get("content-length", "0")))
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            writer.write(
                f"HTTP/1.1 {self.status}\r\nContent-Length: {self.size}\r\n{extra}\r\n".encode()
            )
            await self._write_body(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.hung_up += 1
        finally:
            writer.close()

    async def _write_body(self, writer: asyncio.StreamWriter) -> None:
        left = self.size
        while left > 0:
            piece = self.chunk if len(self.chunk) <= left else self.chunk[:left]
            writer.write(piece)
            await writer.drain()
            self.sent += len(piece)
            left -= len(piece)
            if self.interval and left:
                await asyncio.sleep(self.interval)


def certificate(name: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (its own CA): (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_tls(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
