"""Sampling the configured distributions from an injected random stream."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from simulator.config.plant import Constant, Exponential, Lognormal, Normal, Stage, Triangular, Uniform

AnyDistribution = Constant | Uniform | Triangular | Normal | Lognormal | Exponential
Sampler = Callable[[random.Random], float]
_MAX_REDRAWS = 64


def sampler(dist: AnyDistribution) -> Sampler:
    """A function drawing one non-negative value of ``dist`` from a given stream."""
    if isinstance(dist, Constant):
        value = dist.value
        return lambda rng: value
    if isinstance(dist, Uniform):
        low, high = dist.low, dist.high
        return lambda rng: rng.uniform(low, high)
    if isinstance(dist, Triangular):
        low, mode, high = dist.low, dist.mode, dist.high
        return lambda rng: rng.triangular(low, high, mode)
    if isinstance(dist, Exponential):
        rate = 1.0 / dist.mean
        return lambda rng: rng.expovariate(rate)
    if isinstance(dist, Lognormal):
        if dist.std == 0:
            value = dist.mean
            return lambda rng: value
        sigma2 = math.log(1.0 + (dist.std / dist.mean) ** 2)
        mu, sigma = math.log(dist.mean) - sigma2 / 2.0, math.sqrt(sigma2)
        return lambda rng: rng.lognormvariate(mu, sigma)
    mean, std = dist.mean, dist.std

    def truncated_normal(rng: random.Random) -> float:
        for _ in range(_MAX_REDRAWS):
            value = rng.gauss(mean, std)
            if value >= 0.0:
                return value
        return 0.0

    return truncated_normal


def processing_sampler(stage: Stage) -> Callable[[random.Random, int], float]:
    """Processing time of a lot of ``quantity`` pieces: per lot, or setup + per unit × quantity."""
    if stage.processing_time is not None:
        per_lot = sampler(stage.processing_time)
        return lambda rng, quantity: per_lot(rng)
    assert stage.per_unit_time is not None
    per_unit = sampler(stage.per_unit_time)
    setup = sampler(stage.setup_time) if stage.setup_time is not None else None
    if setup is None:
        return lambda rng, quantity: per_unit(rng) * quantity
    return lambda rng, quantity: setup(rng) + per_unit(rng) * quantity
