"""A profile's own environment variables (README "Configuration reference", "A profile's own
variables"): every variable the profiles declare lands on its keys, converted where the units
differ; errors name the variable and the key; the precedence file < global variables < profile
variables < FACTORYSIM__… < flags holds; an alias naming an unknown key is an error naming it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.adapters.mqtt_options import credentials
from simulator.config.environment import CONVERSIONS
from simulator.config.loader import config_path, load, parse
from simulator.config.origins import Override, flag
from simulator.config.schema import Config
from simulator.errors import ConfigError

from harness.cli_process import ROOT, factorysim

PROFILES = ROOT / "profiles"


def profile(name: str, environ: dict[str, str], overrides: Any = None) -> Config:
    return load(PROFILES / f"{name}.yaml", environ=environ, overrides=overrides)


def problems_of(name: str, environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        profile(name, environ)
    return caught.value.problems


def shifts(config: Config) -> dict[str, tuple[str, str]]:
    return {s.name: (s.start, s.end) for s in config.shift_calendars["three-shift"].shifts}


# every variable each profile declares: a value to set and what the config shows then
HONOURED: dict[str, dict[str, tuple[str, Callable[[Config], object], object]]] = {
    "spaceship": {
        "AIO_ENABLED": ("true", lambda c: [t.name for t in c.mqtt.enabled_targets], ["aio"]),
        "MQTT_TOPIC_PREFIX": ("spaceyard", lambda c: c.formats.spaceship.topic_prefix, "spaceyard"),
        "MQTT_CLIENT_ID": ("factory-sim-{pid}", lambda c: c.mqtt.targets[1].client_id, "factory-sim-{pid}"),
        "MQTT_AUTH_METHOD": ("NONE", lambda c: c.mqtt.targets[1].auth.method, "none"),
        "SAT_TOKEN_PATH": ("/run/tokens/sat", lambda c: c.mqtt.targets[1].auth.token_file, "/run/tokens/sat"),
    },
    "enms": {
        "COMPRESSOR_INTERVAL": ("2", lambda c: c.machine_types["compressor"].sample_interval_s, 2),
        "HVAC_INTERVAL": ("15", lambda c: c.machine_types["hvac"].sample_interval_s, 15),
        "MOTOR_INTERVAL": ("5", lambda c: c.machine_types["conveyor"].sample_interval_s, 5),
        "PUMP_INTERVAL": ("60", lambda c: c.machine_types["hydraulic_pump"].sample_interval_s, 60),
        "INJECTION_MOLDING_INTERVAL": ("45", lambda c: c.machine_types["injection_moulding"].sample_interval_s, 45),
        "SHIFT_1_START": ("5", shifts, {"early": ("05:00", "14:00"), "late": ("14:00", "22:00"),
                                        "night": ("22:00", "05:00")}),
        "SHIFT_1_END": ("13", shifts, {"early": ("06:00", "13:00"), "late": ("14:00", "22:00"),
                                       "night": ("22:00", "06:00")}),
        "SHIFT_2_START": ("15", shifts, {"early": ("06:00", "14:00"), "late": ("15:00", "22:00"),
                                         "night": ("22:00", "06:00")}),
        "SHIFT_2_END": ("23", shifts, {"early": ("06:00", "14:00"), "late": ("14:00", "23:00"),
                                       "night": ("23:00", "06:00")}),
        "WEEKEND_PRODUCTION_FACTOR": ("0.5", lambda c: c.shift_calendars["three-shift"].weekend_factor, 0.5),
        "ANOMALY_PROBABILITY": ("0.25", lambda c: c.disruptions.anomalies.probability_per_day, 0.25),
    },
    "smart-factory": {
        "MQTT_HOST": ("mqtt.edge.example", lambda c: c.mqtt.targets[0].host, "mqtt.edge.example"),
        "TENANT_ID": ("contoso", lambda c: c.formats.uns.tenant, "contoso"),
        "PLANT_ID": ("plant-07", lambda c: c.formats.uns.plant, "plant-07"),
        "TELEMETRY_INTERVAL_MS": ("500", lambda c: c.telemetry.sample_interval_s, 0.5),
        "CLOUD_API_URL": ("http://cloud.example:8000",
                          lambda c: [(s.name, s.enabled, s.endpoint) for s in c.http_sinks],
                          [("cloud", True, "http://cloud.example:8000/ingest")]),
    },
}


def test_the_reference_plants_api_push_is_off_until_enable_api_and_an_empty_cloud_url_is_an_error() -> None:
    assert [s.enabled for s in load(ROOT / "config.yaml", environ={}).http_sinks] == [False]
    (sink,) = load(ROOT / "config.yaml", environ={"ENABLE_API": "true"}).http_sinks
    assert sink.enabled and sink.auth.value_env == "MOKAMETRICS_API_KEY" and sink.auth.method == "api-key"
    assert problems_of("smart-factory", {"CLOUD_API_URL": ""}) == [
        "CLOUD_API_URL='' (http_sinks[0].url): must be a string (got None)"]


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_every_declared_variable_is_covered_here(name: str) -> None:
    assert set(profile(name, {}).environment) == set(HONOURED[name])


@pytest.mark.parametrize(("name", "var"), [(n, v) for n, variables in HONOURED.items() for v in variables])
def test_each_profile_variable_lands_on_its_keys(name: str, var: str) -> None:
    value, show, expected = HONOURED[name][var]
    unset = profile(name, {})
    assert show(unset) != expected, "the variable must change something"
    assert show(profile(name, {var: value})) == expected


def test_aio_enabled_switches_the_targets_both_ways() -> None:
    assert [t.name for t in profile("spaceship", {}).mqtt.enabled_targets] == ["local"]
    for on in ("true", "True", "yes", "1", "on"):
        assert [t.name for t in profile("spaceship", {"AIO_ENABLED": on}).mqtt.enabled_targets] == ["aio"], on
    for off in ("false", "no", "0", "off"):
        assert [t.name for t in profile("spaceship", {"AIO_ENABLED": off}).mqtt.enabled_targets] == ["local"], off
    assert problems_of("spaceship", {"AIO_ENABLED": "maybe"}) == [
        "AIO_ENABLED=maybe (mqtt.targets.local.enabled): must be true or false (got 'maybe')"]


def test_a_bad_value_names_the_variable_and_the_key() -> None:
    assert problems_of("enms", {"COMPRESSOR_INTERVAL": "fast"}) == [
        "COMPRESSOR_INTERVAL=fast (machine_types.compressor.sample_interval_s): must be a number (got 'fast')"]
    assert problems_of("enms", {"SHIFT_1_START": "25"}) == [
        "SHIFT_1_START=25 (shift_calendars.three-shift.shifts.early.start): must be a whole hour from 0 to 24 or a "
        "local time HH:MM (got '25')"]
    assert problems_of("smart-factory", {"TELEMETRY_INTERVAL_MS": "soon"}) == [
        "TELEMETRY_INTERVAL_MS=soon (telemetry.sample_interval_s): must be a number of milliseconds (got 'soon')"]
    assert problems_of("spaceship", {"MQTT_AUTH_METHOD": "Kerberos"})[0].startswith(
        "MQTT_AUTH_METHOD=Kerberos (mqtt.targets[1].auth.method): must be one of: 'none', 'password' or 'k8s-sat'")


def test_a_problem_found_at_run_time_names_the_profile_variable() -> None:
    missing = "/nonexistent/broker-sat"
    config = profile("spaceship", {"AIO_ENABLED": "true", "SAT_TOKEN_PATH": str(missing)})
    (aio,) = config.mqtt.enabled_targets
    with pytest.raises(ConfigError) as caught, config.errors_located():
        credentials(aio)
    assert caught.value.problems[0].startswith(
        f"SAT_TOKEN_PATH={missing} (mqtt.targets.aio.auth.token_file): cannot read the service account token {missing}")


@pytest.mark.parametrize(("conversion", "text", "value"), [
    ("milliseconds", "2000", 2.0), ("milliseconds", "250", 0.25), ("milliseconds", "1.5", 0.0015),
    ("hour", "6", "06:00"), ("hour", "0", "00:00"), ("hour", "24", "00:00"), ("hour", "6:30", "06:30"),
    ("hour", "22:05", "22:05"), ("not", "true", False), ("not", "NO", True), ("not", "1", False),
    ("lowercase", "K8S-SAT", "k8s-sat"), ("lowercase", " Password ", "password"),
])
def test_conversions(conversion: str, text: str, value: object) -> None:
    assert CONVERSIONS[conversion](text) == value


@pytest.mark.parametrize(("conversion", "text"), [
    ("milliseconds", "abc"), ("milliseconds", "nan"), ("milliseconds", "inf"), ("hour", "25"), ("hour", "-1"),
    ("hour", "6.5"), ("hour", "24:00"), ("hour", "12:60"), ("not", "maybe"), ("not", ""),
])
def test_conversions_refuse_what_they_cannot_read(conversion: str, text: str) -> None:
    with pytest.raises(ValueError, match=r"\(got "):
        CONVERSIONS[conversion](text)


def test_precedence_file_global_profile_generic_flag() -> None:
    key = "mqtt.targets.edge.host"
    host: Callable[[Config], str] = lambda c: c.mqtt.targets[0].host  # noqa: E731
    env: dict[str, str] = {}
    assert host(profile("smart-factory", env)) == "localhost"                      # the file
    env["MQTT_BROKER"] = "global.example"
    assert host(profile("smart-factory", env)) == "global.example"                 # a global variable
    env["MQTT_HOST"] = "profile.example"
    assert host(profile("smart-factory", env)) == "profile.example"                # the profile's variable
    env["FACTORYSIM__MQTT__TARGETS__EDGE__HOST"] = "generic.example"
    assert host(profile("smart-factory", env)) == "generic.example"                # FACTORYSIM__…
    flagged = [Override(key, "flag.example", flag("--host", "flag.example"))]
    assert host(profile("smart-factory", env, flagged)) == "flag.example"          # a flag
    # an error names the source that won
    env["FACTORYSIM__MQTT__TARGETS__EDGE__PORT"] = "99999"
    env["MQTT_PORT"] = "1884"
    assert problems_of("smart-factory", env) == [
        "FACTORYSIM__MQTT__TARGETS__EDGE__PORT=99999 (mqtt.targets[0].port): must be <= 65535 (got 99999)"]


def test_a_profile_variable_wins_over_a_global_one_only_where_it_sets() -> None:
    config = profile("spaceship", {"MQTT_BROKER": "broker.example", "SAT_TOKEN_PATH": "/t", "AIO_ENABLED": "true"})
    local, aio = config.mqtt.targets
    assert (local.host, aio.host) == ("broker.example", "broker.example")
    assert (local.auth.token_file, aio.auth.token_file) == ("/var/run/secrets/tokens/broker-sat", "/t")


def _with_environment(tmp_path: Path, block: dict[str, Any]) -> tuple[Path, int]:
    """profiles/spaceship.yaml with another environment block; the file and the first variable's line."""
    data = (PROFILES / "spaceship.yaml").read_text(encoding="utf-8").split("\nenvironment:")[0]
    text = data + "\n" + yaml.safe_dump({"environment": block}, sort_keys=False)
    path = tmp_path / "profile.yaml"
    path.write_text(text, encoding="utf-8")
    first = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("environment:")) + 1
    return path, first


