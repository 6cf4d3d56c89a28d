"""Config loading: the reference plant, every error path naming its key, environment overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.config.loader import config_path, load, parse
from simulator.config.schema import Config
from simulator.errors import ConfigError


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    node: Any = data
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if leaf.isdigit():
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return data


def _problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, environ=environ or {})
    return caught.value.problems


def test_reference_plant_matches_the_spec(default_config: Config) -> None:
    assert list(default_config.locations) == ["Italia", "Brasile", "Vietnam"]
    assert [s.name for s in default_config.route] == ["fresa_cnc", "tornio", "assemblaggio", "test"]
    assert default_config.locations["Italia"].timezone == "Europe/Rome"
    assert default_config.locations["Brasile"].timezone == "America/Sao_Paulo"
    assert default_config.locations["Vietnam"].timezone == "Asia/Ho_Chi_Minh"
    assert default_config.disruptions.block_probability == 0.05
    assert default_config.location_of("italy") == "Italia"
    assert default_config.location_of("Atlantis") is None


def test_normalised_config_reloads_to_the_same_config(default_config: Config) -> None:
    dumped = yaml.safe_load(yaml.safe_dump(default_config.model_dump(mode="json")))
    assert parse(dumped, environ={}) == default_config


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("simulation.speed", "fast", "simulation.speed: must be 'max' or a number of simulated seconds"),
    ("simulation.speed", 0, "simulation.speed: must be 'max' or a number of simulated seconds per wall second from "
                            "0.001 to 1,000,000 (got 0)"),
    ("simulation.speed", 1e9, "simulation.speed: must be 'max' or a number of simulated seconds per wall second"),
    ("simulation.start", "0001-01-01T00:00:00Z",
     "simulation.start: start must be from 1900-01-01 to before 9000-01-01"),
    ("simulation.seed", "abc", "simulation.seed: must be a whole number (got 'abc')"),
    ("simulation.seed", -1, "simulation.seed: must be >= 0 (got -1)"),
    ("simulation.start", "yesterday", "simulation.start: must be an ISO 8601 instant"),
    ("simulation.start", "2025-06-25T06:00:00", "simulation.start: start needs a UTC offset"),
    ("simulation.sped", 3, "simulation.sped: unknown key; did you mean speed? allowed keys: after_downtime, "
                           "priority_processing, seed, speed, start"),
    ("locations.Italia.timezone", "Mars/Base", "locations.Italia.timezone: unknown time zone 'Mars/Base'"),
    ("locations.Italia.machines.fresa_cnc", -1, "locations.Italia.machines.fresa_cnc: must be >= 0 (got -1)"),
    ("locations.Italia.machines.laser", 2, "locations.Italia.machines.laser: unknown machine type; allowed: "),
    ("locations.Italia.machines.tornio", 0,
     "locations.Italia.machines.tornio: route stage 'tornio' needs at least 1 tornio machine at every location"),
    ("locations.Italia.shift_calendar", "night",
     "locations.Italia.shift_calendar: unknown calendar 'night'; allowed: (none defined in shift_calendars)"),
    ("locations.Brasile.aliases", ["italy"], "locations.Brasile.aliases: 'italy' already names location 'Italia'"),
    ("locations", {}, "locations: must not be empty"),
    ("route", [], "route: must not be empty"),
    ("route", "abc", "route: must be a list (got 'abc')"),
    ("route.0.processing_time", {"distribution": "weibull"},
     "route[0].processing_time: unknown distribution 'weibull'; allowed: constant, uniform, triangular, normal, "
     "lognormal, exponential"),
    ("route.0.processing_time", {"distribution": "uniform", "low": 5},
     "route[0].processing_time.high: required key is missing"),
    ("route.0.processing_time", {"distribution": "uniform", "low": 50, "high": 5},
     "route[0].processing_time: high (5.0) must be >= low (50.0)"),
    ("route.0.processing_time", {"distribution": "normal", "mean": 10, "std": -1},
     "route[0].processing_time.std: must be >= 0"),
    ("route.0.processing_time", {"distribution": "triangular", "low": 1, "mode": 2, "high": 3, "peak": 2},
     "route[0].processing_time.peak: unknown key; allowed keys: distribution, high, low, mode"),
    ("route.0.name", "bad name!", "route[0].name: must match the pattern"),
    ("route.0.machine_type", "teleporter", "route[0].machine_type: unknown machine type 'teleporter'; allowed: "),
    ("route.1.name", "fresa_cnc", "route[1].name: duplicate stage name 'fresa_cnc'"),
    ("route.3.quality.rework_stage", "nope",
     "route[3].quality.rework_stage: 'nope' is neither an earlier stage nor this one; allowed: fresa_cnc, tornio, "
     "assemblaggio, test"),
    ("route.3.quality.scrap_probability", 0.99,
     "route[3].quality: rework_probability + scrap_probability must not exceed 1"),
    ("disruptions.block_probability", 1.5, "disruptions.block_probability: must be <= 1.0 (got 1.5)"),
    ("disruptions.block_reasons", [], "disruptions.block_reasons: must not be empty"),
    ("disruptions.maintenance", {"duration": {"distribution": "constant", "value": 60}},
     "disruptions.maintenance: set every_cycles or every_hours (or both)"),
    ("disruptions.failures", {"mtbf_h": 10, "repair_time": {"distribution": "constant", "value": 1},
                              "on_interrupt": "explode"},
     "disruptions.failures.on_interrupt: must be one of: 'resume' or 'restart' (got 'explode')"),
    ("arrivals.priority_mix", {"urgente": 1},
     "arrivals.priority_mix: unknown priority 'urgente'; allowed: alta, high, normale"),
    ("arrivals.location_mix", {"Atlantis": 1}, "arrivals.location_mix.Atlantis: unknown location; allowed: "
     "Italia, Brasile, Vietnam"),
    ("arrivals.quantity_min", 0, "arrivals.quantity_min: must be >= 1 (got 0)"),
    ("arrivals.process", "bursty", "arrivals.process: must be one of: 'poisson' or 'fixed' (got 'bursty')"),
    ("http.port", 70000, "http.port: must be <= 65535 (got 70000)"),
    ("http.port", "eighty", "http.port: must be a whole number (got 'eighty')"),
    ("kafka.bootstrap_servers", "", "kafka.bootstrap_servers: must be 'embedded' or a comma-separated list"),
    ("kafka.bootstrap_servers", "broker:99999", "kafka.bootstrap_servers: must be 'embedded' or"),
    ("kafka.topics.orders", "bad topic", "kafka.topics.orders: must match the pattern"),
    ("telemetry.sample_interval_s", -5, "telemetry.sample_interval_s: must be >= 0"),
    ("machine_types.robot", {}, "machine_types.robot.model: 'robot' is not a known machine model, so name one"),
])
def test_each_bad_value_is_one_message_naming_key_and_allowed_values(
        default_yaml: dict[str, Any], path: str, value: Any, expected: str) -> None:
    problems = _problems(_with(default_yaml, path, value))
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_every_problem_is_reported_at_once(default_yaml: dict[str, Any]) -> None:
    data = _with(_with(default_yaml, "http.port", -1), "simulation.seed", "x")
    data = _with(data, "route.1.processing_time", {"distribution": "uniform", "low": 9, "high": 1})
    problems = _problems(data)
    assert [p.split(":")[0] for p in problems] == ["simulation.seed", "route[1].processing_time", "http.port"]


def test_speed_accepts_max_in_any_case_and_numbers_as_text(default_yaml: dict[str, Any]) -> None:
    assert parse(_with(default_yaml, "simulation.speed", "MAX"), environ={}).simulation.speed == "max"
    assert parse(_with(default_yaml, "simulation.speed", "120"), environ={}).simulation.speed == 120.0


def test_per_unit_stage_needs_both_setup_and_per_unit_time(default_yaml: dict[str, Any]) -> None:
    data = _with(default_yaml, "route.0", {
        "name": "fresa_cnc", "machine_type": "fresa_cnc",
        "setup_time": {"distribution": "constant", "value": 600}})
    assert _problems(data) == [
        "route[0]: missing processing time: give processing_time, or per_unit_time (+ optional setup_time)"]
    data["route"][0]["processing_time"] = {"distribution": "constant", "value": 60}
    assert _problems(data) == ["route[0]: setup_time only goes with per_unit_time"]
    del data["route"][0]["processing_time"]
    data["route"][0]["per_unit_time"] = {"distribution": "constant", "value": 3}
    cfg = parse(data, environ={})
    assert cfg.route[0].per_unit_time is not None


def test_environment_overrides_documented_keys(default_yaml: dict[str, Any]) -> None:
    cfg = parse(copy.deepcopy(default_yaml), environ={
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2:9092",
        "HEALTH_CHECK_PORT": "9090",
        "FACTORYSIM_SPEED": "max",
        "FACTORYSIM_SEED": "11",
        "FACTORYSIM_START": "2026-01-01T00:00:00+01:00",
        "FACTORYSIM__ARRIVALS__RATE_PER_HOUR": "5.5",
        "FACTORYSIM__DISRUPTIONS__BLOCK_PROBABILITY": "0",
        "UNRELATED": "ignored",
    })
    assert cfg.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert cfg.http.port == 9090
    assert cfg.simulation.speed == "max"
    assert cfg.simulation.seed == 11
    assert cfg.simulation.start.isoformat() == "2025-12-31T23:00:00+00:00"
    assert cfg.arrivals.rate_per_hour == 5.5
    assert cfg.disruptions.block_probability == 0.0


def test_generic_overrides_match_existing_keys_case_insensitively(default_yaml: dict[str, Any]) -> None:
    cfg = parse(copy.deepcopy(default_yaml), environ={"FACTORYSIM__LOCATIONS__VIETNAM__MACHINES__TEST": "4"})
    assert cfg.locations["Vietnam"].machines["test"] == 4
    assert list(cfg.locations) == ["Italia", "Brasile", "Vietnam"]
    problems = _problems(copy.deepcopy(default_yaml), {"FACTORYSIM__LOCATIONS__ATLANTIS__MACHINES__TEST": "1"})
    assert problems == ["FACTORYSIM__LOCATIONS__ATLANTIS__MACHINES__TEST=1 (locations.atlantis.timezone): "
                        "required key is missing"]


def test_bad_environment_values_name_the_key(default_yaml: dict[str, Any]) -> None:
    problems = _problems(copy.deepcopy(default_yaml), {"HEALTH_CHECK_PORT": "http", "FACTORYSIM__": "1"})
    assert problems == ["FACTORYSIM__: environment override names no key (use FACTORYSIM__SECTION__KEY)"]
    problems = _problems(copy.deepcopy(default_yaml), {"HEALTH_CHECK_PORT": "http"})
    assert problems == ["HEALTH_CHECK_PORT=http (http.port): must be a whole number (got 'http')"]


def test_config_path_order(tmp_path: Path) -> None:
    assert config_path("explicit.yaml", {"CONFIG_PATH": "env.yaml"}) == Path("explicit.yaml")
    assert config_path(None, {"CONFIG_PATH": "env.yaml"}) == Path("env.yaml")
    assert config_path(None, {}) == Path("config.yaml")


def test_load_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(missing, environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("simulation: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(broken, environ={})
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="the top level must be a mapping of sections, got list"):
        load(listing, environ={})


def test_load_applies_environment_and_explicit_overrides(tmp_path: Path, default_yaml: dict[str, Any]) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(default_yaml), encoding="utf-8")
    cfg = load(path, environ={"FACTORYSIM_SEED": "5"}, overrides={"arrivals.rate_per_hour": 9})
    assert cfg.simulation.seed == 5
    assert cfg.arrivals.rate_per_hour == 9


def test_shift_calendar_errors_name_the_shift(default_yaml: dict[str, Any]) -> None:
    data = _with(default_yaml, "shift_calendars", {"two": {"shifts": [
        {"name": "early", "start": "06:00", "end": "14:00"},
        {"name": "late", "start": "14:00", "end": "25:00", "capacity": 2}]}})
    problems = _problems(data)
    assert problems == [
        "shift_calendars.two.shifts[1].end: not a local time HH:MM: '25:00'",
        "shift_calendars.two.shifts[1].capacity: must be <= 1.0 (got 2)",
    ]


def test_mqtt_topic_template_with_an_unknown_placeholder_names_the_key(default_yaml: dict[str, Any]) -> None:
    data = copy.deepcopy(default_yaml)
    data["mqtt"] = {"targets": [{"name": "edge", "host": "broker", "format": "uns",
                                 "topic_template": "v1/{tenant}/{nope}"}]}
    with pytest.raises(ConfigError) as info:
        parse(data, environ={})
    assert "mqtt.targets.edge.topic_template" in str(info.value)
    assert "{nope}" in str(info.value) and "{tenant}" in str(info.value)


def test_mqtt_env_overrides_reach_every_target(default_yaml: dict[str, Any]) -> None:
    data = copy.deepcopy(default_yaml)
    data["mqtt"] = {"targets": [{"name": "a", "host": "h1"}, {"name": "b", "host": "h2"}]}
    config = parse(data, environ={"MQTT_BROKER": "broker.lan", "MQTT_PORT": "8883",
                                  "FACTORYSIM__MQTT__TARGETS__1__QOS": "2"})
    assert [(t.host, t.port, t.qos) for t in config.mqtt.targets] == [("broker.lan", 8883, 1), ("broker.lan", 8883, 2)]
    assert parse(copy.deepcopy(default_yaml), environ={"MQTT_BROKER": "x"}).mqtt.targets == ()
