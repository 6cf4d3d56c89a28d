"""Opening an HTTP listener, with the failure said in one line that names the setting to change.

A port that another process holds (a second service, anything on 8080) is a runtime failure
(:class:`~simulator.errors.PortInUse`, exit code 1: the config is valid, and the port may be free
at the next start); an address this machine cannot listen on (a host that is not one of its
addresses, a privileged port) is a setting to change (:class:`~simulator.errors.UsageError`,
exit code 2).  Either is one line.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from aiohttp import web

from simulator.errors import PortInUse, UsageError


@dataclass(frozen=True, slots=True)
class PortSetting:
    """Where a listener's port comes from, to name it in an error: the config key, and the
    environment variable and command-line flag that set it, if any."""

    key: str
    env: str | None = None
    flag: str | None = None
    host_key: str = "http.host"  # the config key of the address it binds

    def how_to_change(self) -> str:
        ways = [f"{self.flag} PORT"] if self.flag else []
        ways.append(f"{self.key} in the config")
        if self.env:
            ways.append(f"the environment variable {self.env}")
        listed = ways[0] if len(ways) == 1 else f"{', '.join(ways[:-1])} or {ways[-1]}"
        return f"choose another port with {listed} ({self.key}: 0 takes any free port)"


async def listen(runner: web.AppRunner, host: str, port: int, setting: PortSetting) -> tuple[web.TCPSite, int]:
    """Start a TCP site of ``runner`` on ``host:port``; the site and the port it listens on (the
    one the system chose when ``port`` is 0)."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise listen_error(exc, host, port, setting) from exc
    sockets = getattr(site._server, "sockets", None) or []
    return site, int(sockets[0].getsockname()[1]) if sockets else port


def listen_error(exc: OSError, host: str, port: int, setting: PortSetting) -> PortInUse | UsageError:
    """The error to raise for a failed bind of ``host:port``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(f"port {port} ({setting.key}) is already in use on {host} by another process (another "
                         f"factorysim?): stop it, or {setting.how_to_change()}")
    if exc.errno == errno.EACCES:
        return UsageError(f"{setting.key}: not allowed to listen on port {port} ({reason}; ports below 1024 "
                          f"need privileges): {setting.how_to_change()}")
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"{setting.host_key}: cannot listen on {host!r} ({reason}): give an address of this machine, "
                          f"0.0.0.0 (every interface) or 127.0.0.1 (this machine only)")
    return UsageError(f"{setting.key}: cannot listen on {host}:{port} ({reason}): {setting.how_to_change()}")