def test_an_alias_naming_an_unknown_key_is_an_error_naming_the_alias(tmp_path: Path) -> None:
    path, line = _with_environment(tmp_path, {
        "AIO_ON": ["mqtt.targets.aoi.enabled"],
        "PREFIX": "formats.spaceship.prefix",
        "SITE_TZ": "locations.Dockyard.timezone",
        "SPEED_X": "simulation.speed.x",
        "TOKEN": "mqtt.targets.5.auth.token_file",
    })
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})  # whether set or not
    assert caught.value.problems == [
        f"{path} line {line}: environment.AIO_ON: mqtt.targets.aoi.enabled names no config key: mqtt.targets has "
        "no element named 'aoi'; names: local, aio",
        f"{path} line {line + 2}: environment.PREFIX: formats.spaceship.prefix names no config key: "
        "formats.spaceship has no key 'prefix'; allowed: assembly_types, carriers, cnc_part_types, colors, "
        "destinations, printer_part_types, products, topic_prefix",
        f"{path} line {line + 3}: environment.SITE_TZ: locations.Dockyard.timezone names no config key: locations "
        "has no entry 'Dockyard'; it has: Shipyard",
        f"{path} line {line + 4}: environment.SPEED_X: simulation.speed.x names no config key: simulation.speed is "
        "a single value; it has no key 'x'",
        f"{path} line {line + 5}: environment.TOKEN: mqtt.targets.5.auth.token_file names no config key: "
        "mqtt.targets has 2 elements; no [5]",
    ]


