"""A config error names where the bad value came from: the command-line flag, the environment
variable or the file and line — and still the key and what is allowed (issue 12)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.adapters.mqtt_options import tls_context
from simulator.config.loader import load, parse
from simulator.config.origins import Origins, Override, env, file_line, flag, key_parts, load_yaml
from simulator.errors import ConfigError

from harness.cli_process import ROOT, factorysim

CONFIG = str(ROOT / "config.yaml")
SPEED_ALLOWED = "must be 'max' or a number of simulated seconds per wall second from 0.001 to 1,000,000"


def _problems(data: dict[str, Any], environ: dict[str, str] | None = None, overrides: Any = None,
              origins: Origins | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, environ=environ or {}, overrides=overrides, origins=origins)
    return caught.value.problems


def _plant_with(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """config.yaml with one line changed; the file and that line's number."""
    lines = Path(CONFIG).read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith(old))
    lines[number - 1] = new
    path = tmp_path / "plant.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, number


# --- as a user sees it: one line, exit code 2 ----------------------------------------------------
def test_a_bad_flag_names_the_flag_and_the_key() -> None:
    ended = factorysim("run", "--config", CONFIG, "--speed", "abc")
    assert ended.code == 2
    assert ended.message == f"factorysim: invalid configuration: --speed abc (simulation.speed): {SPEED_ALLOWED} " \
                            "(got 'abc')"


def test_a_bad_environment_variable_names_the_variable_and_the_key() -> None:
    ended = factorysim("simulate", "--config", CONFIG, "--lots", "5", env={"FACTORYSIM_SPEED": "abc"})
    assert ended.code == 2
    assert ended.message.startswith(f"factorysim: invalid configuration: FACTORYSIM_SPEED=abc (simulation.speed): "
                                    f"{SPEED_ALLOWED}")


def test_a_bad_mix_flag_names_the_flag_and_the_entry() -> None:
    ended = factorysim("simulate", "--config", CONFIG, "--lots", "5", "--locations", "Germany=1")
    assert ended.code == 2
    assert ended.message == ("factorysim: invalid configuration: --locations Germany=1 "
                             "(arrivals.location_mix.Germany): unknown location; allowed: Italia, Brasile, Vietnam")


def test_a_misspelt_generic_variable_names_the_variable_and_suggests_the_key() -> None:
    ended = factorysim("simulate", "--config", CONFIG, "--lots", "5",
                       env={"FACTORYSIM__ARRIVALS__RATE_PER_HOURS": "5"})
    assert ended.code == 2
    assert ended.message.startswith("factorysim: invalid configuration: FACTORYSIM__ARRIVALS__RATE_PER_HOURS=5 "
                                    "(arrivals.rate_per_hours): unknown key; did you mean rate_per_hour? "
                                    "allowed keys: customers, ")


def test_a_bad_file_value_names_the_file_and_line(tmp_path: Path) -> None:
    path, line = _plant_with(tmp_path, "  speed:", "  speed: fast")
    ended = factorysim("validate-config", str(path))
    assert ended.code == 2
    assert ended.message == (f"factorysim: invalid configuration: {path} line {line}: simulation.speed: "
                             f"{SPEED_ALLOWED} (got 'fast')")


def test_lot_sender_names_the_variable_too() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "lot_sender.py"), "--config", CONFIG, "--count", "1"],
                          env={"PATH": "/usr/bin:/bin", "FACTORYSIM_SEED": "-1"}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == ("lot-sender: invalid configuration: FACTORYSIM_SEED=-1 (simulation.seed): "
                                   "must be >= 0 (got -1)")


# --- the mapping ---------------------------------------------------------------------------------
def test_key_paths_split_into_keys_and_list_indices() -> None:
    assert key_parts("route[3].quality.rework_stage") == ("route", 3, "quality", "rework_stage")
    assert key_parts("shift_calendars.two.shifts[1].end") == ("shift_calendars", "two", "shifts", 1, "end")
    assert key_parts("") == ()


