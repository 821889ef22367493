"""The STARTTLS certificate: load the configured one or make a self-signed one once.

Owns creating and loading the server's TLS context. The self-signed certificate is written
next to the store at first start and reused afterwards, so clients that pin it keep working.
It is made in a child process (``python -m sinkd.server.tls DIR HOSTNAME``): the ``cryptography``
package costs a server ~6 MiB of memory for the rest of its life, for a file made once.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import sys
from pathlib import Path

from sinkd.children import child_env
from sinkd.errors import ConfigError


async def self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """Paths of a self-signed certificate and key in ``directory``, created (by a child
    process) if missing; ``ConfigError`` naming the directory if that fails."""
    cert_path, key_path = directory / "sinkd-cert.pem", directory / "sinkd-key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinkd.server.tls",
        str(directory),
        hostname,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    _, err = await child.communicate()
    if child.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no reason given"]
        raise ConfigError(f"cannot create a self-signed certificate in {directory}: {last[0]}")
    return cert_path, key_path


def create_self_signed(directory: Path, hostname: str) -> None:
    """Write a self-signed certificate and key (EC P-256, ten years) into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "sinkd-cert.pem", directory / "sinkd-key.pem"
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Write the key readable by its owner only, then the certificate.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context for STARTTLS (RFC 3207) from PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key}: cannot load: {exc}") from None
    return context


if __name__ == "__main__":
    create_self_signed(Path(sys.argv[1]), sys.argv[2])
