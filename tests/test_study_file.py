"""The study file: a valid one builds every scenario's config; every kind of mistake is one line naming
the study file, its line, the scenario and the key; the command exits with code 2 before running."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.studies.study_file import DEFAULT_KPIS, InvalidStudy, load_study

PLANT = """\
simulation: {seed: 5}
locations:
  North: {timezone: UTC, aliases: [Nord], machines: {lathe: 2, milling: 1}}
  South: {timezone: UTC, machines: {lathe: 1, milling: 1}}
route:
  - {name: turning, machine_type: lathe, processing_time: {distribution: constant, value: 600}}
  - {name: milling, machine_type: milling, processing_time: {distribution: constant, value: 300}}
disruptions: {block_probability: 0.0}
arrivals: {rate_per_hour: 4, location_mix: {North: 1}}
"""

VALID = """\
name: North lathes
base: plants/plant.yaml
overrides: {arrivals.rate_per_hour: 5}
replications: 4
until: 2d
warm_up: 6h
kpis: [lead_time_s.p95, stages.turning.by_location.North.utilization]
scenarios:
  - name: today
  - name: three lathes
    overrides: {locations.north.machines.LATHE: 3, arrivals.process: fixed}
search:
  scenario: three lathes
  pools: {nord.lathe: [1, 5], North.milling: [1, 3]}
  targets: ["lead_time_s.p95 <= 2h", "max_utilization < 85%", "throughput_per_hour >= 4.5"]
  judge: mean
