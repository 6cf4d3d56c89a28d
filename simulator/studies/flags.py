"""The capacity-study flags of `factorysim simulate`, checked together: each misuse is one usage
error naming the flag and what it accepts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from simulator.durations import parse_duration
from simulator.errors import UsageError
from simulator.progress import human_duration
from simulator.studies.precision import DEFAULT_CAP, DEFAULT_KPI, DEFAULT_START, MIN_START, PrecisionTarget
from simulator.studies.runs import RunLength, WarmUp


@dataclass(frozen=True, slots=True)
class StudyFlags:
    """``replicated``: replications were asked for (``start`` of them first, then up to the
    ``precision`` target when there is one); ``length`` is None only for a single run with neither
    --lots nor --until (an order file)."""

    replicated: bool
    start: int
    precision: PrecisionTarget | None
    warm_up: WarmUp | Literal["auto"]
    length: RunLength | None


def parse_warm_up(text: str | None) -> WarmUp | Literal["auto"]:
    if text is None:
        return WarmUp("none")
    if text.strip().lower() == "auto":
        return "auto"
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise UsageError(f"--warm-up: a simulated duration (e.g. 12h, 2d), auto (found by MSER-5) or 0 (none), "
                         f"got {text!r}") from None
    return WarmUp("fixed", seconds) if seconds > 0 else WarmUp("none")


def parse_precision(text: str) -> float:
    """``5%`` (or the fraction ``0.05``) as 0.05; strictly between 0 and 1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise UsageError(f"--precision: a relative half-width above 0% and below 100%, e.g. 5% (or 0.05), "
                         f"got {text!r}")
    return value


def study_flags(args: argparse.Namespace, until_s: float | None) -> StudyFlags:
    replicated = args.replications is not None or args.precision is not None
    if args.replications is not None and args.replications < 1:
        raise UsageError(f"--replications must be at least 1, got {args.replications}")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if not replicated and args.jobs is not None:
        raise UsageError("--jobs runs replications in parallel: give --replications N or --precision X%")
    for flag, value in (("--precision-kpi", args.precision_kpi), ("--max-replications", args.max_replications)):
        if value is not None and args.precision is None:
            raise UsageError(f"{flag} belongs to --precision X% (add replications until the KPI is known to X%)")
    warm_up = parse_warm_up(args.warm_up)
    if warm_up == "auto" and until_s is None:
        raise UsageError("--warm-up auto needs --until: the pilot looks for the end of the transient in a run of a "
                         "fixed simulated length (a lot count ends at a random time)")
    if isinstance(warm_up, WarmUp) and until_s is not None and warm_up.warm_up_s >= until_s:
        raise UsageError(f"--warm-up ({human_duration(warm_up.warm_up_s)}) must be shorter than --until "
                         f"({human_duration(until_s)}): nothing would be left to observe")
    length = RunLength(lots=args.lots) if args.lots is not None and until_s is None else \
        RunLength(until_s=until_s) if until_s is not None else None
    if not replicated:
        return StudyFlags(False, 1, None, warm_up, length)
    for flag, value in (("--orders", args.orders), ("--from-snapshot", args.from_snapshot),
                        ("--telemetry-out", args.telemetry_out)):
        if value is not None:
            raise UsageError(f"--replications and {flag} exclude each other: replications are independent runs of "
                             "generated arrivals from an empty plant, reported as statistics")
    if args.lots is not None and until_s is not None:
        raise UsageError("--replications: give --lots N (a terminating study: every replication ends when N lots "
                         "are done) or --until DURATION (a steady-state study), not both")
    assert length is not None  # (one of --lots and --until is there: simulate checked that)
    precision = None
    start = args.replications if args.replications is not None else DEFAULT_START
    if args.precision is not None:
        relative = parse_precision(args.precision)
        cap = DEFAULT_CAP if args.max_replications is None else args.max_replications
        if start < MIN_START:
            raise UsageError(f"--precision starts with at least {MIN_START} replications (an interval needs a few "
                             f"to estimate how many more are needed), got --replications {start}")
        if cap < start:
            raise UsageError(f"--max-replications ({cap}) must be at least --replications ({start})")
        precision = PrecisionTarget(args.precision_kpi or DEFAULT_KPI, relative, cap)
    return StudyFlags(True, start, precision, warm_up, length)
