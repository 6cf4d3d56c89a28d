"""What the programs log on their own: the periodic statistics line."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from simulator.config.common import Strict

MIN_STATS_INTERVAL_S = 0.1


class Logging(Strict):
    # one INFO line with the counts and rates of the service (or the bridge) every this many wall
    # seconds; 0 turns it off
    stats_interval_s: Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)] = 30.0

    @field_validator("stats_interval_s")
    @classmethod
    def _off_or_sensible(cls, value: float) -> float:
        if 0 < value < MIN_STATS_INTERVAL_S:
            raise ValueError(f"must be 0 (off) or from {MIN_STATS_INTERVAL_S} to 86,400 seconds (got {value})")
        return value
