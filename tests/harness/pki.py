"""The test PKI: ``make_test_pki(directory)`` makes a test CA, a server certificate for ``localhost`` and
``127.0.0.1``, a client certificate, and an unrelated "wrong" CA with its own client certificate
(openssl CLI); ``Pki`` holds their paths and builds client-side SSL contexts."""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class Pki:
    """Paths of the test PKI (PEM files; keys unencrypted, EC P-256)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path  # CN localhost, SAN DNS:localhost + IP:127.0.0.1, signed by ca
    server_key: Path
    client_cert: Path  # CN factorysim-test-client, signed by ca
    client_key: Path
    wrong_ca_cert: Path  # an unrelated CA: trusting it must make server verification fail
    wrong_ca_key: Path
    wrong_client_cert: Path  # signed by wrong_ca: a broker requiring client certificates must refuse it
    wrong_client_key: Path

    def client_context(self, *, wrong_ca: bool = False, client_cert: bool = False,
                       wrong_client_cert: bool = False) -> ssl.SSLContext:
        """A client-side SSLContext trusting the test CA (or the wrong CA), with host name checks on,
        optionally presenting the client certificate (or the one signed by the wrong CA)."""
        context = ssl.create_default_context(cafile=str(self.wrong_ca_cert if wrong_ca else self.ca_cert))
        if client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        elif wrong_client_cert:
            context.load_cert_chain(str(self.wrong_client_cert), str(self.wrong_client_key))
        return context


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed for the test PKI: `sudo apt-get install openssl`")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_test_pki(directory: Path | str) -> Pki:
    """Create the test PKI under ``directory`` (created if missing) with the openssl CLI; ~0.1 s."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "openssl.cnf").write_text(_OPENSSL_CONFIG, encoding="utf-8")
    newkey = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def ca(name: str, common_name: str) -> None:
        _openssl("req", "-config", "openssl.cnf", "-x509", "-new", *newkey, "-keyout", f"{name}.key",
                 "-out", f"{name}.crt", "-days", "3650", "-sha256", "-subj", f"/CN={common_name}",
                 "-extensions", "ca_ext", cwd=root)

    def leaf(name: str, common_name: str, issuer: str, extensions: str) -> None:
        _openssl("req", "-config", "openssl.cnf", "-new", *newkey, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={common_name}", cwd=root)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.crt", "-CAkey", f"{issuer}.key",
                 "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "3650", "-sha256",
                 "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt", cwd=root)

    ca("ca", "factorysim test CA")
    ca("wrong-ca", "factorysim unrelated CA")
    leaf("server", "localhost", "ca", "server_ext")
    leaf("client", "factorysim-test-client", "ca", "client_ext")
    leaf("wrong-client", "factorysim-wrong-client", "wrong-ca", "client_ext")
    for path in root.iterdir():  # readable by a broker that dropped privileges (container backend)
        path.chmod(0o644)
    return Pki(directory=root, ca_cert=root / "ca.crt", ca_key=root / "ca.key",
               server_cert=root / "server.crt", server_key=root / "server.key",
               client_cert=root / "client.crt", client_key=root / "client.key",
               wrong_ca_cert=root / "wrong-ca.crt", wrong_ca_key=root / "wrong-ca.key",
               wrong_client_cert=root / "wrong-client.crt", wrong_client_key=root / "wrong-client.key")