def test_yaml_keys_and_list_elements_carry_their_lines() -> None:
    text = ("base: &base\n  low: 1\n  high: 2\n"
            "route:\n  - name: a\n    time:\n      <<: *base\n      high: 3\n  - name: b\n")
    data, origins = load_yaml(text, "p.yaml")
    assert data["route"][0]["time"] == {"low": 1, "high": 3}
    assert origins.of("base.high") == file_line("p.yaml", 3)
    assert origins.of("route") == file_line("p.yaml", 4)
    assert origins.of("route[0]") == file_line("p.yaml", 5)
    assert origins.of("route[0].time.high") == file_line("p.yaml", 8)
    assert origins.of("route[0].time.low") == file_line("p.yaml", 2)  # merged from the anchor: its line
    assert origins.of("route[1].name") == file_line("p.yaml", 9)
    assert origins.of("route[0].time.missing") == file_line("p.yaml", 6)  # the nearest key that is there
    assert origins.of("nothing") == file_line("p.yaml")  # the file as a whole


def test_an_override_replaces_the_origin_of_everything_inside_it() -> None:
    origins = Origins(file_line("p.yaml"))
    origins.set(("arrivals",), file_line("p.yaml", 10))
    origins.set(("arrivals", "location_mix"), file_line("p.yaml", 11))
    origins.set(("arrivals", "location_mix", "Italia"), file_line("p.yaml", 12))
    origins.set(("arrivals", "location_mix"), flag("--locations", "Italia=x"))
    assert origins.of("arrivals.location_mix.Italia") == flag("--locations", "Italia=x")
    assert origins.of("arrivals.rate_per_hour") == file_line("p.yaml", 10)
    origins.set(("arrivals",), None)  # set by the program: no origin to name, not the file's line
    assert origins.describe("arrivals.rate_per_hour", "must be > 0") == "arrivals.rate_per_hour: must be > 0"


def test_origins_render_what_was_typed() -> None:
    assert flag("--speed", "abc").describe("simulation.speed", "bad") == "--speed abc (simulation.speed): bad"
    assert flag("--rate", -2.0).where == "--rate -2"
    assert flag("--locations", "Italia=1, Vietnam=1").where == "--locations 'Italia=1, Vietnam=1'"
    assert flag("--demo").where == "--demo"
    assert env("FACTORYSIM_SPEED", "abc").describe("simulation.speed", "bad") == \
        "FACTORYSIM_SPEED=abc (simulation.speed): bad"
    assert "hunter2" not in env("FACTORYSIM__KAFKA__SECURITY__SASL_PASSWORD", "hunter2").where
    assert file_line("c.yaml", 12).describe("simulation.speed", "bad") == "c.yaml line 12: simulation.speed: bad"


def test_later_sources_win_flag_over_environment_over_file(tmp_path: Path) -> None:
    path, line = _plant_with(tmp_path, "  seed:", "  seed: -1")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.problems == [f"{path} line {line}: simulation.seed: must be >= 0 (got -1)"]
    with pytest.raises(ConfigError) as caught:
        load(path, environ={"FACTORYSIM_SEED": "-2"})
    assert caught.value.problems == ["FACTORYSIM_SEED=-2 (simulation.seed): must be >= 0 (got -2)"]
    with pytest.raises(ConfigError) as caught:
        load(path, environ={"FACTORYSIM_SEED": "-2"},
             overrides=[Override("simulation.seed", -3, flag("--seed", -3))])
    assert caught.value.problems == ["--seed -3 (simulation.seed): must be >= 0 (got -3)"]


def test_a_key_an_override_creates_is_the_overrides(default_yaml: dict[str, Any]) -> None:
    problems = _problems(copy.deepcopy(default_yaml), {"FACTORYSIM__LOCATIONS__ATLANTIS__MACHINES__TEST": "1"})
    assert problems == ["FACTORYSIM__LOCATIONS__ATLANTIS__MACHINES__TEST=1 (locations.atlantis.timezone): "
                        "required key is missing"]


