"""The OPC UA server's security against real clients: a Basic256Sha256-only endpoint refuses a
client without a certificate and one whose certificate it does not trust, a wrong password is
refused, a trusted client with the right password reads; the generated server certificate is kept."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.adapters.opcua.security import server_certificate
from simulator.config.opcua import OpcUa
from simulator.net import free_port

from harness.service import running_service, service_config

PASSWORD = "op-3rator-Pa55"
CLIENT_URI = "urn:factorysim:test-client"
MACHINE = "Italia-fresa_cnc-01"


def client_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed OPC UA client certificate (DER) and its key (PEM)."""
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key, CLIENT_URI, {"commonName": name}, [x509.UniformResourceIdentifier(CLIENT_URI), x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH], days=30)
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(dump_private_key_as_pem(key))
    return cert_path, key_path


async def secure_client(url: str, cert: Path, key: Path, user: str | None, password: str | None) -> Client:
    client = Client(url, timeout=10)
    client.application_uri = CLIENT_URI
    await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    if user is not None:
        client.set_user(user)
        client.set_password(password or "")
    return client


async def test_signed_endpoint_refuses_strangers_and_wrong_passwords(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    trusted_dir, elsewhere = tmp_path / "trusted", tmp_path / "elsewhere"
    trusted_dir.mkdir()
    elsewhere.mkdir()
    trusted = client_certificate(trusted_dir, "trusted-client")
    stranger = client_certificate(elsewhere, "stranger")
    port = free_port()
    config = service_config(default_yaml, kafka_bootstrap, unique, opcua={
        "enabled": True, "host": "127.0.0.1", "port": port, "namespace_uri": "urn:factorysim:secure",
        "security": {"policies": ["Basic256Sha256-SignAndEncrypt"], "state_dir": str(tmp_path / "state"),
                     "trusted_clients_dir": str(trusted_dir)},
        "auth": {"anonymous": False, "users": [{"username": "operator", "password_env": "OPCUA_OPERATOR_PASSWORD"}]}})
    url = f"opc.tcp://127.0.0.1:{port}/"
    async with running_service(config, environ={"OPCUA_OPERATOR_PASSWORD": PASSWORD}) as service:
        assert service.opcua is not None
        # no certificate: the only endpoint signs and encrypts
        with pytest.raises((ua.UaError, ConnectionError, OSError, TimeoutError)):
            async with Client(url, timeout=5) as plain:
                await plain.nodes.objects.get_children()
        # a certificate the server does not trust
        with pytest.raises(ua.UaStatusCodeError) as untrusted:
            async with await secure_client(url, *stranger, "operator", PASSWORD):
                pass
        assert untrusted.value.code == ua.StatusCodes.BadCertificateUntrusted
        # a trusted certificate, a wrong password
        with pytest.raises(ua.UaStatusCodeError) as refused:
            async with await secure_client(url, *trusted, "operator", "not-the-password"):
                pass
        assert refused.value.code in (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenRejected)
        # a trusted certificate without a user: anonymous sessions are off
        with pytest.raises(ua.UaError):
            async with await secure_client(url, *trusted, None, None):
                pass
        # a trusted certificate and the right password
        async with await secure_client(url, *trusted, "operator", PASSWORD) as client:
            ns = await client.get_namespace_index("urn:factorysim:secure")
            assert await client.get_node(ua.NodeId(f"{MACHINE}.State", ns)).read_value() == "idle"
            health = service.health()["opcua"]
            assert health["sessions"] == 1
        assert health["security_policies"] == ["Basic256Sha256-SignAndEncrypt"]
        assert health["users"] == ["operator"]
        assert health["sessions_refused"] == 2  # the stranger's certificate, the wrong password
        assert PASSWORD not in json.dumps(service.health())
        assert PASSWORD not in repr(service.opcua.users)
    assert PASSWORD not in caplog.text
    assert (tmp_path / "state" / "server_cert.der").is_file()


async def test_generated_certificate_is_kept_across_restarts(tmp_path: Path) -> None:
    settings = OpcUa(enabled=True, security={"policies": ["Basic256Sha256-Sign"], "state_dir": str(tmp_path)})
    cert, key = await server_certificate(settings, "urn:factorysim:factorysim", {})
    first = cert.read_bytes()
    assert key.stat().st_mode & 0o077 == 0  # the private key is the owner's alone
    again, _ = await server_certificate(settings, "urn:factorysim:factorysim", {})
    assert again.read_bytes() == first
    parsed = x509.load_der_x509_certificate(first)
    assert parsed.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    uris = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == ["urn:factorysim:factorysim"]
