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
    # (a): the first evaluation at the lower bounds gives the offered loads; the start is their cap.
    # The one lathe lets only 14.4 lots/h through, so milling's offered load looks like 0.52: one mill
    assert search["steps"][0]["machines"] == {"A.lathe": 1, "A.milling": 1}
    assert search["steps"][0]["meets"] is False
    assert search["steps"][1]["machines"] == {"A.lathe": 3, "A.milling": 1}
    assert "A.lathe 1 → 3 (offered load 2.50 / 0.85)" in search["steps"][1]["action"]
    # (b): now the mill sees all 36 lots/h and is over the cap: it grows
    assert search["steps"][2]["machines"] == {"A.lathe": 3, "A.milling": 2}
    assert search["steps"][2]["action"].startswith("one more machine at A.milling, named by the failed target")
    # (c): locally minimal: one machine fewer anywhere fails, and the steps say why
    for lathes, mills in ((2, 2), (3, 1)):
        step = _step(search, lathes, mills)
        assert step["meets"] is False
        assert "max_utilization <= 85%" in step["failed"]
        assert "over the target" in step["reason"]
    assert search["message"] == ("A needs 3 lathe and 2 milling (max utilisation 83 % [83, 83] at A.lathe, "
                                 "p95 lead time 6.33 min [6.33, 6.33])")


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
    assert "over the target <= 6.67 min" in message
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


def _jackson_tandem(rate_per_s: float, means: dict[str, float]) -> Any:
    """An evaluate callback: two M/M/c stations in tandem, whose mean lead time is exact (a Jackson
    network: each station is an M/M/c queue, Erlang C)."""

    def erlang_c_wait(servers: int, mean_s: float) -> float:
        load = rate_per_s * mean_s
        if load >= servers:
            return 1e9
        head = sum(load**k / math.factorial(k) for k in range(servers))
        tail = load**servers / (math.factorial(servers) * (1 - load / servers))
        return tail / (head + tail) / (servers / mean_s - rate_per_s)

    def evaluate(machines: dict[str, int]) -> dict[str, Any]:
        kpis: dict[str, Any] = {}
        lead = 0.0
        for pool, count in machines.items():
            mean = means[pool]
            lead += erlang_c_wait(count, mean) + mean
            for name, value in (("utilization", min(1.0, rate_per_s * mean / count)),
                                ("offered_load", rate_per_s * mean), ("load", rate_per_s * mean / count)):
                kpis[f"pools.{pool}.{name}"] = {"mean": value, "ci95": [value, value]}
        kpis["lead_time_s.mean"] = {"mean": lead, "ci95": [lead * 0.98, lead * 1.02]}
        return {"kpis": kpis, "overload": [], "steady": True}

    return evaluate


@pytest.mark.parametrize(("rate_per_h", "lead_target_s"), [(30, 900), (30, 400), (50, 600), (80, 500), (80, 330)])
def test_the_search_answer_is_feasible_and_locally_minimal_on_a_queueing_network(
        rate_per_h: float, lead_target_s: float) -> None:
    """Against the exact mean lead time of a tandem of M/M/c queues, the answer meets the targets,
    no single machine can be taken away, and it is the cheapest plant meeting them (the region is a
    lattice here, so the local minimum is the global one)."""
    from simulator.studies.search import CapacitySearch, parse_target

    means = {"A.lathe": 200.0, "A.milling": 90.0}
    evaluate = _jackson_tandem(rate_per_h / 3600, means)
    targets = [parse_target(f"lead_time_s.mean <= {lead_target_s}s"), parse_target("max_utilization <= 85%")]
    result = CapacitySearch({"A.lathe": (1, 12), "A.milling": (1, 12)}, targets, "confident", evaluate).run()

    def meets(lathes: int, mills: int) -> bool:
        kpis = evaluate({"A.lathe": lathes, "A.milling": mills})["kpis"]
        return (kpis["lead_time_s.mean"]["ci95"][1] <= lead_target_s
                and max(kpis[f"pools.{p}.utilization"]["ci95"][1] for p in means) <= 0.85)

    feasible = [(a, b) for a in range(1, 13) for b in range(1, 13) if meets(a, b)]
    if not feasible:
        assert result["answer"] is None
        assert result["message"].startswith("no answer within the bounds")
        return
    answer = result["answer"]["machines"]
    lathes, mills = answer["A.lathe"], answer["A.milling"]
    assert meets(lathes, mills)
    assert lathes == 1 or not meets(lathes - 1, mills)
    assert mills == 1 or not meets(lathes, mills - 1)
    assert lathes + mills == min(a + b for a, b in feasible)
    assert len(result["steps"]) == result["evaluations"] + sum(s["evaluated_at_step"] is not None
                                                              for s in result["steps"])
