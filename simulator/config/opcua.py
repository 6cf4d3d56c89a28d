"""The OPC UA server (``opcua:``): where it listens, what it is called, its security policies and
certificate, and who may connect.  Off by default; the service imports the OPC UA library only
when it is enabled (:mod:`simulator.adapters.opcua`)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from simulator.config.common import Strict

SecurityPolicy = Literal["None", "Basic256Sha256-Sign", "Basic256Sha256-SignAndEncrypt"]
SECURITY_POLICIES: tuple[SecurityPolicy, ...] = get_args(SecurityPolicy)
_NAME = Annotated[str, Field(min_length=1, max_length=200)]


class OpcUaUser(Strict):
    """A user name and its password, from an environment variable or a file (exactly one)."""

    username: Annotated[str, Field(min_length=1, max_length=100)]
    password_env: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> OpcUaUser:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("a user needs exactly one of password_env, password_file")
        return self


class OpcUaAuth(Strict):
    anonymous: bool = True  # false: a session needs one of the users' names and passwords
    users: tuple[OpcUaUser, ...] = ()

    @model_validator(mode="after")
    def _someone(self) -> OpcUaAuth:
        if not self.anonymous and not self.users:
            raise ValueError("anonymous: false needs at least one entry in users")
        names = [u.username for u in self.users]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"duplicate username {dup!r}")
        return self


class OpcUaSecurity(Strict):
    """The endpoints' security policies; a signing policy needs the server's certificate: the files
    given, or a self-signed one generated once into ``state_dir`` (kept, so that clients that trust
    it go on trusting it after a restart).  ``trusted_clients_dir``: a folder of client certificates
    (DER or PEM); when given, a client whose certificate is not in it is refused on the signing
    endpoints."""

    policies: tuple[SecurityPolicy, ...] = ("None",)
    certificate_file: str | None = None
    private_key_file: str | None = None
    # default: $STATE_DIRECTORY/opcua (systemd), else ./opcua
    state_dir: str | None = None
    trusted_clients_dir: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> OpcUaSecurity:
        if (self.certificate_file is None) != (self.private_key_file is None):
            raise ValueError("certificate_file and private_key_file go together")
        if not self.policies:
            raise ValueError("policies: give at least one of " + ", ".join(SECURITY_POLICIES))
        if len(set(self.policies)) != len(self.policies):
            raise ValueError("a policy is listed twice")
        return self

    @property
    def signing(self) -> bool:
        return any(p != "None" for p in self.policies)


class OpcUa(Strict):
    enabled: bool = False
    host: Annotated[str, Field(min_length=1)] = "0.0.0.0"  # noqa: S104 - a server for the plant network
    port: Annotated[int, Field(ge=0, le=65535)] = 4840  # 0: any free port (tests)
    namespace_uri: _NAME = "urn:factorysim:plant"
    server_name: _NAME = "factorysim"
    # how often the latest values are written to the address space (one batch per interval)
    update_interval_s: Annotated[float, Field(ge=0.01, le=60, allow_inf_nan=False)] = 0.25
    security: OpcUaSecurity = OpcUaSecurity()
    auth: OpcUaAuth = OpcUaAuth()
