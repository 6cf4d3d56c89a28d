"""Hostile input to the command schema and the HTTP API (SPEC section 10: no command or value, however
extreme, crashes the service or makes it build unbounded work; a value out of bounds answers 400).

a. ``parse_command`` and ``CommandProcessor.execute`` (the MQTT entrance: raw bytes) over arbitrary
   JSON-like payloads and targeted extremes: a Command or CommandRejected, never anything else, and
   every accepted Command within the bounds of :mod:`simulator.limits`.
b. hypothesis-generated requests to every endpoint of a real service on the real broker: 2xx or 4xx,
   4xx for every value out of bounds, and after each one the service still answers /health in 1 s.
c. schemathesis: the OpenAPI document of :mod:`simulator.adapters.openapi` against such a service
   (no 5xx; status codes, content types, headers and bodies as documented; schema-invalid requests
   refused).

The live tests share one service across their examples on purpose (effects add up, as in
production), so they do not shrink: a failure names the request and the ones before it.
FACTORYSIM_FUZZ_EXAMPLES scales the number of examples of the live tests (default 150).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import unicodedata
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from simulator.adapters import openapi
from simulator.adapters.http import HttpServer
from simulator.command_schema import ALIASES, COMMANDS, FIELDS, PLANT_WIDE, Command, parse_command
from simulator.config.schema import Config
from simulator.errors import CommandRejected
from simulator.io_metrics import IoMetrics
from simulator.limits import MAX_DURATION_S, MAX_SEVERITY, MAX_SPEED, MAX_TEXT_CHARS, MIN_SPEED, control_characters
from simulator.model.records import NullSink
from simulator.model.simulation import Simulation
from simulator.programs.service import Service
from simulator.runtime.commands import CommandProcessor
from simulator.runtime.driver import Driver

from harness.http_fuzz import ServiceProcess
from harness.service import orders, produce, service_config

# hypothesis builds the repr of every example it runs and warns when one passes 30 kB: hostile
# payloads here are that large on purpose
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning")

TOKEN_ENV = "FACTORYSIM_TEST_HTTP_TOKEN"
TOKEN = f"fuzz-{uuid.uuid4().hex}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIVE_EXAMPLES = int(os.environ.get("FACTORYSIM_FUZZ_EXAMPLES", "150"))
REQUEST_TIMEOUT_S = 15.0  # a command may take up to CommandProcessor.timeout_s (10 s) and then answer 503
MACHINE = "Italia-fresa_cnc-01"
MACHINE_COMMANDS = frozenset(name for name, (required, _) in FIELDS.items() if "machine_id" in required)

# -- the contract: which values are within bounds ---------------------------------------------------------


def _float(value: object) -> float | None:
    """``value`` as a float when it is a number (not a bool), else None; huge ints become inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def valid_text(value: object) -> bool:
    return (isinstance(value, str) and 1 <= len(value) <= MAX_TEXT_CHARS
            and not any(unicodedata.category(c) == "Cc" for c in value))


def valid_duration(value: object) -> bool:
    number = _float(value)
    return number is not None and math.isfinite(number) and 0 < number <= MAX_DURATION_S


def valid_severity(value: object) -> bool:
    number = _float(value)
    return number is not None and math.isfinite(number) and 0 < number <= MAX_SEVERITY


def valid_speed(value: object) -> bool:
    """"max" or a number in [MIN_SPEED, MAX_SPEED] (text that reads as such a number included)."""
    if isinstance(value, str):
        if value.strip().lower() == "max":
            return True
        try:
            value = float(value)
        except ValueError:
            return False
    number = _float(value)
    return number is not None and math.isfinite(number) and MIN_SPEED <= number <= MAX_SPEED


VALID_FIELD = {
    "machine_id": valid_text, "reason": valid_text, "type": valid_text, "duration_s": valid_duration,
    "severity": valid_severity, "speed": valid_speed, "value": lambda v: isinstance(v, bool),
}


