"""The few lines ``factorysim simulate`` prints after a run: what was simulated, the warm-up, lots,
throughput, lead time, WIP, overloaded pools (said first, as they make the means meaningless) and
the bottleneck."""

from __future__ import annotations

from typing import Any

from simulator.programs.offline import OfflineResult
from simulator.progress import human_duration
from simulator.runtime.driver import StopReason

STOP_WORDS = {
    StopReason.CONDITION: "every lot finished",
    StopReason.UNTIL_SIM: "reached --until",
    StopReason.EXHAUSTED: "nothing left to simulate",
    StopReason.WALL_TIMEOUT: "wall-clock limit",
    StopReason.MAX_EVENTS: "event limit",
    StopReason.STOPPED: "stopped",
    StopReason.CALENDAR_END: "reached the end of the calendar (9999-01-01)",
}


def warm_up_line(report: dict[str, Any], requested_s: float) -> str:
    if report["warm_up_s"] > 0:
        return (f"warm-up: {human_duration(report['warm_up_s'])}: statistics cover the "
                f"{human_duration(report['observed_s'])} after it")
    if requested_s > 0:
        return (f"warm-up: {human_duration(requested_s)} asked for, but the run ended before it: statistics "
                "cover the whole run")
    return "warm-up: none (statistics cover the whole run, the empty start included)"


def summary_text(report: dict[str, Any], result: OfflineResult) -> str:
    lots = report["lots"]
    lead = report["lead_time_s"]
    wip = report["wip"]
    lines = [
        f"simulated {human_duration(report['sim_duration_s'])} (seed {report['seed']}, "
        f"{STOP_WORDS.get(result.stop, str(result.stop))})",
        warm_up_line(report, result.sim.stats.warm_up_s),
    ]
    for pool in report["overload"]:
        lines.append(f"OVERLOADED: {pool['message']}")
    lines += [
        f"lots: {lots['received']} received, {lots['completed']} completed, {lots['scrapped']} scrapped, "
        f"{lots['in_progress']} in progress ({lots['reworks']} reworks)",
        f"throughput: {report['throughput_per_hour']:.3f} lots/h   lead time: mean "
        f"{human_duration(lead['mean'])}, p50 {human_duration(lead['p50'])}, p95 {human_duration(lead['p95'])}, "
        f"max {human_duration(lead['max'])}",
        f"WIP: mean {wip['mean']:.1f} lots, max {wip['max']}, at the end {wip['final']}"
        + ("" if report["steady"] else " (not steady: these means grow with the run's length)"),
    ]
    if report["bottleneck"]:
        pool = report["bottleneck"]["pool"]
        lines.append(f"bottleneck: stage {report['bottleneck']['stage']} (busiest pool: {pool['machine_type']} at "
                     f"{pool['location']}, {pool['busy']:.0%} busy, mean wait {human_duration(pool['mean_wait_s'])}, "
                     f"{pool['queue_share']:.0%} of all waiting)")
    if result.messages_written:
        lines.append(f"telemetry: {result.messages_written} messages written")
    if result.rejected:
        lines.append(f"orders rejected: {len(result.rejected)} {result.rejected_by_reason}")
    return "\n".join(lines)
