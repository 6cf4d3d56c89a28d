"""Building the plant from the config: machines, pools per location and type, stage plans."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

import machines as machine_registry
from simulator.config.plant import Anomalies, Failures, Maintenance, PlantSettings, Quality, ideal_cycle_time
from simulator.model.distributions import Sampler, processing_sampler, sampler
from simulator.model.events import Calendar
from simulator.model.machine import Machine
from simulator.model.pool import MachinePool
from simulator.model.randomness import stream


@dataclass(frozen=True, slots=True)
class StagePlan:
    """A route stage with its samplers and disruption settings resolved."""

    index: int
    name: str
    machine_type: str
    process_time: Callable[[random.Random, int], float]
    ideal_time: Callable[[int], float]
    block_probability: float
    block_reasons: tuple[str, ...]
    block_cum_weights: tuple[float, ...]
    repair_time: Sampler
    quality: Quality | None
    rework_index: int | None

    def draw_block_reason(self, rng: random.Random) -> str:
        return rng.choices(self.block_reasons, cum_weights=self.block_cum_weights)[0]


@dataclass(frozen=True, slots=True)
class MachineDisruptions:
    """Failure, maintenance and random anomaly settings of the machines of one type."""

    failures: Failures | None
    failure_repair: Sampler | None
    maintenance: Maintenance | None
    maintenance_duration: Sampler | None
    block_reasons: tuple[str, ...]
    anomalies: Anomalies | None = None
    anomaly_duration: Sampler | None = None
    anomaly_severity: Sampler | None = None


class Plant:
    """Locations, machine pools and the route, on one event calendar."""

    def __init__(self, env: Calendar, config: PlantSettings, seed: int) -> None:
        self.env = env
        self.config = config
        self.stages = [self._plan(i, config) for i in range(len(config.route))]
        self.stage_by_name = {s.name: s for s in self.stages}
        self.machines: dict[str, Machine] = {}
        self.pools: dict[tuple[str, str], MachinePool] = {}
        self.machine_disruptions: dict[str, MachineDisruptions] = {}
        # a machine's random streams are derived from its stream key (its default id), not its id:
        # renaming machines (machine_id_template) changes their names and nothing else
        self.stream_keys: dict[str, str] = {}
        pools: dict[tuple[str, str], list[Machine]] = {}
        for slot in config.machine_slots:
            mid, key, mtype = slot.id, slot.stream_key, slot.machine_type
            rng = stream(seed, "machine", key, "history")
            machine = Machine(
                mid, slot.location, mtype, machine_registry.get(config.model_of(mtype)),
                rng_blocks=stream(seed, "machine", key, "blocks"),
                rng_failures=stream(seed, "machine", key, "failures"),
                rng_signals=stream(seed, "machine", key, "signals"),
                last_maintenance=-rng.uniform(0.0, 14 * 86400.0),
                rng_anomalies=stream(seed, "machine", key, "anomalies"),
            )
            self.machines[mid] = machine
            self.stream_keys[mid] = key
            pools.setdefault((slot.location, mtype), []).append(machine)
        for loc_name, loc in config.locations.items():
            for mtype in loc.machines:
                self.pools[(loc_name, mtype)] = MachinePool(env, loc_name, mtype, pools.get((loc_name, mtype), []))
        for mtype in {m.machine_type for m in self.machines.values()}:
            self.machine_disruptions[mtype] = self._machine_disruptions(config, mtype)

    @staticmethod
    def _plan(i: int, config: PlantSettings) -> StagePlan:
        stage = config.route[i]
        dis = config.disruptions_of(stage)
        rework_index = None
        if stage.quality is not None:
            target = stage.quality.rework_stage
            names = [s.name for s in config.route]
            rework_index = names.index(target) if target is not None else max(0, i - 1)
        return StagePlan(
            index=i,
            name=stage.name,
            machine_type=stage.machine_type,
            process_time=processing_sampler(stage),
            ideal_time=ideal_cycle_time(stage),
            block_probability=dis.block_probability,
            block_reasons=tuple(r.reason for r in dis.block_reasons),
            block_cum_weights=tuple(accumulate(r.weight for r in dis.block_reasons)),
            repair_time=sampler(dis.repair_time),
            quality=stage.quality,
            rework_index=rework_index,
        )

    @staticmethod
    def _machine_disruptions(config: PlantSettings, machine_type: str) -> MachineDisruptions:
        """The first stage using ``machine_type`` decides; machines no stage uses get the plant-wide
        settings."""
        stage = next((s for s in config.route if s.machine_type == machine_type), None)
        dis = config.disruptions_of(stage) if stage is not None else config.disruptions
        return MachineDisruptions(
            failures=dis.failures,
            failure_repair=sampler(dis.failures.repair_time) if dis.failures else None,
            maintenance=dis.maintenance,
            maintenance_duration=sampler(dis.maintenance.duration) if dis.maintenance else None,
            block_reasons=tuple(r.reason for r in dis.block_reasons),
            anomalies=dis.anomalies,
            anomaly_duration=sampler(dis.anomalies.duration) if dis.anomalies else None,
            anomaly_severity=sampler(dis.anomalies.severity) if dis.anomalies else None,
        )

    def pool(self, location: str, machine_type: str) -> MachinePool:
        return self.pools[(location, machine_type)]

    def pools_at(self, location: str) -> list[MachinePool]:
        return [p for (loc, _), p in self.pools.items() if loc == location]