def out_of_bounds(fields: Mapping[str, Any], command: object) -> list[str]:
    """The fields of a command object whose value the contract refuses (aliases read as their field;
    null is the same as leaving out a field the command does not require)."""
    required = FIELDS[command][0] if isinstance(command, str) and command in FIELDS else frozenset()
    bad = []
    for key, value in fields.items():
        field = ALIASES.get(key, key)
        check = VALID_FIELD.get(field)
        if check is not None and not check(value) and (value is not None or field in required):
            bad.append(key)
    return bad


def assert_in_bounds(command: Command, payload: object) -> None:
    where = f"accepted {command!r} from {short(payload)}"
    assert command.name in COMMANDS, where
    assert valid_text(command.reason), where
    assert command.machine_id is None or valid_text(command.machine_id), where
    assert command.anomaly is None or valid_text(command.anomaly), where
    if command.name in MACHINE_COMMANDS:
        assert command.machine_id is not None, where
    if "type" in FIELDS[command.name][0]:
        assert command.anomaly is not None, where
    assert command.duration_s is None or valid_duration(command.duration_s), where
    assert valid_severity(command.severity), where
    assert command.speed is None or valid_speed(command.speed), where
    assert isinstance(command.value, bool), where
    if isinstance(payload, Mapping):
        fields = payload
    else:  # the JSON text it was parsed from
        fields = json.loads(payload.encode() if isinstance(payload, str) else bytes(payload))
    bad = out_of_bounds(fields, command.name)
    assert not bad, f"{where}: out of bounds: {bad}"


def short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# -- strategies ---------------------------------------------------------------------------------------------
HUGE_INTS = [2**53 + 1, 2**63, 2**64, 10**30, 10**400, -(10**400)]
EDGE_NUMBERS: list[Any] = [
    0, -0.0, 1, -1, 5e-324, 1e-320, 1e-9, MIN_SPEED, MIN_SPEED * (1 - 1e-9), 0.0009, MAX_SPEED,
    MAX_SPEED * (1 + 1e-12), MAX_SPEED + 1, 1e9, MAX_SEVERITY, math.nextafter(MAX_SEVERITY, math.inf), 9,
    MAX_DURATION_S, math.nextafter(MAX_DURATION_S, math.inf), MAX_DURATION_S + 1, 1e14, 1e15, 1e300,
    1.7976931348623157e308, -1e308, math.inf, -math.inf, math.nan, *HUGE_INTS,
]
EDGE_STRINGS = [
    "", " ", "max", "MAX", " max ", "max\n", "maximum", "1e308", "1e9", "1e6", "3600", "0.0001", "-1", "0",
    "inf", "-inf", "nan", "NaN", "Infinity", "0x10", "1_000", "\x1b[31mred\x1b[0m", "\x00", "tab\there",
    "line\nbreak", "\x7f", "\x85", "a\u202eb", "\u2066x", "\ufeff", "\ud800", "x" * MAX_TEXT_CHARS,
    "x" * (MAX_TEXT_CHARS + 1), "é" * MAX_TEXT_CHARS, "\U0001f3ed" * (MAX_TEXT_CHARS + 1), MACHINE,
    "Atlantis-lathe-01", "bearing_fault", "energy_spike", "block", "pause", "../../etc/passwd", "%00", "{}",
]
numbers = st.one_of(st.sampled_from(EDGE_NUMBERS), st.floats(), st.integers(),
                    st.integers(min_value=2**63 - 10, max_value=2**70))
strings = st.one_of(st.sampled_from(EDGE_STRINGS), st.text(max_size=30),
                    st.text(st.characters(categories=["Cc"]), min_size=1, max_size=5),
                    st.builds(lambda c, n: c * n, st.sampled_from("x\x1bé\U0001f3ed"), st.integers(0, 70_000)))
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
FIELD_NAMES = sorted({f for required, optional in FIELDS.values() for f in required | optional}
                     | set(ALIASES) | {"command"})
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
json_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(keys, inner, max_size=3)),
                         max_leaves=8)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "duration_s": numbers, "severity": numbers, "speed": st.one_of(numbers, strings), "value": st.booleans(),
    "machine_id": strings, "reason": strings, "type": strings,
}