"""


def _study(tmp_path: Path, text: str, plant: str = PLANT) -> Path:
    (tmp_path / "plants").mkdir(exist_ok=True)
    (tmp_path / "plants" / "plant.yaml").write_text(plant, encoding="utf-8")
    (tmp_path / "studies").mkdir(exist_ok=True)
    path = tmp_path / "studies" / "study.yaml"
    path.write_text(textwrap.dedent(text).replace("plants/plant.yaml", "../plants/plant.yaml"), encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str, plant: str = PLANT) -> list[str]:
    path = _study(tmp_path, text, plant)
    with pytest.raises(InvalidStudy) as caught:
        load_study(path)
    return caught.value.problems


def test_a_valid_study_builds_every_scenarios_config(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path, VALID))
    assert study.base == tmp_path / "plants" / "plant.yaml"  # relative to the study file
    assert study.seed == 5  # the base config's seed when the study names none
    assert (study.until_s, study.lots, study.spec.warm_up) == (2 * 86400, None, 6 * 3600)
    today, three = study.scenarios
    assert today.config.arrivals.rate_per_hour == 5  # the study's overrides apply to every scenario
    assert today.config.locations["North"].machines["lathe"] == 2
    assert three.config.locations["North"].machines["lathe"] == 3  # keys match case-insensitively
    assert three.config.arrivals.rate_per_hour == 5 and three.config.arrivals.process == "fixed"
    assert today.config.model_fingerprint != three.config.model_fingerprint
    assert study.search_scenario is three
    assert study.search_pools == {"North.lathe": (1, 5), "North.milling": (1, 3)}  # as the config spells them
    assert [(t.path, t.op, t.value) for t in study.targets] == [
        ("lead_time_s.p95", "<=", 7200.0), ("max_utilization", "<", 0.85), ("throughput_per_hour", ">=", 4.5)]
    with_four = study.with_machines(three, {"North.lathe": 4, "North.milling": 2})
    assert with_four.locations["North"].machines == {"lathe": 4, "milling": 2}
    assert with_four.arrivals.process == "fixed"  # the search starts from its scenario


def test_defaults(tmp_path: Path) -> None:
    study = load_study(_study(tmp_path, """\
        name: defaults
        base: plants/plant.yaml
        lots: 100
        scenarios: [{name: only}]
        """))
    spec = study.spec
    assert spec.replication_count == 10 and spec.warm_up == 0 and spec.common_random_numbers
    assert spec.kpis == list(DEFAULT_KPIS) and spec.search is None and spec.jobs is None


def test_a_bad_override_value_names_the_file_line_scenario_and_key(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """\
        name: bad values
        base: plants/plant.yaml
        until: 1d
        overrides:
          arrivals.rate_per_hour: -2
        scenarios:
          - name: today
          - name: no lathes
            overrides:
              locations.North.machines.lathe: -1
        """)
    path = tmp_path / "studies" / "study.yaml"
    assert problems == [
        f"{path} line 5 (study overrides): arrivals.rate_per_hour: must be > 0.0 (got -2)",
        f"{path} line 10 (scenario 'no lathes'): locations.North.machines.lathe: must be >= 0 (got -1)",
    ]


def test_an_override_path_that_names_no_key_is_an_error_with_the_closest_match(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """\
        name: typos
        base: plants/plant.yaml
        until: 1d
        scenarios:
          - name: typo
            overrides:
              locations.North.machines.lathee: 3
              locations.North.machinez: {lathe: 1}
              arrivals.rate_per_hours: 2
              locations.East.machines.lathe: 1
        """)
    path = tmp_path / "studies" / "study.yaml"
    assert problems[0] == (
        f"{path} line 7 (scenario 'typo'): locations.North.machines.lathee: names no config key: "
        f"locations.North.machines has no entry 'lathee'; it has: lathe, milling; did you mean lathe?")
    assert problems[1].startswith(f"{path} line 8 (scenario 'typo'): locations.North.machinez: names no config key: "
                                  f"locations.North has no key 'machinez'; allowed: ")
    assert problems[1].endswith("; did you mean machines?")
    assert problems[2].startswith(f"{path} line 9 (scenario 'typo'): arrivals.rate_per_hours: names no config key")
    assert problems[2].endswith("did you mean rate_per_hour?")
    assert problems[3] == (f"{path} line 10 (scenario 'typo'): locations.East.machines.lathe: names no config key: "
                           f"locations has no entry 'East'; it has: North, South")
    assert len(problems) == 4


def test_the_files_own_keys_are_checked_each_problem_on_its_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """\
        name: bad keys
        base: plants/plant.yaml
        replications: 0
        until: 3 fortnights
        kpi: [lead_time_s.p95]
        precision: {kpi: lead_time_s.p95, relative: 5 percent}
        scenarios:
          - name: today
            overides: {arrivals.rate_per_hour: 3}
        search:
          pools: {North: [1, 3]}
          targets: ["lead_time_s.p95 <= 2 fortnights", "throughput_per_hour ~ 3"]
        """)
    path = tmp_path / "studies" / "study.yaml"
    assert f"{path} line 3: replications: must be >= 1 (got 0)" in problems
    assert any(p.startswith(f"{path} line 4: until: not a duration: '3 fortnights'") for p in problems)
    assert f"{path} line 5: kpi: unknown key; did you mean kpis? allowed keys: name, base, overrides, " \
           f"replications, precision, seed, until, lots, warm_up, jobs, kpis, common_random_numbers, scenarios, " \
           f"search" in problems
    assert any(p.startswith(f"{path} line 6: precision.relative: must be a percentage such as 5%") for p in problems)
    assert any(p.startswith(f"{path} line 9 (scenario 'today'): scenarios[0].overides: unknown key; did you mean "
                            f"overrides?") for p in problems)
    assert f"{path} line 11: search.pools.North: a pool is LOCATION.MACHINE_TYPE, e.g. Vietnam.tornio" in problems
    assert any(p.startswith(f"{path} line 12: search.targets[0]: 'lead_time_s.p95 <= 2 fortnights': the value "
                            f"'2 fortnights' is not a number, a percentage (85%) or a duration") for p in problems)
    assert any(p.startswith(f"{path} line 12: search.targets[1]: not a target: 'throughput_per_hour ~ 3'")
               for p in problems)
    assert len(problems) == 8


def test_keys_that_exclude_or_need_each_other(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """\
        name: together
        base: plants/plant.yaml
        lots: 100
        until: 1d
        warm_up: auto
        replications: 1
        scenarios:
          - name: today
          - name: today
        search:
          scenario: tomorrow
          pools: {North.lathe: [4, 2]}
          targets: ["lead_time_s.p95 <= 2h"]
        """)
    path = tmp_path / "studies" / "study.yaml"
    assert problems == [
        f"{path} line 4: until: give exactly one of until (a simulated duration, for a steady-state study) and lots "
        f"(a lot count, for a terminating one)",
        f"{path} line 9 (scenario 'today'): scenarios[1].name: 'today' names two scenarios; names must differ",
        f"{path} line 11: search.scenario: no scenario named 'tomorrow'; scenarios: today, today",
        f"{path} line 12: search.pools.North.lathe: the lower bound 4 is above the upper bound 2",
        f"{path} line 10: search.judge: confident needs at least 2 replications (a confidence interval); give "
        f"more, or judge: mean",
    ]
    problems = _problems(tmp_path, """\
        name: auto needs a length
        base: plants/plant.yaml
        lots: 100
        warm_up: auto
        scenarios: [{name: today}]
        """)
    assert problems == [f"{path} line 4: warm_up: auto needs until (a steady-state study runs for a length, not a "
                        f"lot count)"]


def test_kpis_targets_and_pools_must_exist_in_the_plant(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """\
        name: unknown names
        base: plants/plant.yaml
        until: 1d
        kpis: [lead_time_s.p59, throughput_per_hour]
        scenarios: [{name: today}]
        search:
          pools: {North.lathes: [1, 3], West.milling: [1, 2]}
          targets: ["max_utilisation <= 0.8", "stages.turning.utilization <= 90%"]
        """)
    path = tmp_path / "studies" / "study.yaml"
    assert problems == [
        f"{path} line 4: kpis[0]: 'lead_time_s.p59' is no KPI of the report; did you mean lead_time_s.p95 or "
        f"lead_time_s.p50 or lead_time_s.max?",
        f"{path} line 8: search.targets[0]: 'max_utilisation' is no KPI of the report; did you mean max_utilization?",
        f"{path} line 7: search.pools.North.lathes: North has no machine type 'lathes'; allowed: lathe, milling; did "
        f"you mean lathe?",
        f"{path} line 7: search.pools.West.milling: unknown location 'West'; allowed: North, South",
    ]


def test_a_missing_or_invalid_base_config(tmp_path: Path) -> None:
    path = tmp_path / "studies" / "study.yaml"
    problems = _problems(tmp_path, """\
        name: no base
        base: plants/missing.yaml
        until: 1d
        scenarios: [{name: today}]
        """)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path} line 2: base: cannot read the base config ")
    assert "missing.yaml" in problems[0]
    problems = _problems(tmp_path, VALID, plant=PLANT.replace("value: 600", "value: -600"))
    assert problems == [f"the base config is invalid: {tmp_path / 'plants' / 'plant.yaml'} line 6: "
                        f"route[0].processing_time.value: must be >= 0.0 (got -600)"]


def test_the_command_exits_2_naming_the_problem_before_running(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = _study(tmp_path, VALID.replace("LATHE: 3", "LATHE: many"))
    out_dir = tmp_path / "out"
    code = main(["study", str(path), "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip() == (f"factorysim: invalid study: {path} line 11 (scenario 'three lathes'): "
                           f"locations.North.machines.lathe: must be a whole number (got 'many')")
    assert not out_dir.exists()  # nothing created for a study that cannot run
    code = main(["study", str(tmp_path / "nowhere.yaml")])
    assert code == 2
    assert "nowhere.yaml: cannot read the study file" in capsys.readouterr().err
    code = main(["study", str(_study(tmp_path, VALID)), "--out", str(out_dir), "--report-json", "x.json"])
    assert code == 2
    assert "--out DIR and --report-json/--report-html exclude each other" in capsys.readouterr().err
