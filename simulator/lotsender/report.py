"""The final summary of a lot-sender run: one dict (``--report json``) and its text form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from simulator.lotsender.follow import FollowResult
from simulator.lotsender.sender import SendStats
from simulator.progress import count_of

ALL_AT_ONCE_S = 1.0  # lots sent as fast as possible within less than this: no per-minute rate


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
    span = stats.send_span_s()
    achieved = stats.achieved_rate_per_min()
    if requested_rate_per_min is None and span is not None and span < ALL_AT_ONCE_S:
        achieved = None  # a per-minute rate over a few milliseconds says nothing: "all at once"
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
        "send_span_s": None if span is None else round(span, 3),
        "achieved_rate_per_min": None if achieved is None else _significant(achieved),
        "lots_per_s": _significant(stats.sent / elapsed) if elapsed > 0 else None,
        "ack_latency_ms": _spread(stats.ack_latencies_s, 1000.0,
                                  (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))),
        "interrupted": interrupted,
    }
    if follow is not None:
        lots_left, malformed_left = follow_outstanding
        shares = (("p50", 0.50), ("p95", 0.95), ("max", 1.0))
        summary["follow"] = {
            "lots": len(stats.sent_wall),
            "completed": follow.count("completed"),
            "scrapped": follow.count("scrapped"),
            "rejected": dict(follow.rejected),
            "not_finished": lots_left,
            "malformed_dead_lettered": follow.malformed_dead_lettered,
            "malformed_not_dead_lettered": malformed_left,
            "dead_letter_reasons": dict(follow.dead_letter_reasons),
            "unexpected_reasons": dict(follow.unexpected_reasons),
            "ignored_final_events": follow.ignored_final_events,
            "lead_time_s": _spread(follow.lead_times_s(stats.sent_wall), 1.0, shares),
            "sim_lead_time_s": _spread(follow.sim_lead_times_s(), 1.0, shares),
            "timed_out": follow.timed_out,
        }
    summary["ok"] = not failures(summary)
    return summary


def failures(summary: dict[str, Any]) -> list[str]:
    """Why the run failed (empty when it did not): the exit code is 1 when this is not empty."""
    problems = []
    if summary["failed"]:
        problems.append(f"{count_of(summary['failed'], 'lot')} not acknowledged by Kafka")
    follow = summary.get("follow")
    if follow is not None:
        if follow["rejected"]:
            problems.append(f"{count_of(sum(follow['rejected'].values()), 'lot')} dead-lettered by the service")
        if follow["not_finished"]:
            problems.append(f"{count_of(follow['not_finished'], 'lot')} not finished before --follow-timeout")
        if follow["malformed_not_dead_lettered"]:
            problems.append(f"{count_of(follow['malformed_not_dead_lettered'], 'malformed message')} not dead-lettered")
        if follow["unexpected_reasons"]:
            problems.append(f"{sum(follow['unexpected_reasons'].values())} malformed messages were dead-lettered "
                            "for another reason than intended")
    return problems


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def _significant(value: float) -> float:
    """``value`` with three significant digits, whole from 100 up (119.84 → 120.0, 12.345 → 12.3,
    0.4987 → 0.499, 48213.7 → 48214.0)."""
    if value == 0 or not math.isfinite(value):
        return value
    digits = min(max(2 - math.floor(math.log10(abs(value))), 0), 3)
    return round(value, digits)


def rate_text(value: float | None, unit: str) -> str:
    """A rate with sensible precision: ``1,200/min``, ``48.5 lots/s``, ``0.50/min``."""
    if value is None:
        return "n/a"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}{unit}"


def duration_text(seconds: float | None) -> str:
    """A duration as people read it: ``350 ms``, ``12.3 s``, ``7 min 05 s``, ``4 h 05 min``, ``2 d 03 h``."""
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    if minutes < 24 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    hours = round(seconds / 3600)
    return f"{hours // 24} d {hours % 24:02d} h"


def _rate_line(summary: dict[str, Any]) -> str:
    requested = summary["requested_rate_per_min"]
    achieved = summary["achieved_rate_per_min"]
    span = summary["send_span_s"]
    if requested is not None:
        return f"rate: achieved {rate_text(achieved, '/min')}, requested {rate_text(requested, '/min')}"
    if span is None:
        return "rate: as fast as possible"
    if achieved is None:
        return f"rate: all at once ({count_of(summary['sent'], 'lot')} within {duration_text(max(span, 0.001))})"
    return f"rate: as fast as possible, {rate_text(achieved / 60.0, ' lots/s')} between the first and the last send"


def render_text(summary: dict[str, Any]) -> str:
    lat = summary["ack_latency_ms"]
    lines = [
        f"lot-sender run {summary['run']} → {summary['topic']} on {summary['broker']} ({summary['mode']})",
        f"sent {summary['sent']:,} ({summary['malformed_sent']:,} malformed)   acknowledged {summary['acknowledged']:,}"
        f"   failed {summary['failed']:,}   in {duration_text(summary['elapsed_s'])}"
        f" ({rate_text(summary['lots_per_s'], ' lots/s')})",
        _rate_line(summary),
        f"ack latency: p50 {_num(lat['p50'], ' ms')}, p95 {_num(lat['p95'], ' ms')}, p99 {_num(lat['p99'], ' ms')}, "
        f"max {_num(lat['max'], ' ms')}",
    ]
    if summary["errors"]:
        lines.append("errors: " + ", ".join(f"{name} ×{n}" for name, n in sorted(summary["errors"].items())))
    follow = summary.get("follow")
    if follow is not None:
        lead, sim = follow["lead_time_s"], follow["sim_lead_time_s"]
        rejected = follow["rejected"]
        reasons = f" ({', '.join(f'{r} ×{n}' for r, n in sorted(rejected.items()))})" if rejected else ""
        lines += [
            f"followed {count_of(follow['lots'], 'lot')}: {follow['completed']:,} completed, "
            f"{follow['scrapped']:,} scrapped, "
            f"{sum(rejected.values()):,} dead-lettered{reasons}, {follow['not_finished']:,} not finished"
            + ("  (--follow-timeout reached)" if follow["timed_out"] else ""),
            f"lead time (send → finished event): p50 {duration_text(lead['p50'])}, "
            f"p95 {duration_text(lead['p95'])}, max {duration_text(lead['max'])}",
            f"simulated lead time: p50 {duration_text(sim['p50'])}, p95 {duration_text(sim['p95'])}, "
            f"max {duration_text(sim['max'])}",
        ]
        if follow["ignored_final_events"]:
            lines.append(f"ignored {follow['ignored_final_events']:,} final events of orders sent before this run "
                         "(same lot codes)")
        if summary["malformed_sent"]:
            lines.append(f"malformed: {follow['malformed_dead_lettered']:,} of {summary['malformed_sent']:,} "
                         "dead-lettered; reasons: "
                         + ", ".join(f"{r} ×{n}" for r, n in sorted(follow["dead_letter_reasons"].items())))
    if summary["interrupted"]:
        lines.append("interrupted: stopped sending early")
    problems = failures(summary)
    lines.append("FAILED: " + "; ".join(problems) if problems else "OK")
    return "\n".join(lines)
