"""The OPC UA server of the service: listens, builds the address space
(:mod:`simulator.adapters.opcua.address_space`), writes the latest values in batches, raises the
alarms as events and runs the machines' methods as runtime commands.

- Values: the outbox tap (:class:`~simulator.adapters.opcua.latest.LatestValues`) keeps the newest
  values of each machine; every ``opcua.update_interval_s`` the machines that changed are written to
  the address space in one batch, a variable only when its value changed (subscribers get one data
  change per change), yielding to the event loop every few hundred writes.
- Alarms: an event of ``MachineAlarmEventType`` on the machine's object, and the same on the
  ``Server`` object (clients that watch the whole server's events).
- Methods: ``Block``, ``Repair``, ``InjectAnomaly``, ``ClearAnomaly`` go through the service's command
  entrance (journaled and counted like HTTP and MQTT commands, source ``opcua``); a rejected one
  answers a Bad status code (``BadInvalidState``, ``BadInvalidArgument``, ``BadOutOfRange``,
  ``BadNodeIdUnknown``, ``BadResourceUnavailable``) with the reason as its output argument.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson
from asyncua import Server, ua
from asyncua.server.address_space import AddressSpace
from asyncua.server.event_generator import EventGenerator
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from simulator.adapters.listening import PortSetting, listen_error
from simulator.adapters.opcua.address_space import MachineNodes, build
from simulator.adapters.opcua.latest import Alarm, LatestValues
from simulator.adapters.opcua.security import TrustedClients, Users, server_certificate
from simulator.config.machine_ids import MachineSlot
from simulator.config.opcua import OpcUa
from simulator.errors import CommandRejected
from simulator.net import free_port

log = logging.getLogger(__name__)
OPCUA_PORT = PortSetting("opcua.port", env="FACTORYSIM__OPCUA__PORT", host_key="opcua.host")
SLICE_S = 0.005  # a batch gives the event loop back this often (the model's driver waits no longer)
POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256-Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256-SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
STATUS_OF_REASON = {
    "already_blocked": ua.StatusCodes.BadInvalidState, "not_blocked": ua.StatusCodes.BadInvalidState,
    "in_maintenance": ua.StatusCodes.BadInvalidState, "off_shift": ua.StatusCodes.BadInvalidState,
    "busy": ua.StatusCodes.BadInvalidState, "invalid_duration": ua.StatusCodes.BadOutOfRange,
    "invalid_severity": ua.StatusCodes.BadOutOfRange, "unknown_machine": ua.StatusCodes.BadNodeIdUnknown,
    "unavailable": ua.StatusCodes.BadResourceUnavailable,
}


class CommandEntrance(Protocol):
    async def execute(self, payload: Mapping[str, Any], source: str = ...) -> dict[str, Any]: ...


class _QuietStartFailure(logging.Filter):
    """asyncua logs a failed bind with a traceback; the service says it in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "error starting server" not in record.getMessage()