def test_an_alias_may_not_redefine_a_global_variable_and_needs_a_known_conversion(tmp_path: Path) -> None:
    path, line = _with_environment(tmp_path, {"MQTT_BROKER": "mqtt.targets.aio.host",
                                              "FACTORYSIM__X": "mqtt.targets.aio.port",
                                              "MESSAGE_CONFIG_PATH": "mqtt.targets.aio.host"})
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.problems == [
        f"{path} line {line}: environment.MQTT_BROKER: MQTT_BROKER already sets mqtt.targets.*.host in every "
        "config; a profile cannot give it another meaning",
        f"{path} line {line + 1}: environment.FACTORYSIM__X: FACTORYSIM__X already sets a key in every config; a "
        "profile cannot give it another meaning",
        f"{path} line {line + 2}: environment.MESSAGE_CONFIG_PATH: MESSAGE_CONFIG_PATH already sets the config file "
        "in every config; a profile cannot give it another meaning",
    ]
    path, line = _with_environment(tmp_path, {"INTERVAL": {"key": "telemetry.sample_interval_s",
                                                           "convert": "minutes"},
                                              "lower-case": "telemetry.sample_interval_s", "NONE": []})
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.problems == [
        f"{path} line {line + 2}: environment.INTERVAL.convert: must be one of: 'milliseconds', 'hour', 'not', "
        "'lowercase' or 'present' (got 'minutes')",
        f"{path} line {line + 3}: environment.lower-case: must match the pattern ^[A-Za-z_][A-Za-z0-9_]*$ "
        "(got 'lower-case')",
        f"{path} line {line + 4}: environment.NONE: must not be empty",
    ]