def value_for(key: str) -> st.SearchStrategy[Any]:
    """Mostly a value of the field's own kind (extremes included), sometimes any JSON-like value."""
    plausible = PLAUSIBLE.get(ALIASES.get(key, key))
    if plausible is None:
        return json_like
    return st.integers(0, 4).flatmap(lambda n: plausible if n else json_like)


def often(draw: st.DrawFn, tenths: int) -> bool:
    return draw(st.integers(0, 9)) < tenths


@st.composite
def command_objects(draw: st.DrawFn, names: st.SearchStrategy[Any] | None = None) -> dict[str, Any]:
    """A command object: mostly a known command with its required fields, some of its optional ones
    (under an alias at times), now and then a field it does not take; hostile values throughout."""
    if names is None:
        names = st.sampled_from(COMMANDS) if often(draw, 8) else json_like
    name = draw(names)
    data: dict[str, Any] = {}
    for key in draw(st.sampled_from([("command",), ("command",), ("cmd",), ("command", "cmd"), ()])):
        data[key] = name if often(draw, 9) else draw(json_like)
    required, optional = FIELDS[name] if isinstance(name, str) and name in FIELDS else (frozenset(), frozenset())
    aliases = {canonical: alias for alias, canonical in ALIASES.items()}
    for field in sorted(required | optional):
        if often(draw, 9 if field in required else 5):
            key = aliases[field] if field in aliases and often(draw, 2) else field
            data[key] = draw(value_for(key))
    if often(draw, 2):
        for key in draw(st.lists(keys, unique=True, min_size=1, max_size=3)):
            if key not in ("command", "cmd"):
                data[key] = draw(value_for(key))
    return data


RAW_EDGES = [
    b"", b" ", b"null", b"[]", b'"pause"', b"1e400", b'{"command": "speed", "speed": 1e400}',
    b'{"command": "speed", "speed": -1e400}', b'{"command": "speed", "speed": 1e-400}',
    b'{"command": "speed", "speed": NaN}', b'{"command": "speed", "speed": Infinity}',
    b'{"command": "speed", "speed": 1e308}', b'{"command": "pause", "command": "speed", "speed": 1e308}',
    b'{"command": "speed", "speed": ' + b"9" * 5000 + b"}", b"[" * 5000 + b"]" * 5000,
    b'{"command": "pause"}' + b" " * 70_000, b'\xef\xbb\xbf{"command": "pause"}',
    '{"command": "pause"}'.encode("utf-16"), b'{"command": "block", "machine_id": "\xff"}',
    b'{"command": "block", "machine_id": "\\ud800"}', b'{"command": "block", "machine_id": "a\\u0000b"}',
]


def to_json(value: object) -> bytes:
    """JSON text as a hostile client writes it: big integers in full, NaN and Infinity as literals."""
    return json.dumps(value, allow_nan=True).encode()


raw_payloads = st.one_of(command_objects().map(to_json), st.sampled_from(RAW_EDGES), st.binary(max_size=100),
                         json_like.map(to_json))


# -- a. the command schema --------------------------------------------------------------------------------
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


def check_parse(payload: Any) -> None:
    try:
        command: Command | CommandRejected = parse_command(payload)
    except CommandRejected as rejected:
        command = rejected
    if isinstance(command, CommandRejected):
        assert command.reason, short(payload)
        assert command.detail, short(payload)
    else:
        assert_in_bounds(command, payload)


@FAST
@given(payload=command_objects())
@example(payload={"command": "block", "machine_id": MACHINE, "duration_s": 1e14})
@example(payload={"command": "speed", "speed": 1e308})
@example(payload={"command": "speed", "speed": 1e9})
@example(payload={"command": "anomaly", "machine_id": MACHINE, "type": "bearing_fault", "severity": 1e300})
@example(payload={"command": "block", "machine_id": MACHINE, "reason": "\x1b[2J\x1b[31mjam"})
@example(payload={"command": "block", "machine_id": MACHINE, "duration_s": 10**400})
@example(payload={"command": "speed", "speed": 10**400})
@example(payload={"command": ["block"]})
@example(payload={"cmd": {"a": 1}})
@example(payload={"command": "repair", "machine_id": None})
@example(payload={"command": "anomaly", "machine_id": MACHINE, "type": None})
def test_parse_command_of_a_mapping_returns_a_command_within_bounds_or_rejects(payload: dict[str, Any]) -> None:
    check_parse(payload)


