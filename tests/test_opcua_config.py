"""The ``opcua:`` section: its checks as a user meets them (one line, exit code 2), a busy port
(exit code 1, naming opcua.port), the OPC UA library left unimported while the server is off, the
latest-value tap and the units table."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.adapters.opcua.latest import LatestValues
from simulator.adapters.opcua.units import Unit, unit_of
from simulator.config.loader import parse
from simulator.errors import ConfigError
from simulator.model.records import LotEvent, MachineCounters, MachineSample

from harness.cli_process import ROOT, busy_port, factorysim


def _config_file(tmp_path: Path, default_yaml: dict[str, Any], opcua: dict[str, Any]) -> Path:
    data = copy.deepcopy(default_yaml)
    data["opcua"] = opcua
    data["kafka"] = {"bootstrap_servers": "127.0.0.1:1"}
    data["http"] = {"host": "127.0.0.1", "port": 0, "generated_token_file": str(tmp_path / "token")}
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_unknown_policy_names_the_key_and_the_allowed_ones(tmp_path: Path, default_yaml: dict[str, Any]) -> None:
    path = _config_file(tmp_path, default_yaml, {"enabled": True, "security": {"policies": ["Basic128Rsa15"]}})
    ended = factorysim("validate-config", str(path))
    assert ended.code == 2
    assert ended.message.endswith("opcua.security.policies[0]: must be one of: 'None', 'Basic256Sha256-Sign' or "
                                  "'Basic256Sha256-SignAndEncrypt' (got 'Basic128Rsa15')")


@pytest.mark.parametrize(("opcua", "key", "text"), [
    ({"port": 70000}, "opcua.port", "must be <= 65535"),
    ({"security": {"policies": []}}, "opcua.security", "give at least one of None, Basic256Sha256-Sign"),
    ({"auth": {"anonymous": False}}, "opcua.auth", "anonymous: false needs at least one entry in users"),
    ({"auth": {"users": [{"username": "op"}]}}, "opcua.auth.users[0]", "exactly one of password_env, password_file"),
    ({"security": {"certificate_file": "/x.der"}}, "opcua.security", "certificate_file and private_key_file go"),
    ({"colour": "blue"}, "opcua.colour", "unknown key"),
])
def test_bad_settings_name_their_key(default_yaml: dict[str, Any], opcua: dict[str, Any], key: str,
                                     text: str) -> None:
    data = copy.deepcopy(default_yaml)
    data["opcua"] = opcua
    with pytest.raises(ConfigError) as error:
        parse(data, environ={})
    assert any(p.startswith(key) and text in p for p in error.value.problems), error.value.problems


def test_a_missing_password_variable_is_a_config_error_naming_the_user(tmp_path: Path,
                                                                        default_yaml: dict[str, Any]) -> None:
    path = _config_file(tmp_path, default_yaml, {
        "enabled": True, "port": 0, "auth": {"users": [{"username": "op", "password_env": "NO_SUCH_VARIABLE_X"}]}})
    ended = factorysim("run", "--config", str(path), timeout_s=90)
    assert ended.code == 2
    assert "opcua.auth.users[0].password_env: environment variable NO_SUCH_VARIABLE_X is not set" in ended.message


def test_a_busy_port_is_one_line_and_exit_code_1(tmp_path: Path, default_yaml: dict[str, Any]) -> None:
    with busy_port() as port:
        path = _config_file(tmp_path, default_yaml, {"enabled": True, "port": port})
        ended = factorysim("run", "--config", str(path), timeout_s=90)
    assert ended.code == 1
    assert f"port {port} (opcua.port) is already in use" in ended.message


def test_the_service_does_not_import_the_opcua_library_while_the_server_is_off() -> None:
    code = ("import sys, yaml; from simulator.config.loader import parse; from simulator.programs.service import "
            "Service; import simulator.cli; Service(parse(yaml.safe_load(open('config.yaml')), environ={})); "
            "print('asyncua' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "False"


def _sample(seq: int, state: str, anomaly: str | None = None) -> MachineSample:
    counters = MachineCounters(cycles=4, good_cycles=3, good_pieces=30, bad_pieces=10, running_s=80.0,
                               blocked_s=5.0, planned_s=100.0, ideal_s=60.0)
    return MachineSample(seq, float(seq), location="Italia", machine_id="M1", machine_type="milling", state=state,
                         lot_code="L1", stage="fresa_cnc", block_reason=None, last_maintenance_sim_s=0.0,
                         pieces_since_maintenance=3, interval_s=1.0, alarms="", signals={"power_kw": 4.2},
                         counters=counters, anomaly=anomaly)


def test_the_latest_values_follow_events_and_samples_in_their_order() -> None:
    latest = LatestValues(["M1", "M2"])
    latest.offer(LotEvent(1, 1.0, event_type="stage.started", location="Italia", machine_id="M1", lot_code="L1",
                          stage="fresa_cnc"))
    assert (latest.machines["M1"].state, latest.machines["M1"].lot) == ("running", "L1")
    latest.offer(LotEvent(2, 2.0, event_type="machine.blocked", location="Italia", machine_id="M1", lot_code="L1",
                          reason="jam", cause="failure"))
    assert (latest.machines["M1"].state, latest.machines["M1"].block_reason) == ("blocked", "jam")
    latest.offer(LotEvent(3, 3.0, event_type="machine.repaired", location="Italia", machine_id="M1", cause="failure"))
    assert latest.machines["M1"].state == "running"  # it has its lot back
    latest.offer(_sample(4, "running", anomaly="bearing_fault"))
    latest.offer(_sample(5, "running", anomaly=None))
    latest.offer(LotEvent(6, 6.0, event_type="lot.received", location="Italia", lot_code="L9"))  # no machine
    assert latest.take_changed() == ["M1"]
    assert latest.take_changed() == []
    values = latest.machines["M1"]
    assert values.signals == {"power_kw": 4.2}
    assert values.counters is not None and values.counters.oee == pytest.approx(0.8 * 0.75 * 0.75)
    kinds = [(a.kind, a.reason) for a in latest.take_alarms()]
    assert kinds == [("breakdown", "jam"), ("repaired", None), ("anomaly_injected", "bearing_fault"),
                     ("anomaly_cleared", "bearing_fault")]
    assert latest.take_alarms() == []
    assert not latest.full  # the tap never holds the model


def _unit(signal: str) -> Unit:
    unit = unit_of(signal)
    assert unit is not None, signal
    return unit


def test_signal_units_are_unece_codes_where_one_exists() -> None:
    assert (_unit("spindle_temp_c").code, _unit("spindle_temp_c").unit_id) == ("CEL", 0x43454C)
    assert _unit("feed_rate_mm_min").code == "H81"
    assert _unit("wire_feed_m_min").code == "2X"
    assert _unit("paint_flow_ml_min").symbol == "ml/min"
    assert _unit("energy_kwh").code == "KWH"
    assert _unit("power_factor").code == "C62"
    assert _unit("stroke_rate_spm").unit_id == -1  # no code: the display name only
    assert unit_of("layer") is None