class OpcUaServer:
    def __init__(self, settings: OpcUa, slots: tuple[MachineSlot, ...], model_of: Callable[[str], str],
                 commands: Callable[[], CommandEntrance], environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.slots = slots
        self.model_of = model_of
        self.commands = commands
        self.environ = environ
        self.latest = LatestValues(slot.id for slot in slots)
        self.server: Server | None = None
        self.endpoint: str | None = None
        self.port: int | None = None
        self.nodes: dict[str, MachineNodes] = {}
        self._written: dict[ua.NodeId, object] = {}
        self._server_node = ua.NodeId(ua.ObjectIds.Server)
        self._server_events: EventGenerator | None = None
        self._event_type: ua.NodeId | None = None
        self._aspace: AddressSpace | None = None
        self.users: Users | None = None
        self.trusted: TrustedClients | None = None
        self.values_written = 0
        self.batches = 0
        self.events_raised = 0
        self.method_calls: dict[tuple[str, str], int] = {}
        self.last_batch_s = 0.0
        self.build_s = 0.0

    # -- start and stop ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the address space and listen; a busy port is :class:`PortInUse`, an address or a
        setting that cannot work is :class:`UsageError` or a ConfigError naming the key."""
        settings = self.settings
        environ = os.environ if self.environ is None else self.environ
        logging.getLogger("asyncua").setLevel(logging.WARNING)  # its INFO lines are one per request
        self.users = Users(settings, environ)
        wildcard = settings.host in ("0.0.0.0", "::", "")  # noqa: S104 - a wildcard bind
        port = settings.port or free_port("127.0.0.1" if wildcard else settings.host)
        advertised = socket.gethostname() if wildcard else settings.host
        self.endpoint = f"opc.tcp://{advertised}:{port}/"
        server = Server(user_manager=self.users)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.socket_address = (settings.host, port)
        server.set_server_name(settings.server_name)
        application_uri = f"urn:factorysim:{settings.server_name}"
        await server.set_application_uri(application_uri)
        server.set_security_policy([POLICIES[p] for p in settings.security.policies])
        tokens: list[type] = [ua.UserNameIdentityToken] if settings.auth.users else []
        if settings.auth.anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if settings.security.signing:
            cert, key = await server_certificate(settings, application_uri, environ)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        if settings.security.trusted_clients_dir:
            self.trusted = TrustedClients(Path(settings.security.trusted_clients_dir))
            server.set_certificate_validator(self.trusted.validate)
        started = time.monotonic()
        ns = await server.register_namespace(settings.namespace_uri)
        self.nodes, self._event_type = await build(server, ns, self.slots, self.model_of, self._method)
        self.build_s = time.monotonic() - started
        # the address space lives as long as the server: a few objects per attribute of some forty
        # nodes a machine, millions for a large plant; frozen, the collector's full passes (which
        # paused the event loop for seconds with 1,000 machines) no longer walk them
        gc.freeze()
        self._aspace = server.iserver.aspace
        self._server_events = await server.get_event_generator(self._event_type, ua.ObjectIds.Server)
        quiet = _QuietStartFailure()
        server_log = logging.getLogger("asyncua.server.server")
        server_log.addFilter(quiet)
        try:
            await server.start()
        except OSError as exc:
            raise listen_error(exc, self.settings.host, port, OPCUA_PORT) from exc
        finally:
            server_log.removeFilter(quiet)
        self.server, self.port = server, port
        log.info("OPC UA server on %s (%s; %d machines, address space built in %.1f s)", self.endpoint,
                 ", ".join(settings.security.policies), len(self.nodes), self.build_s)

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    # -- the values -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Write the changed values and raise the alarms, once per ``update_interval_s``."""
        interval = self.settings.update_interval_s
        while True:
            started = time.monotonic()
            await self.flush()
            self.last_batch_s = time.monotonic() - started
            await asyncio.sleep(max(0.0, interval - self.last_batch_s))

    async def flush(self) -> int:
        """Write what changed since the previous batch; the number of values written.  The batch
        gives the event loop back every ``SLICE_S`` (the model's driver, Kafka, HTTP go on)."""
        aspace = self._aspace
        if aspace is None:
            return 0
        written = 0
        now = dt.datetime.now(dt.UTC)
        yield_at = time.monotonic() + SLICE_S
        for mid in self.latest.take_changed():
            for node_id, value, vtype in self._values_of(mid):
                if self._written.get(node_id) == value:
                    continue
                self._written[node_id] = value
                await aspace.write_attribute_value(node_id, ua.AttributeIds.Value, ua.DataValue(
                    ua.Variant(value, vtype), SourceTimestamp=now, ServerTimestamp=now))
                written += 1
                self.values_written += 1
            if time.monotonic() >= yield_at:
                await asyncio.sleep(0)
                yield_at = time.monotonic() + SLICE_S
        for alarm in self.latest.take_alarms():
            await self._raise(alarm)
            if time.monotonic() >= yield_at:
                await asyncio.sleep(0)
                yield_at = time.monotonic() + SLICE_S
        self.batches += 1
        return written

    def _values_of(self, mid: str) -> Iterator[tuple[ua.NodeId, object, ua.VariantType]]:
        values = self.latest.machines[mid]
        nodes = self.nodes[mid]
        string, double = ua.VariantType.String, ua.VariantType.Double
        status = nodes.status
        yield status["State"], values.state, string
        yield status["CurrentLot"], values.lot, string
        yield status["Stage"], values.stage, string
        yield status["BlockReason"], values.block_reason, string
        yield status["Anomaly"], values.anomaly, string
        yield status["Alarm"], values.alarm, string
        yield status["SimulatedTime"], round(values.sim_time, 3), double
        counters = values.counters
        if counters is not None:
            for key, node_id in nodes.counters.items():
                value = getattr(counters, key)
                yield (node_id, value, ua.VariantType.Int64) if isinstance(value, int) else \
                    (node_id, round(value, 3), double)
            for key, node_id in nodes.oee.items():
                yield node_id, round(100.0 * getattr(counters, key), 3), double
        signals = values.signals
        if signals:
            for name, (node_id, vtype) in nodes.signals.items():
                value = signals.get(name)
                if value is None:
                    continue
                if vtype == double:
                    value = float(value)
                elif vtype == ua.VariantType.Int64:
                    value = int(value)
                elif vtype == string:
                    value = str(value)
                yield node_id, value, vtype

    async def _raise(self, alarm: Alarm) -> None:
        """One event, emitted by the machine's object and by the Server object (one generator: its
        event's emitting node decides which subscriptions get it, and a generator per machine
        would cost milliseconds each to make)."""
        nodes, generator = self.nodes.get(alarm.machine_id), self._server_events
        if nodes is None or generator is None:
            return
        event = generator.event
        event.SourceNode = nodes.object.nodeid
        event.SourceName = alarm.machine_id
        event.Severity = alarm.severity
        event.MachineId = alarm.machine_id
        event.AlarmKind = alarm.kind
        event.Reason = alarm.reason or ""
        event.SimulatedTime = alarm.sim_time
        for emitting in (nodes.object.nodeid, self._server_node):
            event.emitting_node = emitting
            await generator.trigger(message=alarm.message)
        self.events_raised += 1

    # -- the methods ------------------------------------------------------------------------------
    def _method(self, command: str, machine_id: str) -> Callable[..., Any]:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant] | ua.CallMethodResult:
            return await self.call(command, machine_id, [a.Value for a in args])
        return call

    async def call(self, command: str, machine_id: str, args: list[Any]) -> list[ua.Variant] | ua.CallMethodResult:
        """Run a machine's method as the runtime command ``command``."""
        payload: dict[str, Any] = {"command": command, "machine_id": machine_id}
        try:
            payload.update(self._arguments(command, args))
            result = await self.commands().execute(payload, source="opcua")
        except CommandRejected as exc:
            self._count(command, "rejected")
            status = STATUS_OF_REASON.get(exc.reason, ua.StatusCodes.BadInvalidArgument)
            why = ua.Variant(f"{exc.reason}: {exc.detail}", ua.VariantType.String)
            return ua.CallMethodResult(StatusCode=ua.StatusCode(status), OutputArguments=[why])
        self._count(command, "accepted")
        if command in ("anomaly", "clear_anomaly"):  # shown at once (the next record would show it too)
            anomaly = result.get("anomaly")
            kind = anomaly.get("type") if isinstance(anomaly, dict) else None
            self.latest.anomaly(machine_id, str(kind or "") if command == "anomaly" else "",
                                self.latest.machines[machine_id].sim_time)
        return [ua.Variant(orjson.dumps(result, default=str).decode(), ua.VariantType.String)]

    @staticmethod
    def _arguments(command: str, args: list[Any]) -> dict[str, Any]:
        """The command's fields from the method's input arguments (0 / empty: not given)."""
        def arg(i: int) -> Any:
            return args[i] if i < len(args) else None

        fields: dict[str, Any] = {}
        if command == "block":
            if arg(0):
                fields["reason"] = arg(0)
            if arg(1):
                fields["duration_s"] = arg(1)
        elif command == "anomaly":
            fields["type"] = arg(0) or ""
            if arg(1):
                fields["severity"] = arg(1)
            if arg(2):
                fields["duration_s"] = arg(2)
        elif command == "clear_anomaly" and arg(0):
            fields["type"] = arg(0)
        return fields

    def _count(self, command: str, outcome: str) -> None:
        key = (command, outcome)
        self.method_calls[key] = self.method_calls.get(key, 0) + 1

    # -- views ------------------------------------------------------------------------------------
    @property
    def sessions(self) -> int:
        if self.server is None:
            return 0
        return len(getattr(self.server.iserver, "_external_sessions", {}))

    def health(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "enabled": True,
            "endpoint": self.endpoint,
            "listening": self.server is not None,
            "security_policies": list(settings.security.policies),
            "anonymous": settings.auth.anonymous,
            "users": self.users.names if self.users is not None else [],
            "sessions": self.sessions,
            "machines": len(self.nodes),
            "values_written": self.values_written,
            "batches": self.batches,
            "last_batch_s": round(self.last_batch_s, 4),
            "events_raised": self.events_raised,
            "alarms_dropped": self.latest.alarms_dropped,
            "method_calls": {f"{c}.{o}": n for (c, o), n in sorted(self.method_calls.items())},
            "sessions_refused": (self.users.refused if self.users else 0)
            + (self.trusted.refused if self.trusted else 0),
        }


class OpcUaMetrics(Collector):
    """Prometheus view of the OPC UA server (read at scrape time)."""

    def __init__(self, server: OpcUaServer) -> None:
        self.server = server

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.server
        yield GaugeMetricFamily("factorysim_opcua_sessions", "Open OPC UA sessions", value=s.sessions)
        yield CounterMetricFamily("factorysim_opcua_values_written", "Values written to the OPC UA address space",
                                  value=s.values_written)
        yield CounterMetricFamily("factorysim_opcua_events", "Machine alarms raised as OPC UA events",
                                  value=s.events_raised)
        calls = CounterMetricFamily("factorysim_opcua_method_calls", "OPC UA method calls by command and outcome",
                                    labels=["command", "outcome"])
        for (command, outcome), count in sorted(s.method_calls.items()):
            calls.add_metric([command, outcome], count)
        yield calls
