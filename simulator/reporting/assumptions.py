"""The report's ``assumptions``: what the run was asked to simulate (rates, mixes, route times, machines,
shifts, seed, config fingerprint), so a reader can tell which plant the numbers are about."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from simulator.config.plant import (
    Constant,
    Exponential,
    Lognormal,
    Normal,
    PlantSettings,
    Stage,
    Triangular,
    Uniform,
)
from simulator.model.simulation import Simulation

AnyDistribution = Constant | Uniform | Triangular | Normal | Lognormal | Exponential


def config_fingerprint(config: PlantSettings) -> str:
    """The config's model fingerprint (what decides the plant's behaviour: see
    ``Config.model_fingerprint``); for bare plant settings the SHA-256 of them without the run's own
    seed, start and speed."""
    fingerprint = getattr(config, "model_fingerprint", None)
    if isinstance(fingerprint, str):
        return fingerprint
    data = config.model_dump(mode="json", exclude={"simulation": {"seed", "start", "speed", "after_downtime"}})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seconds_text(value: float) -> str:
    """``100 s``, ``2,400 s``, ``0.5 s``: a duration in seconds as a person writes it."""
    return f"{value:,.0f} s" if value >= 10 or value == int(value) else f"{value:.3g} s"


def distribution_text(d: AnyDistribution) -> str:
    """``exponential mean 100 s``, ``uniform 1,200–3,600 s``, ``normal mean 100 s sd 20 s`` …"""
    if isinstance(d, Constant):
        return f"constant {seconds_text(d.value)}"
    if isinstance(d, Uniform):
        return f"uniform {seconds_text(d.low)[:-2]}–{seconds_text(d.high)}"
    if isinstance(d, Triangular):
        return f"triangular {seconds_text(d.low)[:-2]}–{seconds_text(d.high)}, mode {seconds_text(d.mode)}"
    if isinstance(d, Exponential):
        return f"exponential mean {seconds_text(d.mean)}"
    kind = "normal (truncated at 0)" if isinstance(d, Normal) else "lognormal"
    return f"{kind} mean {seconds_text(d.mean)} sd {seconds_text(d.std)}"


def processing_text(stage: Stage) -> str:
    if stage.processing_time is not None:
        return distribution_text(stage.processing_time)
    assert stage.per_unit_time is not None
    per_unit = f"{distribution_text(stage.per_unit_time)} per piece"
    return per_unit if stage.setup_time is None else f"setup {distribution_text(stage.setup_time)} + {per_unit}"


def _shares(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: round(w / total, 4) if total > 0 else 0.0 for name, w in weights.items()}


def assumptions(sim: Simulation) -> dict[str, Any]:
    """What the run simulated.  ``length`` (the lots or simulated time asked for) is the caller's to fill."""
    config = sim.config
    arrivals = config.arrivals
    mean_quantity = (arrivals.quantity_min + arrivals.quantity_max) / 2
    return {
        "seed": sim.seed,
        "config_fingerprint": config_fingerprint(config),
        "warm_up_s": round(sim.stats.observed_from, 3),
        "length": {"lots": None, "until_s": None},
        "arrivals": {
            "process": arrivals.process,
            "rate_per_hour": arrivals.rate_per_hour,
            "location_mix": _shares(arrivals.location_mix or dict.fromkeys(config.locations, 1.0)),
            "priority_mix": _shares(dict(arrivals.priority_mix)),
            "quantity": {"min": arrivals.quantity_min, "max": arrivals.quantity_max, "mean": mean_quantity},
        },
        "route": [{"stage": stage.name, "machine_type": stage.machine_type, "processing": processing_text(stage),
                   "mean_s": round(config.mean_process_time_of(stage, mean_quantity), 3)}
                  for stage in config.route],
        "machines": {name: dict(loc.machines) for name, loc in config.locations.items()},
        "shifts": {name: loc.shift_calendar for name, loc in config.locations.items()},
    }
