"""Machine and station ids from templates (README "Configuration reference", ``machine_id_template``):
the reference plant keeps its ids, templates per location and per type name machines as a plant
knows them, a bad or ambiguous template is one error naming its key, renaming changes names and
nothing else, and commands, the journal and snapshots of the service work with the new names."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest

from simulator.config.loader import parse
from simulator.config.schema import Config
from simulator.errors import ConfigError
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.model.records import ListSink
from simulator.model.simulation import Simulation

from harness.service import control_headers, running_service, service_config

TEMPLATES = {  # the reference plant with ids of its own
    "locations.Italia.machine_id_template": "IT-{code}-{n}",
    "locations.Brasile.machine_id_template": "BR-{code}-{n}",
    "locations.Vietnam.machine_id_template": "VN-{code}-{n}",
    "machine_types": {"fresa_cnc": {"id_code": "MILL"}, "tornio": {"id_code": "LATHE"},
                      "assemblaggio": {"machine_id_template": "{location}-ASSY-{n:02d}"},
                      "test": {"id_code": "QA", "station_id_template": "{location}-QA-{n}"}},
}


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def configured(default_yaml: dict[str, Any], **keys: Any) -> Config:
    data = copy.deepcopy(default_yaml)
    for path, value in keys.items():
        _set(data, path, value)
    return parse(data, environ={})


def problems(default_yaml: dict[str, Any], **keys: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        configured(default_yaml, **keys)
    return caught.value.problems


def test_the_reference_plant_keeps_its_ids(default_config: Config) -> None:
    slots = default_config.machine_slots
    assert [s.id for s in slots[:4]] == ["Italia-fresa_cnc-01", "Italia-fresa_cnc-02", "Italia-fresa_cnc-03",
                                         "Italia-tornio-01"]
    assert all(s.id == s.stream_key == f"{s.location}-{s.machine_type}-{s.n:02d}" for s in slots)
    assert all(s.station == f"{s.location}-{s.machine_type}" for s in slots)
    assert list(Simulation(default_config, ListSink()).plant.machines) == [s.id for s in slots]


def test_templates_per_location_and_per_type_name_the_machines_and_their_stations(
        default_yaml: dict[str, Any]) -> None:
    config = configured(default_yaml, **TEMPLATES)
    ids = {(s.location, s.machine_type, s.n): (s.id, s.station) for s in config.machine_slots}
    assert ids[("Italia", "fresa_cnc", 3)] == ("IT-MILL-3", "Italia-fresa_cnc")
    assert ids[("Brasile", "tornio", 2)] == ("BR-LATHE-2", "Brasile-tornio")
    assert ids[("Vietnam", "assemblaggio", 2)][0] == "Vietnam-ASSY-02"  # the type's own template wins
    assert ids[("Vietnam", "test", 2)] == ("VN-QA-2", "Vietnam-QA-2")
    sim = Simulation(config, ListSink())
    assert set(sim.plant.machines) == {i for i, _ in ids.values()}
    assert sim.plant.pool("Italia", "fresa_cnc").machines[0].id == "IT-MILL-1"


@pytest.mark.parametrize(("keys", "expected"), [
    ({"locations.Italia.machine_id_template": "{site}-{n}"},
     "locations.Italia.machine_id_template: unknown placeholder {site}; allowed: {location}, {type}, {code}, {n}"),
    ({"machine_types": {"tornio": {"machine_id_template": "T-{n:q}"}}},
     "machine_types.tornio.machine_id_template: cannot be filled in"),
    ({"machine_types": {"tornio": {"machine_id_template": "T-{location:03d}"}}},
     "machine_types.tornio.machine_id_template: cannot be filled in"),
    ({"machine_types": {"tornio": {"machine_id_template": "T-{n"}}},
     "machine_types.tornio.machine_id_template: "),
    ({"machine_types": {"test": {"station_id_template": "{line}"}}},
     "machine_types.test.station_id_template: unknown placeholder {line}; allowed: {location}, {type}, {code}, "
     "{n}, {machine_id}"),
    ({"machine_types": {"test": {"id_code": "Q A"}}}, "machine_types.test.id_code: must match the pattern"),
    ({"machine_types": {"tornio": {"machine_id_template": "lathe-{n}"}}},
     "machine_types.tornio.machine_id_template: gives the id 'lathe-1' to Italia tornio #1 and to Brasile tornio "
     "#1; machine ids must be unique"),
    ({"locations.Vietnam.machine_id_template": "VN-{code}"},
     "locations.Vietnam.machine_id_template: gives the id 'VN-fresa_cnc' to Vietnam fresa_cnc #1 and to Vietnam "
     "fresa_cnc #2"),
    ({"machine_types": {"tornio": {"machine_id_template": "T-{n:999999999d}"}}},  # (a gigabyte of padding)
     "machine_types.tornio.machine_id_template: {n:999999999d}: a width below 100 characters"),
    ({"machine_types": {"test": {"station_id_template": "{machine_id:.9999}"}}},
     "machine_types.test.station_id_template: {machine_id:.9999}: a width below 100 characters"),
    ({"locations.Italia.machine_id_template": "{location}/{type}/{n}"},
     "locations.Italia.machine_id_template: gives 'Italia/fresa_cnc/1' to Italia fresa_cnc #1: not a machine id"),
])
def test_a_bad_or_ambiguous_template_is_an_error_naming_its_key(
        default_yaml: dict[str, Any], keys: dict[str, Any], expected: str) -> None:
    found = problems(default_yaml, **keys)
    assert found[0].startswith(expected), found


def test_a_custom_id_that_takes_a_default_id_is_an_error_too(default_yaml: dict[str, Any]) -> None:
    found = problems(default_yaml, **{"machine_types": {"test": {"machine_id_template": "Italia-tornio-0{n}"}}})
    assert found == ["machine_types.test.machine_id_template: gives the id 'Italia-tornio-01' to Italia tornio #1 "
                     "and to Italia test #1; machine ids must be unique (use {n}, and {location} when several "
                     "locations have the type)"]


def test_renaming_machines_changes_their_names_and_nothing_else(
        default_config: Config, default_yaml: dict[str, Any]) -> None:
    renamed = configured(default_yaml, **TEMPLATES)
    names = {default.id: new.id for default, new in zip(default_config.machine_slots, renamed.machine_slots,
                                                         strict=True)}
    runs = []
    for config in (default_config, renamed):
        sink = ListSink()
        sim = Simulation(config, sink, seed=11)
        sim.start_arrivals(limit=30)
        sim.env.run(until=2 * 86400)
        fmt = CoffeeMekFormat(config, 11)
        runs.append([m.value for r in sink.records for m in fmt.encode(r)])
    default_run, renamed_run = runs
    assert len(default_run) == len(renamed_run) > 500
    for old, new in names.items():  # the same messages but for the names
        default_run = [v.replace(f'"{old}"'.encode(), f'"{new}"'.encode()) for v in default_run]
    assert default_run == renamed_run


async def test_commands_the_journal_and_snapshots_work_with_custom_ids(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": 60, **TEMPLATES})
    machine = "VN-LATHE-2"
    async with running_service(config) as service, \
            aiohttp.ClientSession(headers=control_headers(service)) as http:
        base = f"http://127.0.0.1:{service.http_port}"
        async with http.get(f"{base}/machines") as response:
            listed = await response.json()
        assert response.status == 200
        assert set(listed) == {s.id for s in config.machine_slots}
        async with http.post(f"{base}/machines/{machine}/block", json={"reason": "renamed and jammed"}) as response:
            assert response.status == 200, await response.text()
        async with http.post(f"{base}/machines/{machine}/anomaly", json={"type": "bearing_fault"}) as response:
            assert response.status == 200, await response.text()
        async with http.get(f"{base}/machines/Vietnam-tornio-02") as response:
            assert response.status == 404
            assert machine in (await response.json())["known"]
    # a new service continues the run: the block and the anomaly come back from the journal and snapshots
    async with running_service(config) as service, \
            aiohttp.ClientSession(headers=control_headers(service)) as http:
        base = f"http://127.0.0.1:{service.http_port}"
        async with http.get(f"{base}/machines/{machine}") as response:
            view = await response.json()
        assert response.status == 200, view
        assert (view["state"], view["block"]["reason"], view["anomaly"]["type"]) == (
            "blocked", "renamed and jammed", "bearing_fault")
        async with http.post(f"{base}/machines/{machine}/repair") as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["state"] in ("idle", "running")