@FAST
@given(payload=raw_payloads)
def test_parse_command_of_raw_bytes_returns_a_command_within_bounds_or_rejects(payload: bytes) -> None:
    check_parse(payload)
    check_parse(payload.decode("utf-8", errors="replace") if len(payload) % 2 else bytearray(payload))


@FAST
@given(payload=st.one_of(json_like, st.dictionaries(keys, json_like, max_size=6)))
def test_parse_command_of_any_json_value_rejects_or_accepts_within_bounds(payload: Any) -> None:
    if isinstance(payload, dict):
        check_parse(payload)
    check_parse(to_json(payload))


def test_the_delivery_commands_parse_into_their_target_duration_and_faults() -> None:
    outage = parse_command(b'{"cmd": "network_outage", "value": true, "target": "cloud", "duration_s": 30}')
    assert (outage.name, outage.value, outage.target, outage.duration_s) == ("network_outage", True, "cloud", 30.0)
    assert parse_command({"command": "network_outage", "value": False}).target is None
    faults = parse_command({"command": "delivery_faults", "drop": 0.1, "delay": {"fraction": 0.2, "max_s": 3},
                            "duplicate": None})
    assert faults.faults is not None and faults.target is None
    assert (faults.faults.drop, faults.faults.delay.fraction, faults.faults.duplicate) == (0.1, 0.2, 0.0)
    nothing = parse_command({"command": "delivery_faults", "target": "dirty"}).faults
    assert nothing is not None and not nothing.active


@pytest.mark.parametrize(("payload", "reason"), [
    ({"cmd": "network_outage"}, "missing_field"), ({"cmd": "network_outage", "value": "on"}, "invalid_field"),
    ({"cmd": "network_outage", "value": True, "machine_id": MACHINE}, "unknown_field"),
    ({"cmd": "network_outages", "value": True}, "unknown_command"),
    ({"cmd": "network_outage", "value": True, "duration_s": 0}, "invalid_duration"),
    ({"cmd": "network_outage", "value": True, "target": "\x1b[2J"}, "invalid_field"),
    ({"command": "delivery_faults", "drop": -0.5}, "invalid_field"),
    ({"command": "delivery_faults", "reorder": {"fraction": 0.1, "window": 0}}, "invalid_field"),
    ({"command": "delivery_faults", "outages": [{"duration_s": 10, "every_s": 5}]}, "invalid_field"),
    ({"command": "delivery_faults", "dup": 0.5}, "unknown_field"),
])
def test_a_malformed_network_outage_is_refused_for_what_is_wrong(payload: dict[str, Any], reason: str) -> None:
    with pytest.raises(CommandRejected) as refused:
        parse_command(payload)
    assert refused.value.reason == reason
    if reason == "unknown_command":
        assert "network_outage" in refused.value.detail  # among the known ones


def test_command_processor_takes_raw_commands_as_the_mqtt_entrance_does(default_config: Config) -> None:
    """execute(raw bytes) through a real driver on a real model: a result or CommandRejected; the
    driver and the model only ever see values within bounds."""
    sim = Simulation(default_config, NullSink())
    metrics = IoMetrics()
    ids = sorted(sim.plant.machines)

    async def attempt(payload: bytes) -> dict[str, Any]:
        driver = Driver(sim, speed=60.0)
        processor = CommandProcessor(driver, metrics, timeout_s=5.0)
        task = asyncio.ensure_future(processor.execute(payload, source="mqtt"))
        await asyncio.sleep(0)
        if not task.done():
            await driver.run(until=task.done, wall_timeout_s=5.0)
        result = await task
        assert driver.speed is None or valid_speed(driver.speed), (short(payload), driver.speed)
        return result

    machine_objects = command_objects(st.sampled_from(sorted(MACHINE_COMMANDS))).flatmap(
        lambda data: st.sampled_from([*ids[:3], "Atlantis-lathe-01"]).map(
            lambda mid: {**data, "machine_id": mid} if "machine_id" not in data else data))

    @FAST
    @given(payload=st.one_of(raw_payloads, machine_objects.map(to_json)))
    @example(payload=b'{"command": ["block"]}')
    @example(payload=b'{"cmd": {"a": 1}, "machine_id": "x"}')
    @example(payload=to_json({"command": "block", "machine_id": ids[0], "duration_s": 1e14}))
    @example(payload=b'{"command": "repair", "machine_id": null}')
    @example(payload=to_json({"command": "anomaly", "machine_id": ids[0], "type": None}))
    def execute(payload: bytes) -> None:
        try:
            result: dict[str, Any] | CommandRejected = asyncio.run(attempt(payload))
        except CommandRejected as rejected:
            result = rejected
        if isinstance(result, CommandRejected):
            assert result.reason, short(payload)
            assert result.detail, short(payload)
        else:
            assert result.get("command") in COMMANDS, (short(payload), result)

    execute()