def test_a_wildcard_variable_is_the_origin_of_every_element_it_set(default_yaml: dict[str, Any]) -> None:
    data = copy.deepcopy(default_yaml)
    data["mqtt"] = {"targets": [{"name": "a", "host": "h1"}, {"name": "b", "host": "h2"}]}
    problems = _problems(data, {"MQTT_PORT": "x"})
    assert problems == ["MQTT_PORT=x (mqtt.targets[0].port): must be a whole number (got 'x')",
                        "MQTT_PORT=x (mqtt.targets[1].port): must be a whole number (got 'x')"]


def test_cross_field_and_named_element_problems_find_their_lines(tmp_path: Path) -> None:
    path, line = _plant_with(tmp_path, "    machines: {fresa_cnc: 4", "    machines: {fresa_cnc: 4, tornio: 0, "
                                                                      "assemblaggio: 2, test: 2}")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.problems[0].startswith(f"{path} line {line}: locations.Vietnam.machines.tornio: route stage")
    mqtt = tmp_path / "mqtt.yaml"
    mqtt.write_text(Path(CONFIG).read_text(encoding="utf-8") + "mqtt:\n  targets:\n    - name: edge\n"
                    "      host: broker\n      format: uns\n      topic_template: 'v1/{nope}'\n", encoding="utf-8")
    template_line = len(mqtt.read_text(encoding="utf-8").splitlines())
    with pytest.raises(ConfigError) as caught:
        load(mqtt, environ={})
    assert caught.value.problems[0].startswith(f"{mqtt} line {template_line}: mqtt.targets.edge.topic_template: ")


def test_a_missing_section_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bare.yaml"
    path.write_text("simulation:\n  seed: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert any(p.startswith(f"{path}: ") for p in caught.value.problems), caught.value.problems


def test_a_problem_found_at_run_time_names_the_variable() -> None:
    profile = str(ROOT / "profiles" / "spaceship.yaml")
    ended = factorysim("bridge", "--config", profile, "--http-port", "0", env={"KAFKA_BOOTSTRAP_SERVERS": "embedded"})
    assert ended.code == 2
    assert ended.message.startswith("factorysim: invalid configuration: KAFKA_BOOTSTRAP_SERVERS=embedded "
                                    "(kafka.bootstrap_servers): the bridge reads an existing cluster")


def test_a_problem_found_at_run_time_names_the_file_and_line(tmp_path: Path) -> None:
    profile = (ROOT / "profiles" / "spaceship.yaml").read_text(encoding="utf-8")
    path = tmp_path / "edge.yaml"
    path.write_text(profile.replace("      qos: 1 ", "      tls: {enabled: true, ca_file: /nonexistent/ca.crt}\n"
                                    "      qos: 1 "), encoding="utf-8")
    line = next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "tls:" in text
                and not text.lstrip().startswith("#"))
    config = load(path, environ={})
    with pytest.raises(ConfigError) as caught, config.errors_located():
        tls_context(config.mqtt.targets[0])
    assert caught.value.problems[0].startswith(f"{path} line {line}: mqtt.targets.local.tls: cannot load TLS files")


def test_a_run_time_problem_with_a_default_value_stays_as_it_is() -> None:
    config = load(CONFIG, environ={})
    problem = "mqtt.targets: the bridge needs at least one MQTT target"  # config.yaml has no mqtt section
    assert config.locate(ConfigError([problem])).problems == [problem]
    typed = config.locate(ConfigError(["kafka.bootstrap_servers: not usable here", "not a key path"]))
    assert typed.problems[0].startswith(f"{CONFIG} line ") and typed.problems[0].endswith(
        ": kafka.bootstrap_servers: not usable here")
    assert typed.problems[1] == "not a key path"