def test_unknown_generic_variables_stay_errors() -> None:
    problems = problems_of("smart-factory", {"FACTORYSIM__MQTT__TARGETS__EDGE__HOSTNAME": "x"})
    assert problems[0].startswith("FACTORYSIM__MQTT__TARGETS__EDGE__HOSTNAME=x (mqtt.targets[0].hostname): unknown "
                                  "key;")
    assert profile("smart-factory", {"FACTORYSIM__MQTT__TARGETS__EDGE__QOS": "2"}).mqtt.targets[0].qos == 2
    assert problems_of("smart-factory", {"FACTORYSIM__MQTT__TARGETS__EDGY__QOS": "2"}) == [
        "FACTORYSIM__MQTT__TARGETS__EDGY__QOS=2 (mqtt.targets.edgy.qos): names no config key: mqtt.targets has no "
        "element named 'edgy'; names: edge"]
    assert problems_of("smart-factory", {"FACTORYSIM__MQTT__TARGETS__3__QOS": "2"}) == [
        "FACTORYSIM__MQTT__TARGETS__3__QOS=2 (mqtt.targets.3.qos): names no config key: mqtt.targets has 1 element; "
        "no [3]"]


def test_the_environment_block_is_no_part_of_the_plant_fingerprint(default_yaml: dict[str, Any]) -> None:
    plain = parse(default_yaml, environ={})
    declared = parse({**default_yaml, "environment": {"PORT": "http.port"}, "logging": {"stats_interval_s": 5}},
                     environ={})
    assert declared.environment["PORT"][0].key == "http.port"
    assert declared.model_fingerprint == plain.model_fingerprint


def test_message_config_path_names_the_config_file_after_config_path() -> None:
    assert config_path(None, {"MESSAGE_CONFIG_PATH": "a.yaml"}) == Path("a.yaml")
    assert config_path(None, {"MESSAGE_CONFIG_PATH": "a.yaml", "CONFIG_PATH": "b.yaml"}) == Path("b.yaml")
    assert config_path("c.yaml", {"MESSAGE_CONFIG_PATH": "a.yaml"}) == Path("c.yaml")


def test_as_a_user_sees_it_one_line_exit_code_2() -> None:
    ended = factorysim("validate-config", env={"MESSAGE_CONFIG_PATH": str(PROFILES / "enms.yaml"),
                                               "SHIFT_2_END": "noon"})
    assert ended.code == 2
    assert ended.message == ("factorysim: invalid configuration: SHIFT_2_END=noon (shift_calendars.three-shift.shifts."
                             "late.end): must be a whole hour from 0 to 24 or a local time HH:MM (got 'noon')")
    ended = factorysim("validate-config", env={"MESSAGE_CONFIG_PATH": str(PROFILES / "enms.yaml"),
                                               "SHIFT_2_END": "21"})
    assert ended.code == 0
    night = yaml.safe_load(ended.stdout)["shift_calendars"]["three-shift"]["shifts"][2]
    assert (night["name"], night["start"]) == ("night", "21:00")


def test_the_model_fingerprint_follows_the_plant_not_its_connections_or_output_formats() -> None:
    """A journal stays readable when only connections, MQTT format options or the OPC UA server
    change (an option added there by a newer version included); a change to the plant does not."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    plain = parse(data, environ={})
    dressed = parse({**data, "formats": {"sparkplug": {"group_id": "line-7"}, "uns": {"tenant": "other"}},
                     "opcua": {"enabled": True, "port": 4841},
                     "mqtt": {"targets": [{"name": "edge", "host": "broker", "format": "sparkplug"}]}}, environ={})
    assert dressed.model_fingerprint == plain.model_fingerprint
    machines = data["locations"]["Vietnam"]["machines"]
    bigger = parse({**data, "locations": {**data["locations"], "Vietnam": {
        **data["locations"]["Vietnam"], "machines": {**machines, "tornio": machines["tornio"] + 1}}}}, environ={})
    assert bigger.model_fingerprint != plain.model_fingerprint
