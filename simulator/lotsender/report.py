"""The final summary of a lot-sender run: one dict (``--report json``) and its text form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from simulator.lotsender.follow import FollowResult
from simulator.lotsender.sender import SendStats


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(share * len(ordered)), 1)
    return ordered[rank - 1]


def _spread(values: Sequence[float], scale: float, shares: tuple[tuple[str, float], ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, share in shares:
        value = percentile(values, share)
        out[name] = None if value is None else round(value * scale, 3)
    return out


def build_summary(*, run_id: str, broker: str, topic: str, mode: str, requested_rate_per_min: float | None,
                  stats: SendStats, follow: FollowResult | None, follow_outstanding: tuple[int, int] = (0, 0),
                  interrupted: bool = False) -> dict[str, Any]:
    elapsed = (stats.finished or 0.0) - (stats.started or 0.0)
    achieved = stats.achieved_rate_per_min()
    summary: dict[str, Any] = {
        "run": run_id,
        "broker": broker,
        "topic": topic,
        "mode": mode,
        "sent": stats.sent,
        "acknowledged": stats.acked,
        "failed": stats.failed,
        "malformed_sent": stats.malformed,
        "errors": dict(stats.errors),
        "elapsed_s": round(elapsed, 3),
        "requested_rate_per_min": requested_rate_per_min,
        "achieved_rate_per_min": None if achieved is None else round(achieved, 3),
        "lots_per_s": round(stats.sent / elapsed, 1) if elapsed > 0 else None,
        "ack_latency_ms": _spread(stats.ack_latencies_s, 1000.0,
                                  (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))),
        "interrupted": interrupted,
    }
    if follow is not None:
        lots_left, malformed_left = follow_outstanding
        summary["follow"] = {
            "lots": len(stats.sent_wall),
            "completed": follow.completed,
            "scrapped": follow.scrapped,
            "rejected": dict(follow.rejected),
            "not_finished": lots_left,
            "malformed_dead_lettered": follow.malformed_dead_lettered,
            "malformed_not_dead_lettered": malformed_left,
            "dead_letter_reasons": dict(follow.dead_letter_reasons),
            "unexpected_reasons": dict(follow.unexpected_reasons),
            "lead_time_s": _spread(follow.lead_times_s, 1.0, (("p50", 0.50), ("p95", 0.95), ("max", 1.0))),
            "sim_lead_time_s": _spread(follow.sim_lead_times_s, 1.0, (("p50", 0.50), ("p95", 0.95), ("max", 1.0))),
            "timed_out": follow.timed_out,
        }
    summary["ok"] = not failures(summary)
    return summary


def failures(summary: dict[str, Any]) -> list[str]:
    """Why the run failed (empty when it did not): the exit code is 1 when this is not empty."""
    problems = []
    if summary["failed"]:
        problems.append(f"{summary['failed']} lots were not acknowledged by Kafka")
    follow = summary.get("follow")
    if follow is not None:
        if follow["rejected"]:
            problems.append(f"{sum(follow['rejected'].values())} lots were dead-lettered by the service")
        if follow["not_finished"]:
            problems.append(f"{follow['not_finished']} lots did not finish before --follow-timeout")
        if follow["malformed_not_dead_lettered"]:
            problems.append(f"{follow['malformed_not_dead_lettered']} malformed messages were not dead-lettered")
        if follow["unexpected_reasons"]:
            problems.append(f"{sum(follow['unexpected_reasons'].values())} malformed messages were dead-lettered "
                            "for another reason than intended")
    return problems


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def render_text(summary: dict[str, Any]) -> str:
    lat = summary["ack_latency_ms"]
    requested = summary["requested_rate_per_min"]
    lines = [
        f"lot-sender run {summary['run']} → {summary['topic']} on {summary['broker']} ({summary['mode']})",
        f"sent {summary['sent']:,} ({summary['malformed_sent']:,} malformed)   acknowledged {summary['acknowledged']:,}"
        f"   failed {summary['failed']:,}   in {summary['elapsed_s']:.1f} s ({_num(summary['lots_per_s'])} lots/s)",
        f"rate: achieved {_num(summary['achieved_rate_per_min'], '/min', 2)}"
        + (f", requested {requested:,.2f}/min" if requested is not None else ", requested: as fast as possible"),
        f"ack latency: p50 {_num(lat['p50'], ' ms')}, p95 {_num(lat['p95'], ' ms')}, p99 {_num(lat['p99'], ' ms')}, "
        f"max {_num(lat['max'], ' ms')}",
    ]
    if summary["errors"]:
        lines.append("errors: " + ", ".join(f"{name} ×{n}" for name, n in sorted(summary["errors"].items())))
    follow = summary.get("follow")
    if follow is not None:
        lead, sim = follow["lead_time_s"], follow["sim_lead_time_s"]
        lines += [
            f"followed {follow['lots']:,} lots: {follow['completed']:,} completed, {follow['scrapped']:,} scrapped, "
            f"{sum(follow['rejected'].values()):,} rejected, {follow['not_finished']:,} not finished"
            + ("  (--follow-timeout reached)" if follow["timed_out"] else ""),
            f"lead time (send → finished event): p50 {_num(lead['p50'], ' s')}, p95 {_num(lead['p95'], ' s')}, "
            f"max {_num(lead['max'], ' s')}",
            f"simulated lead time: p50 {_num(sim['p50'], ' s', 0)}, p95 {_num(sim['p95'], ' s', 0)}, "
            f"max {_num(sim['max'], ' s', 0)}",
        ]
        if summary["malformed_sent"]:
            lines.append(f"malformed: {follow['malformed_dead_lettered']:,} of {summary['malformed_sent']:,} "
                         "dead-lettered; reasons: "
                         + ", ".join(f"{r} ×{n}" for r, n in sorted(follow["dead_letter_reasons"].items())))
    if summary["interrupted"]:
        lines.append("interrupted: stopped sending early")
    problems = failures(summary)
    lines.append("FAILED: " + "; ".join(problems) if problems else "OK")
    return "\n".join(lines)
