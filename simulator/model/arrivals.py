"""Generated order arrivals (offline runs and the demo): Poisson or fixed inter-arrival times,
location / priority mixes by weight, uniform quantities; one seeded stream."""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Callable, Iterator
from itertools import accumulate

from simulator.config.plant import ArrivalSettings
from simulator.model.order import Order


class OrderGenerator:
    """An endless, deterministic sequence of (inter-arrival gap in seconds, order)."""

    def __init__(self, arrivals: ArrivalSettings, locations: dict[str, float], rng: random.Random,
                 code_prefix: str) -> None:
        if not locations:
            raise ValueError("no location to send lots to")
        self.arrivals = arrivals
        self.rng = rng
        self.code_prefix = code_prefix
        self.mean_gap = 3600.0 / arrivals.rate_per_hour
        self._locations = list(locations)
        self._location_weights = list(accumulate(locations.values()))
        self._priorities = list(arrivals.priority_mix)
        self._priority_weights = list(accumulate(arrivals.priority_mix.values()))
        self.count = 0

    def gap(self) -> float:
        if self.arrivals.process == "fixed":
            return self.mean_gap
        return self.rng.expovariate(1.0 / self.mean_gap)

    def order(self) -> Order:
        self.count += 1
        rng = self.rng
        # ``bisect(cum, random() * total)`` is what ``rng.choices(..., cum_weights=cum)[0]`` draws,
        # without its per-call list building (the same numbers from the same stream)
        locations, location_cum = self._locations, self._location_weights
        priorities, priority_cum = self._priorities, self._priority_weights
        return Order(
            lot_code=f"{self.code_prefix}-{self.count:06d}",
            customer=rng.choice(self.arrivals.customers),
            quantity=rng.randint(self.arrivals.quantity_min, self.arrivals.quantity_max),
            location=locations[bisect(location_cum, rng.random() * location_cum[-1], 0, len(locations) - 1)],
            priority=priorities[bisect(priority_cum, rng.random() * priority_cum[-1], 0, len(priorities) - 1)],
        )

    def __iter__(self) -> Iterator[tuple[float, Order]]:
        while True:
            yield self.gap(), self.order()


def mix_with(weights: dict[str, float], canonical: Callable[[str], str | None]) -> dict[str, float]:
    """Re-key a weight mix by canonical names, merging aliases."""
    out: dict[str, float] = {}
    for name, weight in weights.items():
        key = canonical(name)
        if key is None:
            raise ValueError(f"unknown name in mix: {name!r}")
        out[key] = out.get(key, 0.0) + weight
    return out
