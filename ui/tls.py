"""The self-signed TLS key pair made once in the workspace for ``simpletuner server --ssl``."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from simpletuner.core.errors import SimpleTunerError
from simpletuner.ui.private_files import private_dir

TLS_FOLDER = "tls"
KEY_FILE = "server.key"
CERT_FILE = "server.crt"
VALID_DAYS = 825  # the longest lifetime browsers accept for a server certificate


def self_signed_paths(workspace_root: Path) -> tuple[Path, Path]:
    """Where the self-signed certificate and key live: ``(cert, key)``."""
    folder = workspace_root / TLS_FOLDER
    return folder / CERT_FILE, folder / KEY_FILE


def ensure_self_signed(workspace_root: Path) -> tuple[Path, Path, bool]:
    """The workspace's self-signed pair, made on first use (EC P-256, SANs localhost, 127.0.0.1 and ::1, key file
    mode 0600). Returns ``(cert, key, created)``."""
    cert_path, key_path = self_signed_paths(workspace_root)
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path, False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SimpleTuner (self-signed)")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    private_dir(key_path.parent)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    os.chmod(key_path, 0o600)  # in case the file existed with looser permissions
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, True


def check_pair(cert: Path, key: Path) -> None:
    """Clear errors for missing or unreadable ``--ssl-cert`` / ``--ssl-key`` files."""
    for flag, path in (("--ssl-cert", cert), ("--ssl-key", key)):
        if not path.is_file():
            raise SimpleTunerError(f"{flag} {path}: no such file")
        if not os.access(path, os.R_OK):
            raise SimpleTunerError(f"{flag} {path}: not readable by this user")
