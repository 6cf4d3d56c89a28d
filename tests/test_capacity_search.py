"""The what-if search finds the answer one can compute by hand, and says when there is none.

The plant: lots arrive every 100 s exactly (36 per hour) at one location and go through two stages
of constant duration, turning (250 s on a lathe) and milling (130 s), nothing random and no
disruption.  A pool of c machines keeps up when c × 100 s ≥ its processing time, and then no lot
ever waits: the lead time is 250 + 130 = 380 s.  The offered load is 2.5 lathes and 1.3 mills, so
under a utilisation cap u the fewest machines are ceil(2.5 / u) and ceil(1.3 / u).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import pytest

from simulator.studies.scenarios import run_study
from simulator.studies.study_file import load_study

PLANT = """\
simulation: {seed: 3}
locations:
  A: {timezone: UTC, machines: {lathe: 2, milling: 2}}
route:
  - {name: turning, machine_type: lathe, processing_time: {distribution: constant, value: 250}LATHE_EXTRA}
  - {name: milling, machine_type: milling, processing_time: {distribution: constant, value: 130}}
disruptions: {block_probability: 0.0}
arrivals: {rate_per_hour: 36, process: fixed, location_mix: {A: 1}, priority_mix: {normale: 1}}
telemetry: {cycle_records: false, lot_events: false}
"""
# every 10 lathe cycles, 1,000 s of maintenance: 10 lots take 2,500 + 1,000 s of a lathe
MAINTENANCE = ", disruptions: {maintenance: {every_cycles: 10, duration: {distribution: constant, value: 1000}}}"


def _search(tmp_path: Path, search: str, *, maintenance: bool = False, overrides: str = "{}") -> dict[str, Any]:
    (tmp_path / "plant.yaml").write_text(PLANT.replace("LATHE_EXTRA", MAINTENANCE if maintenance else ""),
                                         encoding="utf-8")
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent("""\
        name: lathes and mills
        base: plant.yaml
        replications: 2
        until: 1d
        scenarios:
          - name: today
            overrides: OVERRIDES
        search:
        """).replace("OVERRIDES", overrides) + textwrap.indent(textwrap.dedent(search), "  "), encoding="utf-8")
    study = run_study(load_study(path), jobs=1)
    assert study["search"] is not None
    result: dict[str, Any] = study["search"]
    return result


def _step(search: dict[str, Any], lathes: int, mills: int) -> dict[str, Any]:
    return next(s for s in search["steps"] if s["machines"] == {"A.lathe": lathes, "A.milling": mills})


def test_the_fewest_machines_under_a_utilisation_cap_and_a_lead_time_target(tmp_path: Path) -> None:
    search = _search(tmp_path, """\
        pools: {A.lathe: [1, 6], A.milling: [1, 6]}
        targets: ["max_utilization <= 85%", "lead_time_s.p95 <= 400s"]
        """)
    assert search["answer"] is not None, search["message"]
    assert search["answer"]["machines"] == {"A.lathe": math.ceil(2.5 / 0.85), "A.milling": math.ceil(1.3 / 0.85)}
    kpis = search["answer"]["kpis"]
    assert kpis["lead_time_s.p95"]["mean"] == pytest.approx(380.0)
    assert kpis["max_utilization"]["pool"] == "A.lathe"
    assert kpis["max_utilization"]["mean"] == pytest.approx(2.5 / 3, abs=0.005)
    # (a): the first evaluation at the lower bounds gives the offered loads; the start is their cap
    assert search["steps"][0]["machines"] == {"A.lathe": 1, "A.milling": 1}
    assert search["steps"][0]["meets"] is False
    assert search["steps"][1]["machines"] == {"A.lathe": 3, "A.milling": 2}
    assert "offered load 2.50 / 0.85" in search["steps"][1]["action"]
    # (c): locally minimal: one machine fewer anywhere fails, and the steps say why
    for lathes, mills in ((2, 2), (3, 1)):
        step = _step(search, lathes, mills)
        assert step["meets"] is False
        assert "max_utilization <= 85%" in step["failed"]
        assert "over the target" in step["reason"]
    assert search["message"].startswith("A needs 3 lathe and 2 milling (p95 lead time 380 s [380, 380], "
                                        "max utilisation 83 % [83, 83] at A.lathe)")


def test_a_pool_specific_cap_raises_only_that_pool(tmp_path: Path) -> None:
    search = _search(tmp_path, """\
        pools: {A.lathe: [1, 6], A.milling: [1, 6]}
        targets: ["max_utilization <= 85%", "pools.A.milling.utilization < 50%"]
        judge: mean
        """)
    assert search["answer"]["machines"] == {"A.lathe": 3, "A.milling": math.floor(1.3 / 0.5) + 1}


def test_a_target_that_needs_more_than_the_utilisation_cap(tmp_path: Path) -> None:
    """Maintenance takes 1,000 s of a lathe every 10 lots: 3 lathes are 71 % utilised (under the
    cap) but need (2,500 + 1,000) / 1,000 = 3.5 lathes of time: the queue grows without bound, and
    the lead time target needs a fourth."""
    search = _search(tmp_path, """\
        pools: {A.lathe: [1, 6], A.milling: [1, 6]}
        targets: ["max_utilization <= 85%", "lead_time_s.p95 <= 1h"]
        """, maintenance=True)
    assert search["answer"] is not None, search["message"]
    assert search["answer"]["machines"] == {"A.lathe": math.ceil((2500 + 1000) / 1000), "A.milling": 2}
    three = _step(search, 3, 2)
    assert three["meets"] is False
    assert three["failed"] == ["lead_time_s.p95 <= 1h"]
    assert three["kpis"]["pools.A.lathe.utilization"]["mean"] == pytest.approx(2500 / 3500, abs=0.01)
    assert "A.lathe" in three["overloaded"]
    assert "overloaded: A lathe" in three["reason"]


def test_no_answer_within_bounds_that_are_too_tight(tmp_path: Path) -> None:
    search = _search(tmp_path, """\
        pools: {A.lathe: [1, 2], A.milling: [1, 3]}
        targets: ["lead_time_s.p95 <= 400s"]
        """)
    assert search["answer"] is None
    message = search["message"]
    assert message.startswith("no answer within the bounds: with every searched pool at its upper bound "
                              "(A.lathe 2, A.milling 3) lead_time_s.p95 upper 95 % bound ")
    assert "over the target <= 400 s" in message
    assert search["steps"][-1]["machines"] == {"A.lathe": 2, "A.milling": 3}
    # how much: two lathes do 2 lots per 250 s against 2.5 arriving: the queue grows for a day
    p95 = search["steps"][-1]["kpis"]["lead_time_s.p95"]["mean"]
    assert p95 > 3 * 3600


def test_a_failed_target_on_a_pool_that_is_not_searched_ends_the_search(tmp_path: Path) -> None:
    search = _search(tmp_path, """\
        pools: {A.milling: [1, 4]}
        targets: ["max_utilization <= 85%"]
        """)
    assert search["answer"] is None
    assert "A.lathe is not among the searched pools (A.milling)" in search["message"]
    assert len(search["steps"]) <= 2