# -- the document ---------------------------------------------------------------------------------------
def test_the_document_is_valid_openapi_3_1_and_covers_every_route_and_command(
        default_yaml: dict[str, Any], unique: str) -> None:
    document = openapi.document(machine_ids=[MACHINE])
    errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert not errors, errors
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    assert json.loads(json.dumps(document)) == document  # plain JSON, as served
    assert openapi.document() == openapi.document()  # a fresh, equal document each call
    # every route the server registers is documented, and nothing else (HEAD comes with GET)
    service = Service(service_config(default_yaml, "127.0.0.1:9", unique), environ={})
    server = HttpServer(service, "127.0.0.1", 0)
    served = {(route.method.lower(), route.resource.canonical) for route in server.app.router.routes()
              if route.method != "HEAD" and route.resource is not None
              and route.resource.canonical != "/openapi.json"}
    documented = {(method, path) for path, item in document["paths"].items() for method in item
                  if method != "parameters"}
    assert served == documented
    # every command has an operation
    assert {c for _, _, c, _ in openapi.COMMAND_ROUTES} == set(COMMANDS)  # (some under an alias path too)
    for method, path, command, _ in openapi.COMMAND_ROUTES:
        operation = document["paths"][path][method]
        assert operation["security"] == [{openapi.SECURITY_SCHEME: []}]
        assert {"400", "401", "503"} <= set(operation["responses"])
        assert "200" in operation["responses"]
        required, optional = FIELDS[command]
        assert ("404" in operation["responses"]) == ("machine_id" in required | optional)
        properties = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
        in_path = {"machine_id"} if "{machine_id}" in path else set()
        assert {ALIASES.get(p, p) for p in properties} == (required | optional) - in_path
    for command in PLANT_WIDE:
        assert "machine_id" in document["paths"][f"/plant/{command}"]["post"]["requestBody"]["content"][
            "application/json"]["schema"]["properties"]
    for _, path, _, _ in openapi.VIEWS:
        assert document["paths"][path]["get"]["security"] == []


def test_documented_bounds_are_the_code_bounds() -> None:
    schemas = openapi.document()["components"]["schemas"]
    validate = {name: jsonschema_rs.validator_for(schema) for name, schema in schemas.items()
                if name in ("Duration", "Severity", "Speed")}
    for value in [*EDGE_NUMBERS[:-len(HUGE_INTS)], *EDGE_STRINGS, True, None, [1]]:
        if (isinstance(value, float) and not math.isfinite(value)) or value == "\ud800":
            continue  # not JSON
        assert validate["Duration"].is_valid(value) == valid_duration(value), value
        assert validate["Severity"].is_valid(value) == valid_severity(value), value
        if not isinstance(value, str) or value == "max":  # the server also reads " MAX " and "60"
            assert validate["Speed"].is_valid(value) == valid_speed(value), value
    # the text pattern refuses exactly what simulator.limits.control_characters finds
    text = jsonschema_rs.validator_for(openapi.FIELD_SCHEMAS["reason"])
    refused = re.compile(openapi.NO_CONTROL_CHARACTERS.removeprefix("^[^").removesuffix("]*$").join("[]"))
    for code in [*range(0x3000), *range(0xE000, 0x110000, 97)]:
        c = chr(code)
        assert bool(refused.fullmatch(c)) == bool(control_characters(c)), hex(code)
        assert text.is_valid(f"a{c}b") == (not control_characters(c)), hex(code)
    assert text.is_valid("x" * MAX_TEXT_CHARS)
    assert not text.is_valid("x" * (MAX_TEXT_CHARS + 1))
    assert not text.is_valid("")


