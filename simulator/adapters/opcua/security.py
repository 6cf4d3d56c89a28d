"""The OPC UA server's certificate, its users and the client certificates it trusts.

- The certificate: the files of ``opcua.security`` or, when none are given and a signing policy is
  on, a self-signed one generated once into the state directory (``server_key.pem`` and
  ``server_cert.der``) and kept, so that clients that trusted it go on trusting it after a restart.
- The users: names and passwords from environment variables or files, read once at start;
  passwords are compared in constant time and never logged.
- Trusted clients: with ``trusted_clients_dir``, a client certificate must be one of the
  certificates in that folder (DER or PEM; read at each new session, so a certificate added there
  is trusted without a restart).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.adapters.kafka_options import read_secret
from simulator.config.opcua import OpcUa
from simulator.errors import ConfigError

log = logging.getLogger(__name__)


def state_dir(settings: OpcUa, environ: Mapping[str, str]) -> Path:
    """Where a generated certificate is kept: ``security.state_dir``, else ``$STATE_DIRECTORY/opcua``
    (systemd), else ``./opcua``."""
    if settings.security.state_dir:
        return Path(settings.security.state_dir)
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state or ".") / "opcua"


async def server_certificate(settings: OpcUa, application_uri: str, environ: Mapping[str, str]) -> tuple[Path, Path]:
    """The certificate and private key files of the server (generated when none are configured)."""
    security = settings.security
    if security.certificate_file and security.private_key_file:
        _check_files(security.certificate_file, security.private_key_file)
        return Path(security.certificate_file), Path(security.private_key_file)
    folder = state_dir(settings, environ)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError([f"opcua.security.state_dir: cannot create {folder} ({exc.strerror or exc})"]) from exc
    cert, key = folder / "server_cert.der", folder / "server_key.pem"
    existed = cert.is_file() and key.is_file()
    try:
        await setup_self_signed_certificate(key, cert, application_uri, socket.gethostname(),
                                            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                                            {"commonName": settings.server_name})
    except OSError as exc:
        raise ConfigError([f"opcua.security.state_dir: cannot write the server certificate to {folder} "
                           f"({exc.strerror or exc})"]) from exc
    os.chmod(key, 0o600)
    if not existed:
        log.info("OPC UA: generated a self-signed server certificate %s (SHA-256 %s)", cert, fingerprint(cert))
    return cert, key


def _check_files(certificate: str, key: str) -> None:
    for name, path in (("certificate_file", certificate), ("private_key_file", key)):
        if not Path(path).is_file():
            raise ConfigError([f"opcua.security.{name}: {path} does not exist or is not a file"])


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Users:
    """The asyncua user manager: anonymous sessions if allowed, else a known name and its password."""

    def __init__(self, settings: OpcUa, environ: Mapping[str, str]) -> None:
        self.anonymous = settings.auth.anonymous
        self._passwords: dict[str, bytes] = {}
        for i, user in enumerate(settings.auth.users):
            secret = read_secret(f"opcua.auth.users[{i}].password", user.password_env, user.password_file, environ)
            self._passwords[user.username] = secret.encode()
        self.refused = 0

    @property
    def names(self) -> list[str]:
        return sorted(self._passwords)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None:
            if self.anonymous:
                return User(role=UserRole.User)
            self._refuse("an anonymous session")
            return None
        known = self._passwords.get(username)
        given = (password or "").encode()
        if known is None or not hmac.compare_digest(known, given):
            self._refuse(f"user {username!r} (unknown user or wrong password)")
            return None
        return User(role=UserRole.User, name=username)

    def _refuse(self, who: str) -> None:
        self.refused += 1
        log.warning("OPC UA: refused %s", who)
        return None

    def __repr__(self) -> str:  # never the passwords
        return f"Users(anonymous={self.anonymous}, names={self.names})"


class TrustedClients:
    """The certificate validator of ``trusted_clients_dir``: the client's certificate must be one
    of the folder's, and valid now."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.refused = 0

    def _trusted(self) -> set[bytes]:
        digests: set[bytes] = set()
        for path in sorted(self.folder.glob("*")) if self.folder.is_dir() else []:
            data = path.read_bytes() if path.is_file() else b""
            try:
                pem = b"-----BEGIN" in data
                cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
            except ValueError:
                continue  # not a certificate (a README, a key)
            digests.add(hashlib.sha256(cert.public_bytes(Encoding.DER)).digest())
        return digests

    async def validate(self, cert: x509.Certificate, app_description: ua.ApplicationDescription) -> None:
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            self.refused += 1
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        if hashlib.sha256(cert.public_bytes(Encoding.DER)).digest() not in self._trusted():
            self.refused += 1
            log.warning("OPC UA: refused a client certificate that is not in %s (subject %s)", self.folder,
                        cert.subject.rfc4514_string())
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
