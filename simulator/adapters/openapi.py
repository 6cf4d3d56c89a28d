"""The OpenAPI 3.1 description of the HTTP API (:mod:`simulator.adapters.http`), built from the code.

Request bodies come from the command schema (:data:`simulator.command_schema.FIELDS` and
``ALIASES``) and the bounds of :mod:`simulator.limits`; enumerations (machine states, service
states, plant-wide anomalies) from the modules that define them.  A command field without a schema
here makes :func:`document` fail, so a new field cannot be served undocumented.

The read-only views are open; the commands need ``Authorization: Bearer <token>``.  A rejected
command answers 400 (404 for an unknown machine, 503 when the simulation does not take it in time)
with ``{"error": <reason code>, "detail": <text>}``.  The ``/simulator/...`` routes are the EnMS
factory simulator's control API on top of these (:mod:`simulator.adapters.enms_routes`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import TypeAdapter

from simulator import package_version
from simulator.adapters.enms_routes import ID_FIELDS, MAX_IDS
from simulator.command_schema import ALIASES, FIELDS, MAX_COMMAND_BYTES
from simulator.config.delivery import DeliveryFaults
from simulator.interfaces import HealthStatus, ServiceState
from simulator.limits import CONTROL_CHARACTER, MAX_DURATION_S, MAX_SEVERITY, MAX_SPEED, MAX_TEXT_CHARS, MIN_SPEED
from simulator.model.control import PLANT_WIDE_ANOMALIES
from simulator.model.machine import MachineState

OPENAPI_VERSION = "3.1.0"
PATH_MACHINE = "machine_id"  # the one path parameter
SECURITY_SCHEME = "bearerToken"

# Read-only views: (method, path, operationId, summary) -- open, no token.
VIEWS: tuple[tuple[str, str, str, str], ...] = (
    ("get", "/health", "health", "Health of the service: Kafka, simulation, lots, MQTT targets"),
    ("get", "/health/live", "live", "Liveness: the process answers"),
    ("get", "/health/ready", "ready", "Readiness: healthy and not paused"),
    ("get", "/metrics", "metrics", "Prometheus metrics (text exposition format)"),
    ("get", "/status", "status", "Health and the simulation report"),
    ("get", "/machines", "machines", "Every machine's state and KPIs, by machine id"),
    ("get", "/machines/{machine_id}", "machine", "One machine's state and KPIs"),
    ("get", "/snapshot", "snapshot", "The live model's complete state: a snapshot for `factorysim simulate "
                                     "--from-snapshot`"),
    ("get", "/docs", "docs", "This API's description as a page to read (and try), made from /openapi.json"),
    ("get", "/asyncapi.json", "asyncapi", "The AsyncAPI 3.0 document of the messages this service sends and receives "
                                          "with its configuration (Kafka and MQTT topics, payload schemas, headers, "
                                          "keys)"),
    ("get", "/simulator/status", "simulator_status", "The service's state in the EnMS factory simulator's terms"),
    ("get", "/simulator/machines", "simulator_machines", "The same as GET /machines (EnMS simulator's path)"),
    ("get", "/simulator/machines/{machine_id}", "simulator_machine",
     "The same as GET /machines/{machine_id} (EnMS simulator's path)"),
)
# Views answered as another view is (an alias operation -> the operation it answers as).
VIEW_ALIASES = {"simulator_machines": "machines", "simulator_machine": "machine"}
# Commands: (method, path, command of simulator.command_schema, summary) -- need the bearer token.
COMMAND_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("post", "/machines/{machine_id}/block", "block", "Block the machine now (until repaired, or for duration_s)"),
    ("post", "/machines/{machine_id}/repair", "repair", "End the machine's block now, whatever caused it"),
    ("post", "/machines/{machine_id}/anomaly", "anomaly", "Make the machine show an anomaly in its telemetry"),
    ("delete", "/machines/{machine_id}/anomaly", "clear_anomaly", "End the machine's anomaly (only `type`, if given)"),
    ("post", "/simulation/pause", "pause", "Pause simulated time"),
    ("post", "/simulation/resume", "resume", "Resume simulated time"),
    ("put", "/simulation/speed", "speed", "Set the speed: simulated seconds per wall second, or \"max\""),
    ("post", "/simulator/machines/{machine_id}/anomaly", "anomaly",
     "The same as POST /machines/{machine_id}/anomaly (EnMS simulator's path; it names the fields anomaly_type "
     "and duration_seconds)"),
    ("delete", "/simulator/machines/{machine_id}/anomaly", "clear_anomaly",
     "The same as DELETE /machines/{machine_id}/anomaly (EnMS simulator's path)"),
)
ALIAS_PREFIX = "/simulator/"  # an operation under it is another entrance to a command: its id says so
# The EnMS simulator's start and stop: (method, path, operationId, summary) -- need the bearer token.
CONTROL_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("post", "/simulator/start", "simulator_start",
     "Without machine_ids: resume simulated time. With machine_ids (or factory_ids): start those machines "
     "again (repair each blocked one)"),
    ("post", "/simulator/stop", "simulator_stop",
     "Without machine_ids: pause simulated time. With machine_ids (or factory_ids): stop those machines (block "
     "each until started again)"),
)
# The plant-wide switches: the body is the one an MQTT command topic takes, without the command's name.
COMMAND_ROUTES += (
    ("post", "/plant/bearing_fault", "bearing_fault",
     "Switch a bearing fault on (`value` true) or off on every machine (or `machine_id`'s): hotter, shaking, "
     "its pieces bad, its state faulted"),
    ("post", "/plant/energy_spike", "energy_spike",
     "Switch an energy spike on (`value` true) or off on every machine (or `machine_id`'s): 2.5-4 times the power"),
    ("post", "/plant/network_outage", "network_outage",
     "Cut (`value` true) or restore the network link of the MQTT targets and HTTP sinks (or `target`'s): "
     "nothing is sent, records wait (with a spool, on disk) and go out in order when it ends or after "
     "`duration_s` wall seconds"),
    ("post", "/delivery/faults", "delivery_faults",
     "Set the delivery faults of every MQTT target and HTTP sink (or `target`'s), replacing the ones in force: "
     "duplicates, drops, late and reordered messages, scheduled outages; no fields: all off"),
)

# text fields refuse the control characters of simulator.limits.CONTROL_RANGES
NO_CONTROL_CHARACTERS = "^[^" + CONTROL_CHARACTER.pattern.removeprefix("[").removesuffix("]") + "]*$"


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": NO_CONTROL_CHARACTERS,
            "description": f"{description}; 1..{MAX_TEXT_CHARS} characters, no control characters"}


def _inline(annotation: Any, description: str | None) -> dict[str, Any]:
    """The JSON schema of a delivery faults field, as the config validates it (no references)."""
    schema = TypeAdapter(annotation).json_schema(ref_template="#/$defs/{model}")
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                return resolve(definitions[ref.rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node
    resolved: dict[str, Any] = resolve(schema)
    if description:
        resolved["description"] = description
    return resolved


def _nullable(ref: str) -> dict[str, Any]:
    return {"oneOf": [{"$ref": ref}, {"type": "null"}]}


def _object(properties: dict[str, Any], required: Iterable[str] | None = None, *,
            description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": sorted(properties if required is None else required)}
    if description:
        schema["description"] = description
    return schema


NUMBER: dict[str, Any] = {"type": "number"}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
SHARE: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1}
TEXT_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}

# The schema of every field a command can carry (command_schema.FIELDS names them; the path gives machine_id).
FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "machine_id": _text("Machine id, as in GET /machines"),
    "reason": {**_text("Why the machine is blocked (shows in telemetry and lot events)"), "default": "manual"},
    "duration_s": {"$ref": "#/components/schemas/Duration"},
    "type": {**_text("Anomaly type: the machine type's own or a plant-wide one"),
             "examples": list(PLANT_WIDE_ANOMALIES)},
    "severity": {"$ref": "#/components/schemas/Severity"},
    "speed": {"$ref": "#/components/schemas/Speed"},
    "value": {"type": "boolean", "description": "The plant-wide switch (network_outage: the outage) on or off"},
    "target": _text("An MQTT target's or HTTP sink's name (default: all; network_outage: those with uplink true)"),
    **{name: _inline(Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation,
                     field.description)
       for name, field in DeliveryFaults.model_fields.items()},
}


def _components() -> dict[str, Any]:
    block = _object({"reason": TEXT_OR_NULL, "cause": TEXT_OR_NULL, "since_s": NUMBER,
                     "until_s": {"type": ["number", "null"], "description": "null: until repaired"}},
                    description="The block a machine is in")
    anomaly = _object({"type": {"type": "string"}, "severity": {"$ref": "#/components/schemas/Severity"},
                       "until_s": {"type": ["number", "null"], "description": "null: until cleared"}},
                      description="The anomaly in force")
    machine = _object({
        "location": {"type": "string"}, "type": {"type": "string"},
        "state": {"$ref": "#/components/schemas/MachineState"},
        "utilization": SHARE, "availability": SHARE, "performance": SHARE, "quality": SHARE, "oee": SHARE,
        "cycles": COUNT, "good_cycles": COUNT, "running_s": NUMBER, "idle_s": NUMBER, "blocked_s": NUMBER,
        "maintenance_s": NUMBER, "off_shift_s": NUMBER, "maintenances": COUNT,
        "current_lot": TEXT_OR_NULL, "state_since_s": NUMBER, "blocked": {"type": "boolean"},
        "cycles_since_maintenance": COUNT, "pieces_since_maintenance": COUNT, "last_maintenance_s": NUMBER,
        "block": _nullable("#/components/schemas/Block"), "anomaly": _nullable("#/components/schemas/Anomaly"),
    }, description="A machine's state and KPIs")
    health = _object({
        "status": {"enum": [str(status) for status in HealthStatus]},
        "state": {"$ref": "#/components/schemas/ServiceState"},
        "timestamp": {"type": "string", "description": "Now (UTC, wall clock)"},
        "uptime_seconds": {"type": "number", "minimum": 0},
        "kafka_broker": {"type": "string", "description": "The Kafka bootstrap servers (the same as kafka.broker)"},
        "kafka": _object({"broker": {"type": "string"}, "embedded": {"type": "boolean"},
                          "connected": {"type": "boolean"}, "last_error": TEXT_OR_NULL, "fatal_error": TEXT_OR_NULL,
                          "consumer_lag": {"type": ["integer", "null"], "minimum": 0},
                          "intake_paused": {"type": "boolean"}, "records_in_flight": COUNT}),
        "simulation": _object({"sim_time_s": {"type": "number", "minimum": 0}, "sim_time_utc": {"type": "string"},
                               "speed": {"$ref": "#/components/schemas/Speed"},
                               "lag_s": {"type": "number", "minimum": 0},
                               "max_lag_s": {"type": "number", "minimum": 0}, "paused": {"type": "boolean"},
                               "held_by": {"type": "array", "items": {"type": "string"}},
                               "warm_up_s": {"type": "number", "minimum": 0}, "warming_up": {"type": "boolean"},
                               "outbox_depth": COUNT, "outbox_full": {"type": "boolean"}}),
        "lots": _object({"in_progress": COUNT, "completed": COUNT, "scrapped": COUNT, "received": COUNT}),
        "mqtt": _object({"targets": {"type": "array", "items": {"type": "object"}}}),
        "http_sinks": _object({"targets": {"type": "array", "items": {"type": "object"}}}),
        "delivery": _object({
            "network_outage": {"type": "object", "additionalProperties": {"enum": ["command", "schedule"]},
                               "description": "target -> why its link is down"},
            "faults": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "target -> the delivery faults on (what it receives is altered on purpose)"},
            "warnings": {"type": "array", "items": {"type": "string"}}}),
        "opcua": {"type": "object", "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"],
                  "description": "The OPC UA server: endpoint, sessions, values written, events, method calls "
                                 "(only enabled: false when it is off)"},
    }, description="Health of the service (503: unhealthy)")
    return {
        "securitySchemes": {SECURITY_SCHEME: {
            "type": "http", "scheme": "bearer",
            "description": "The control token: http.token_env / http.token_file, or the one the service "
                           "generated at start"}},
        "schemas": {
            "Duration": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S,
                         "description": f"Simulated seconds, more than 0 and at most {MAX_DURATION_S:.0f} "
                                        "(ten years); left out: until repaired or cleared"},
            "Severity": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SEVERITY, "default": 1,
                         "description": f"How strongly the anomaly shows, more than 0 and at most {MAX_SEVERITY:g}"},
            "Speed": {"oneOf": [{"const": "max", "description": "as fast as possible"},
                                {"type": "number", "minimum": MIN_SPEED, "maximum": MAX_SPEED,
                                 "description": "simulated seconds per wall second"}]},
            "MachineState": {"enum": [state.value for state in MachineState]},
            "ServiceState": {"enum": [str(state) for state in ServiceState]},
            "Error": _object({"error": {"type": "string", "minLength": 1, "description": "Reason code"},
                              "detail": {"type": "string", "minLength": 1,
                                         "description": "What is wrong, naming the bound"}},
                             description="A refused request"),
            "UnknownMachine": _object({"error": {"const": "unknown_machine"},
                                       "detail": {"type": "string", "minLength": 1},
                                       "machine_id": {"type": "string"},
                                       "known": {"type": "array", "items": {"type": "string"}}},
                                      description="GET of a machine that does not exist"),
            "Block": block,
            "Anomaly": anomaly,
            "Machine": machine,
            "MachineDetail": {"allOf": [{"$ref": "#/components/schemas/Machine"},
                                        _object({"id": {"type": "string"}})]},
            "Health": health,
            "Probe": _object({"status": {"type": "string"}, "state": {"$ref": "#/components/schemas/ServiceState"},
                              "reasons": {"type": "array", "items": {"type": "string"},
                                          "description": "why the service is not ready (a 503 only)"}},
                             required=["status", "state"]),
            "Status": _object({"health": {"$ref": "#/components/schemas/Health"}, "report": {"type": "object"}}),
            "SimulatorStatus": _object({
                "status": {"enum": ["starting", "running", "stopping", "stopped"],
                           "description": "stopped: paused (POST /simulator/stop) or the service stopped"},
                "uptime_seconds": {"type": "number", "minimum": 0}, "factories_count": COUNT,
                "machines_count": COUNT, "running_machines": COUNT,
                "total_readings_generated": {**COUNT, "description": "records the model made"},
                "mqtt_connected": {"type": "boolean", "description": "every MQTT target connected (false: none)"},
                "mqtt_messages_published": COUNT,
                "configuration": _object({
                    "enable_anomalies": {"type": "boolean", "description": "random anomalies are on"},
                    "anomaly_probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                                            "description": "a machine's chance a day to start one (null: off)"},
                    "speed": {"$ref": "#/components/schemas/Speed"}}),
                "paused": {"type": "boolean"}, "sim_time_s": {"type": "number", "minimum": 0},
                "health": {"enum": [str(status) for status in HealthStatus]},
            }, description="The service's state in the EnMS factory simulator's terms"),
            "MachineSelection": {
                "type": "object", "additionalProperties": False,
                "properties": {name: {"type": ["array", "null"], "maxItems": MAX_IDS, "items": _text(what)}
                               for name, what in zip(ID_FIELDS, ("Machine id, as in GET /machines",
                                                                 "Plant (location) name or alias"), strict=True)},
                "description": f"Without ids (or null): the whole simulation. At most {MAX_COMMAND_BYTES:,} bytes "
                               "of JSON (a factory names all its machines at once)"},
            "ControlAnswer": _object({
                "message": {"type": "string"},
                "success": {"type": "boolean", "description": "false: a machine refused (see data.machines)"},
                "data": _object({
                    "command": {"enum": ["pause", "resume", None], "description": "null: machines were named"},
                    "paused": {"type": "boolean"}, "held_by": {"type": "array", "items": {"type": "string"}},
                    "sim_time_s": NUMBER,
                    "machines": {"type": "array", "items": _object({
                        "machine_id": {"type": "string"},
                        "outcome": {"enum": ["started", "stopped", "already running", "already stopped",
                                             "refused"]},
                        "state": {"$ref": "#/components/schemas/MachineState"},
                        "error": {"type": "string", "description": "why it refused (a reason code)"},
                        "detail": {"type": "string"}}, ["machine_id", "outcome", "state"])},
                    "running_machines": COUNT, "total_machines": COUNT},
                    ["command", "machines", "running_machines", "total_machines"])},
                description="The answer of POST /simulator/start and /simulator/stop"),
            "Snapshot": _object({
                "v": {"const": 1}, "id": {"type": "string"}, "run": {"type": "string"},
                "fingerprint": {"type": "string", "description": "SHA-256 of the config's model part"},
                "model_version": COUNT, "sim_time_s": {"type": "number", "minimum": 0},
                "inputs_through": {"type": "object", "additionalProperties": COUNT,
                                   "description": "Per plant: the journal number of its last input applied"},
                "output_through": {"type": "object", "additionalProperties": COUNT,
                                   "description": "Per plant: the number of its last output record"},
                "taken_at": {"type": "string", "description": "UTC"},
                "document": {"type": "object", "description": "The model's state (versioned by model_version)"},
            }, description="The model's state at one simulated instant"),
        },
    }


def _results() -> dict[str, dict[str, Any]]:
    """The 200 body of each command (CommandProcessor.apply and simulator.model.control)."""
    machine_id, state = {"type": "string"}, {"$ref": "#/components/schemas/MachineState"}
    anomaly = _nullable("#/components/schemas/Anomaly")
    return {
        "block": _object({"machine_id": machine_id, "state": state,
                          "block": _nullable("#/components/schemas/Block"), "lot": TEXT_OR_NULL}),
        "repair": _object({"machine_id": machine_id, "state": state, "repaired": {"type": "string"},
                           "reason": TEXT_OR_NULL, "lot": TEXT_OR_NULL}),
        "anomaly": _object({"machine_id": machine_id, "anomaly": anomaly}),
        "clear_anomaly": _object({"machine_id": machine_id, "cleared": TEXT_OR_NULL, "anomaly": anomaly}),
        "pause": _object({"paused": {"const": True}, "sim_time_s": NUMBER}),
        "resume": _object({"paused": {"const": False}, "held_by": {"type": "array", "items": {"type": "string"}},
                           "sim_time_s": NUMBER}),
        "speed": _object({"speed": {"$ref": "#/components/schemas/Speed"}}),
        **{name: _object({"anomaly": {"const": name}, "value": {"type": "boolean"},
                          "machines": {"type": "array", "items": {"type": "string"},
                                       "description": "the machines switched (sorted ids)"}})
           for name in PLANT_WIDE_ANOMALIES},
        "network_outage": _object({"value": {"type": "boolean"},
                                   "targets": {"type": "array", "items": {"type": "string"},
                                               "description": "the targets whose link is now down (or up)"},
                                   "duration_s": {"type": ["number", "null"]}}),
        "delivery_faults": _object({"targets": {"type": "object", "additionalProperties": {"type": "string"},
                                                "description": "target -> the faults now in force"}}),
    }


def request_body_schema(command: str, path: str = f"/{{{PATH_MACHINE}}}") -> dict[str, Any]:
    """The JSON body of ``command`` over HTTP at ``path``: its fields of :data:`FIELDS` but the
    machine id when the path gives it and the command's name (the path names it); an alias of
    :data:`ALIASES` in place of a field's name is accepted, both at once are not; any other field is
    refused.  An optional field may be null, which is the same as leaving it out."""
    required, optional = FIELDS[command]
    in_path = {PATH_MACHINE} if f"{{{PATH_MACHINE}}}" in path else set()
    fields = sorted((required | optional) - in_path)
    alias_of = {canonical: alias for alias, canonical in ALIASES.items() if canonical in fields}
    properties: dict[str, Any] = {}
    constraints: list[dict[str, Any]] = []
    must: list[str] = []
    for name in fields:
        field = copy.deepcopy(FIELD_SCHEMAS[name])
        if name not in required:  # null: the same as leaving the field out
            field = {"anyOf": [field, {"type": "null", "description": "the same as leaving the field out"}]}
        properties[name] = field
        alias = alias_of.get(name)
        if alias is not None:
            properties[alias] = {"allOf": [copy.deepcopy(field)], "deprecated": True,
                                 "description": f"another name of {name!r}"}
        if name in required:
            if alias is None:
                must.append(name)
            else:
                constraints.append({"oneOf": [{"required": [name]}, {"required": [alias]}]})
        elif alias is not None:
            constraints.append({"not": {"required": [name, alias]}})
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if must:
        schema["required"] = must
    if constraints:
        schema["allOf"] = constraints
    return schema


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description, headers)


def _machine_parameter(machine_ids: list[str]) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": PATH_MACHINE, "in": "path", "required": True,
                                 "schema": copy.deepcopy(FIELD_SCHEMAS[PATH_MACHINE])}
    if machine_ids:
        parameter["examples"] = {mid: {"value": mid} for mid in machine_ids}
    return parameter


def _view_operation(operation_id: str, summary: str) -> dict[str, Any]:
    ref = "#/components/schemas/"
    responses: dict[str, Any]
    kind = VIEW_ALIASES.get(operation_id, operation_id)
    if kind == "health":
        responses = {"200": _json({"$ref": ref + "Health"}, "Healthy or degraded"),
                     "503": _json({"$ref": ref + "Health"}, "Unhealthy")}
    elif kind == "live":
        responses = {"200": _json({"$ref": ref + "Probe"}, "Alive")}
    elif kind == "ready":
        responses = {"200": _json({"$ref": ref + "Probe"}, "Ready"),
                     "503": _json({"$ref": ref + "Probe"}, "Not ready (starting, stopping, unhealthy or paused)")}
    elif kind == "metrics":
        responses = {"200": {"description": "Prometheus text exposition format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}}
    elif kind == "status":
        responses = {"200": _json({"$ref": ref + "Status"}, "Health and report")}
    elif kind == "simulator_status":
        responses = {"200": _json({"$ref": ref + "SimulatorStatus"}, "The state")}
    elif kind == "docs":
        responses = {"200": {"description": "A self-contained HTML page (it loads nothing but /openapi.json)",
                             "content": {"text/html": {"schema": {"type": "string"}}}}}
    elif kind == "asyncapi":
        responses = {"200": _json({"type": "object", "required": ["asyncapi", "info", "channels"],
                                   "properties": {"asyncapi": {"const": "3.0.0"}}}, "The AsyncAPI document")}
    elif kind == "snapshot":
        responses = {"200": _json({"$ref": ref + "Snapshot"}, "The snapshot"),
                     "503": _error("The run is not live (starting, recovering, stopping) or the simulation did not "
                                   "take the snapshot in time (reason code unavailable)")}
    elif kind == "machines":
        responses = {"200": _json({"type": "object", "additionalProperties": {"$ref": ref + "Machine"}},
                                  "Machines by id")}
    else:
        responses = {"200": _json({"$ref": ref + "MachineDetail"}, "The machine"),
                     "404": _json({"$ref": ref + "UnknownMachine"}, "No such machine")}
    return {"operationId": operation_id, "summary": summary, "tags": ["views"], "security": [],
            "responses": responses}


def _unauthorized() -> dict[str, Any]:
    return _error("Missing or wrong bearer token", headers={
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="factorysim"'}})


def _control_operation(operation_id: str, summary: str) -> dict[str, Any]:
    """POST /simulator/start or /simulator/stop."""
    ref = "#/components/schemas/"
    return {
        "operationId": operation_id, "summary": summary, "tags": ["commands"],
        "security": [{SECURITY_SCHEME: []}],
        "requestBody": {"required": False, "description": "Which machines (left out: the whole simulation)",
                        "content": {"application/json": {"schema": {"$ref": ref + "MachineSelection"}}}},
        "responses": {
            "200": _json({"$ref": ref + "ControlAnswer"}, "Applied (success false: a machine refused)"),
            "400": _error("A malformed body or an unknown factory (reason codes as for commands)"),
            "401": _unauthorized(),
            "404": _error("No such machine (reason code unknown_machine; nothing applied)"),
            "413": {"description": "The body is larger than the server reads at all",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "503": _error("The simulation did not take a command in time (reason code unavailable; the machines "
                          "before it are applied)"),
        },
    }


def _command_operation(command: str, summary: str, path: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result``: the 200 body's schema."""
    body = request_body_schema(command, path)
    required = bool(FIELDS[command][0] - {PATH_MACHINE})  # else no body at all is the same as {}
    responses: dict[str, Any] = {
        "200": _json(_object({"command": {"const": command}, **result["properties"]},
                             ["command", *result["required"]]), "Applied"),
        "400": _error("Malformed, out of bounds or not applicable now (the reason code says which)"),
    }
    responses["401"] = _unauthorized()
    if PATH_MACHINE in FIELDS[command][0] | FIELDS[command][1]:  # in the path, or in the body
        responses["404"] = _error("No such machine (reason code unknown_machine)")
    responses["413"] = {"description": "The body is larger than the server reads at all",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}
    responses["503"] = _error("The simulation did not take the command in time (reason code unavailable)")
    return {
        "operationId": f"simulator_{command}" if path.startswith(ALIAS_PREFIX) else command,
        "summary": summary, "tags": ["commands"],
        "security": [{SECURITY_SCHEME: []}],
        "requestBody": {"required": required, "description": "The path names the command (and the machine)",
                        "content": {"application/json": {"schema": body}}},
        "responses": responses,
    }


def document(machine_ids: Iterable[str] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP API (a new dict each call).  ``machine_ids``, when
    given (the plant's, e.g. ``sorted(sim.plant.machines)``), become examples of the path parameter."""
    ids = sorted(machine_ids)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, operation_id, summary in VIEWS:
        paths.setdefault(path, {})[method] = _view_operation(operation_id, summary)
    results = _results()
    for method, path, command, summary in COMMAND_ROUTES:
        paths.setdefault(path, {})[method] = _command_operation(command, summary, path, results[command])
    for method, path, operation_id, summary in CONTROL_ROUTES:
        paths.setdefault(path, {})[method] = _control_operation(operation_id, summary)
    for path, item in paths.items():
        if f"{{{PATH_MACHINE}}}" in path:
            item["parameters"] = [_machine_parameter(ids)]
    version = package_version()
    return copy.deepcopy({  # no part shared between two places of the document
        "openapi": OPENAPI_VERSION,
        "info": {"title": "factorysim", "version": version,
                 "description": "Health, monitoring and runtime commands of a factorysim service."},
        "tags": [{"name": "views", "description": "Read-only, open"},
                 {"name": "commands", "description": "Change the running simulation; need the bearer token"}],
        "paths": paths,
        "components": _components(),
    })