# -- b. hostile requests to a live service ------------------------------------------------------------------
class Request:
    """One HTTP request of the live test (printed short: hypothesis prints every example it runs)."""

    __slots__ = ("body", "content_type", "fields", "method", "must_refuse", "path")

    def __init__(self, method: str, path: str, body: bytes | None, content_type: str | None,
                 fields: dict[str, Any] | None, must_refuse: tuple[str, ...]) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.content_type = content_type
        self.fields = fields  # the command object sent, when the body is one
        self.must_refuse = must_refuse  # why the contract refuses it (empty: it may be accepted)

    def __repr__(self) -> str:
        body = None if self.body is None else short(self.body, 400)
        return f"{self.method} {short(self.path, 300)} body={body} content_type={self.content_type!r}"


ROUTES = [(m.upper(), p, None) for m, p, _, _ in openapi.VIEWS] + [
    (m.upper(), p, c) for m, p, c, _ in openapi.COMMAND_ROUTES]


@st.composite
def http_requests(draw: st.DrawFn, machine_ids: list[str]) -> Request:
    method, path, command = draw(st.sampled_from(ROUTES))
    must_refuse: list[str] = []
    if "{machine_id}" in path:
        machine_id = draw(st.one_of(st.sampled_from(machine_ids), strings))
        if machine_id not in machine_ids:
            must_refuse.append("unknown machine")
        path = path.replace("{machine_id}", quote(machine_id.encode("utf-8", "surrogatepass"), safe=""))
        if not machine_id or machine_id in (".", ".."):
            must_refuse = []  # the path is a different one (or none): anything but a 5xx
    body: bytes | None = None
    fields: dict[str, Any] | None = None
    kind = draw(st.sampled_from(["none", "object", "object", "object", "raw"]))
    if kind == "object":
        if command is not None:
            names = st.one_of(st.just(command), json_like)
            fields = draw(command_objects(names))
            if draw(st.integers(0, 3)):  # mostly without the name: the path names the command
                fields = {k: v for k, v in fields.items() if k not in ("command", "cmd")}
        else:
            fields = draw(st.dictionaries(keys, json_like, max_size=3))
        body = to_json(fields)
        if command is not None:
            must_refuse += [f"{key}={short(fields[key], 80)}" for key in out_of_bounds(fields, command)]
    elif kind == "raw":
        body = draw(st.one_of(st.sampled_from(RAW_EDGES), st.binary(max_size=64)))
    content_type = draw(st.sampled_from(["application/json", "application/json", "text/plain", None]))
    if command is None:
        must_refuse = []  # the read-only views take no body
    return Request(method, path, body, content_type, fields, tuple(must_refuse))


@pytest.fixture
def live_service(default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str,
                 tmp_path: Path) -> Iterator[ServiceProcess]:
    """The reference plant at speed 60 with milling telemetry samples on, a few lots in progress and
    the bearer token configured, in a child process."""
    overrides = {"simulation.speed": 60, "http.token_env": TOKEN_ENV,
                 "machine_types": {"fresa_cnc": {"sample_interval_s": 20}}}
    with ServiceProcess(kafka_bootstrap, unique, overrides, {TOKEN_ENV: TOKEN}, tmp_path / "service.log") as live:
        topic = service_config(default_yaml, kafka_bootstrap, unique).kafka.topics.orders
        asyncio.run(produce(kafka_bootstrap, topic, orders(12, unique)))
        yield live


def send(http: requests.Session, base_url: str, request: Request) -> requests.Response:
    headers = dict(AUTH)
    if request.content_type is not None:
        headers["Content-Type"] = request.content_type
    return http.request(request.method, base_url + request.path, data=request.body, headers=headers,
                        timeout=REQUEST_TIMEOUT_S, allow_redirects=False)


