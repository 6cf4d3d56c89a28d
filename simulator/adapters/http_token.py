"""The bearer token of the command endpoints: secure by default.

- ``http.token_env`` / ``http.token_file``: the operator's token, read once at start, never logged.
- neither: a token is generated at start, printed once in the log with a ready-to-paste example,
  and written to a file only the service's user can read (:func:`generated_token_path`); the file
  is removed again when the service stops.
- ``http.open_controls: true``: commands need no token (for a trusted network only; the operator
  says so explicitly).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from simulator.adapters.kafka_options import read_secret
from simulator.config.http import Http

log = logging.getLogger(__name__)

TOKEN_FILE_NAME = "http-token-{port}"  # noqa: S105 - a file name, not a secret


@dataclass
class ControlToken:
    value: bytes | None  # None: open controls
    generated: bool = False
    file: Path | None = None  # where a generated token was written

    @classmethod
    def from_settings(cls, settings: Http, environ: Mapping[str, str]) -> ControlToken:
        if settings.open_controls:
            return cls(None)
        if settings.token_env is not None or settings.token_file is not None:
            return cls(read_secret("http.token", settings.token_env, settings.token_file, environ).encode())
        return cls(secrets.token_urlsafe(32).encode(), generated=True)

    def publish(self, settings: Http, environ: Mapping[str, str], host: str, port: int) -> None:
        """Once the port is known: tell where the controls are and how to use them."""
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - what a wildcard bind means
        example = f"curl -X POST -H 'Authorization: Bearer {{token}}' http://{shown}:{port}/simulation/pause"
        if self.value is None:
            log.warning("http.open_controls is true: anyone who reaches port %s can block machines, pause the "
                        "simulation and change its speed", port)
            return
        if not self.generated:
            log.info("command endpoints need the configured bearer token, e.g. %s", example.format(token="$TOKEN"))  # noqa: S106
            return
        token = self.value.decode()
        path = generated_token_path(settings, environ, port)
        try:
            write_private(path, token + "\n")
            self.file = path
            where = f"written to {path}"
        except OSError as exc:
            where = f"could not be written to {path}: {exc.strerror or exc}"
        log.info("command endpoints need this run's bearer token %s (%s); e.g. %s", token, where,
                 example.format(token=token))

    def withdraw(self) -> None:
        """Remove the generated token's file (the token dies with the process)."""
        if self.file is not None:
            with contextlib.suppress(OSError):
                if self.value is not None and self.file.read_bytes().strip() == self.value:
                    self.file.unlink()
            self.file = None


def generated_token_path(settings: Http, environ: Mapping[str, str], port: int) -> Path:
    """Where a generated token goes: ``http.generated_token_file``, else ``http-token-<port>`` in
    ``$RUNTIME_DIRECTORY`` (systemd's RuntimeDirectory=), ``$XDG_RUNTIME_DIR/factorysim`` or
    ``~/.local/state/factorysim``, whichever is set first."""
    if settings.generated_token_file:
        return Path(settings.generated_token_file)
    name = TOKEN_FILE_NAME.format(port=port)
    if environ.get("RUNTIME_DIRECTORY"):
        return Path(environ["RUNTIME_DIRECTORY"].split(":")[0]) / name
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "factorysim" / name
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".local" / "state" / "factorysim" / name


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (its folder too, when created here)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when the file existed with other permissions
        os.write(fd, text.encode())
    finally:
        os.close(fd)