def test_every_endpoint_survives_hostile_requests(live_service: ServiceProcess) -> None:
    live = live_service
    history: deque[str] = deque(maxlen=15)
    down: list[str] = []  # once the service is down, the examples left fail at once
    http = requests.Session()

    def sample(method: str, path: str, fields: dict[str, Any]) -> Request:
        command = next(c for m, p, c, _ in openapi.COMMAND_ROUTES
                       if m == method.lower() and re.fullmatch(p.replace("{machine_id}", "[^/]+"), path))
        return Request(method, path, to_json(fields), "application/json", fields,
                       tuple(out_of_bounds(fields, command)))

    block = f"/machines/{MACHINE}/block"

    @settings(max_examples=LIVE_EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(request=http_requests(live.machine_ids))
    @example(request=sample("POST", block, {"duration_s": 1e14}))
    @example(request=sample("POST", f"/machines/{MACHINE}/repair", {}))
    @example(request=sample("PUT", "/simulation/speed", {"speed": 1e308}))
    @example(request=sample("POST", block, {}))
    @example(request=sample("POST", f"/machines/{MACHINE}/repair", {}))
    @example(request=sample("PUT", "/simulation/speed", {"speed": 1e9}))
    @example(request=sample("POST", block, {"duration_s": 3600}))
    @example(request=sample("PUT", "/simulation/speed", {"speed": MAX_SPEED}))
    @example(request=sample("POST", "/machines/Italia-fresa_cnc-02/block", {"duration_s": MAX_DURATION_S}))
    @example(request=sample("POST", f"/machines/{MACHINE}/anomaly", {"type": "bearing_fault", "severity": 1e300}))
    @example(request=sample("POST", block, {"reason": "\x1b[2J\x1b[31mjam"}))
    @example(request=sample("POST", f"/machines/{MACHINE}/anomaly", {"type": None}))
    @example(request=sample("POST", f"/machines/{MACHINE}/anomaly", {"anomaly_type": None, "severity": 2}))
    @example(request=Request("POST", block, b'{"duration_s": 1e400}', "application/json", None, ("1e400",)))
    @example(request=Request("POST", block, b"x" * (2 << 20), "application/json", None, ("2 MiB",)))
    @example(request=sample("PUT", "/simulation/speed", {"speed": 60}))
    def exchange(request: Request) -> None:
        assert not down, f"{request!r} not sent: the service is down since {down[0]}"
        history.append(repr(request))
        earlier = "\n  ".join(list(history)[:-1]) or "none"
        try:
            response = send(http, live.base_url, request)
        except requests.RequestException as exc:
            down.append(f"{request!r}: no answer ({exc!r}); {live.ended() or 'still running'}")
            raise AssertionError(f"{down[0]}\nrequests before it:\n  {earlier}\n{live.log_tail()}") from exc
        answer = f"{request!r} -> {response.status_code} {short(response.text, 500)}"
        if request.path == "/health/ready" and response.status_code == 503:  # documented: paused is not ready
            simulation = http.get(f"{live.base_url}/health", timeout=1).json()["simulation"]
            assert simulation["paused"] or simulation["held_by"], f"{answer}, but neither paused nor held"
        else:
            assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500, (
                f"{answer}\nrequests before it:\n  {earlier}\n{live.log_tail()}")
        problem = live.responsive_error(http)
        if problem is not None:
            down.append(f"{answer}: {problem}")
            raise AssertionError(f"after {answer}: {problem}\nrequests before it:\n  {earlier}\n{live.log_tail()}")
        if request.must_refuse:
            assert 400 <= response.status_code < 500, f"{answer}: accepted although {request.must_refuse}"

    exchange()


# -- c. schemathesis ----------------------------------------------------------------------------------------
@contextmanager
def hypothesis_as_it_was() -> Iterator[None]:
    """schemathesis patches hypothesis for the whole process when it builds its first strategy (a
    printer that prints no falsifying example, larger buffers, see
    schemathesis.generation.hypothesis.setup); put it back for the tests that run after this one."""
    from hypothesis import core as root_core
    from hypothesis.internal import entropy
    from hypothesis.internal.conjecture import engine
    from hypothesis.strategies._internal import collections, core

    patched = [(root_core, "RepresentationPrinter"), (root_core, "BUFFER_SIZE"), (engine, "BUFFER_SIZE"),
               (collections, "BUFFER_SIZE"), (core, "is_first_param_referenced_in_function"),
               (entropy, "register_random")]
    saved = [(module, name, getattr(module, name)) for module, name in patched if hasattr(module, name)]
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES_PER_OPERATION = max(5, LIVE_EXAMPLES // 10)


def test_schemathesis_finds_the_service_as_documented(live_service: ServiceProcess) -> None:
    """Every operation of the document, with valid data (half of the time on a real machine) and, where
    there is something to make invalid, with invalid data; one report of every operation that fails."""
    live = live_service
    machine_ids = live.machine_ids
    schema = schemathesis.openapi.from_dict(openapi.document(machine_ids=machine_ids))
    http = requests.Session()
    failures: list[str] = []
    down: list[str] = []  # once the service is down, the operations left are not tried
    with hypothesis_as_it_was():
        for operation, mode in operations_and_modes(schema):
            try:
                exchange_cases(live, http, operation.as_strategy(generation_mode=mode), mode, machine_ids, down)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - a report of every operation
                failures.append(f"{operation.label} ({mode.value}): {exc}")  # (FailureGroup: a BaseExceptionGroup)
            if down:
                failures.append(f"the service is down: {down[0]}\n{live.log_tail()}")
                break
    assert not failures, "\n\n".join(failures)


def operations_and_modes(schema: Any) -> Iterator[tuple[Any, schemathesis.GenerationMode]]:
    """Each operation with valid data, and with invalid data where there is something to make invalid."""
    for result in schema.get_all_operations():
        operation = result.ok()
        yield operation, schemathesis.GenerationMode.POSITIVE
        if "{" in operation.path or operation.method.lower() != "get":
            yield operation, schemathesis.GenerationMode.NEGATIVE


def exchange_cases(live: ServiceProcess, http: requests.Session, cases: st.SearchStrategy[schemathesis.Case],
                   mode: schemathesis.GenerationMode, machine_ids: list[str], down: list[str]) -> None:
    negative = mode is schemathesis.GenerationMode.NEGATIVE
    checks = [*CHECKS, negative_data_rejection] if negative else CHECKS
    known = st.nothing() if negative else st.sampled_from(machine_ids)

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=cases, machine_id=st.one_of(st.none(), known))
    def exchange(case: schemathesis.Case, machine_id: str | None) -> None:
        assert not down, "the service is down"
        if machine_id is not None and case.path_parameters and "machine_id" in case.path_parameters:
            case.path_parameters["machine_id"] = machine_id  # a real machine, half of the time
        try:
            response = case.call(base_url=live.base_url, session=http, headers=AUTH, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            down.append(f"no answer to {case.as_curl_command(headers=AUTH)}: {exc!r}; {live.ended() or 'running'}")
            raise AssertionError(down[0]) from exc
        try:
            case.validate_response(response, checks=checks, headers=AUTH)
        finally:
            problem = resumed_and_responsive(live, http)
            if problem is not None:
                down.append(f"after {case.as_curl_command(headers=AUTH)}: {problem}")
        assert not down, down[0]

    exchange()


def resumed_and_responsive(live: ServiceProcess, http: requests.Session) -> str | None:
    """Undo a pause (so that the documented 503 of /health/ready when paused does not fail the next
    case), then None when the service is still responsive."""
    try:
        resumed = http.post(f"{live.base_url}/simulation/resume", headers=AUTH, timeout=2)
    except requests.RequestException as exc:
        return f"POST /simulation/resume: no answer within 2 s ({exc!r}); {live.ended() or 'still running'}"
    if resumed.status_code != 200:
        return f"POST /simulation/resume answered {resumed.status_code}: {resumed.text[:500]}"
    return live.responsive_error(http)
