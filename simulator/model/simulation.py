"""The simulation: one SimPy environment holding the plant, the lots and the statistics.

Everything enters through :meth:`Simulation.admit` (a lot at the current simulated time) or
:meth:`Simulation.start_arrivals` (generated orders); time advances only through ``env``.
Deterministic per seed: every entity draws from its own stream (see ``randomness``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable

import simpy

from simulator.config_schema import Config
from simulator.errors import OrderRejected
from simulator.limits import calendar_end_s
from simulator.model.arrivals import OrderGenerator, mix_with
from simulator.model.climate import OutdoorClimate
from simulator.model.disruptions import break_down, maintain, maintenance_clock
from simulator.model.lot import Lot
from simulator.model.machine import Machine, Timeline
from simulator.model.order import Order
from simulator.model.plant import Plant
from simulator.model.production import Process, produce
from simulator.model.randomness import stream
from simulator.model.recorder import Recorder
from simulator.model.records import Sink
from simulator.model.sampling import sample
from simulator.model.shifts import CalendarClock, follow_shifts
from simulator.model.statistics import Statistics
from simulator.model.utilities import continuous_types, start_utility


class Simulation:
    def __init__(self, config: Config, sink: Sink, *, seed: int | None = None,
                 sample_limit: int | None = None, timeline: tuple[float, float] | None = None) -> None:
        self.config = config
        self.seed = config.simulation.seed if seed is None else seed
        self.start: dt.datetime = config.simulation.start
        self.env = simpy.Environment()
        self.calendar_end_s = calendar_end_s(self.start)  # simulated time cannot go past this
        self.plant = Plant(self.env, config, self.seed)
        self.stats = Statistics(
            [s.name for s in config.route], list(config.locations),
            sample_limit=sample_limit, rng=stream(self.seed, "statistics"),
        )
        self.recorder = Recorder(self.env, sink, config.telemetry,
                                 {name: loc.ambient_c for name, loc in config.locations.items()},
                                 {name: OutdoorClimate(loc.climate, loc.timezone, self.start)
                                  for name, loc in config.locations.items() if loc.climate is not None})
        self.lots: dict[str, Lot] = {}  # lots in progress by code
        self.shift_factor = dict.fromkeys(config.locations, 1.0)
        self.timeline = Timeline(*timeline) if timeline else None
        self.failures_possible = False
        self.continuous_types = continuous_types(config)  # utilities: no lots, not in the pools' shift logic
        self._finish_listeners: list[Callable[[Lot], None]] = []
        self._start_machine_processes()
        self._start_shifts()
        self._start_utilities()

    # -- wiring ---------------------------------------------------------------------------------
    def _start_machine_processes(self) -> None:
        plant = self.plant
        for pool in plant.pools.values():
            pool.start_maintenance = self._start_maintenance
        for machine in plant.machines.values():
            machine.timeline = self.timeline
            dis = plant.machine_disruptions[machine.machine_type]
            history = stream(self.seed, "machine", machine.id, "setup")
            if dis.failures is not None:
                self.failures_possible = True
                self.env.process(break_down(self, machine, dis))
            if dis.maintenance is not None:
                if dis.maintenance.every_cycles:
                    machine.cycles_since_maintenance = history.randrange(dis.maintenance.every_cycles)
                if dis.maintenance.every_hours:
                    self.env.process(maintenance_clock(self, machine, dis))
            interval = self.config.sample_interval_of(machine.machine_type)
            if interval > 0:
                self.env.process(sample(self, machine, interval, history.uniform(0.0, interval)))

    def _start_maintenance(self, machine: Machine) -> None:
        self.env.process(maintain(self, machine, self.plant.machine_disruptions[machine.machine_type]))

    def _start_shifts(self) -> None:
        for name, loc in self.config.locations.items():
            if loc.shift_calendar is not None:
                clock = CalendarClock(self.config.shift_calendars[loc.shift_calendar], loc.timezone,
                                      self.start)
                self.env.process(follow_shifts(self, name, clock))

    def _start_utilities(self) -> None:
        if not self.continuous_types:
            return
        for name, loc in self.config.locations.items():
            clock = None
            if loc.shift_calendar is not None:
                clock = CalendarClock(self.config.shift_calendars[loc.shift_calendar], loc.timezone, self.start)
            for pool in self.plant.pools_at(name):
                if pool.machine_type in self.continuous_types:
                    for machine in pool.machines:
                        start_utility(self, machine, clock)

    # -- lots -----------------------------------------------------------------------------------
    def admit(self, order: Order) -> Lot:
        """Start ``order`` as a lot now.  Raises OrderRejected for a lot code in progress or an
        unknown location."""
        if order.lot_code in self.lots:
            raise OrderRejected("duplicate_lot", f"lot {order.lot_code!r} is already in progress")
        location = self.config.location_of(order.location)
        if location is None:
            raise OrderRejected("unknown_location", f"unknown location {order.location!r}")
        lot = Lot(order.lot_code, order.customer, order.quantity, location, order.priority,
                  self.env.now, None, self.config.simulation.priority_processing, run_seed=self.seed)
        self.lots[lot.code] = lot
        self.stats.lot_received(self.env.now, location)
        if self.recorder.lot_events:
            self.recorder.lot_event("lot.received", lot)
        self.env.process(produce(self, lot))
        return lot

    def start_arrivals(self, limit: int | None = None, code_prefix: str | None = None) -> OrderGenerator:
        """Generate orders from ``config.arrivals`` (``limit`` lots, or without end); lot codes are
        ``<code_prefix>-<n>`` (default prefix ``L-<start date>``)."""
        arrivals = self.config.arrivals
        mix = arrivals.location_mix or dict.fromkeys(self.config.locations, 1.0)
        generator = OrderGenerator(
            arrivals, mix_with(mix, self.config.location_of), stream(self.seed, "arrivals"),
            code_prefix=code_prefix or f"L-{self.start:%Y%m%d}",
        )
        self.env.process(self._arrive(generator, limit))
        return generator

    def replay(self, timed_orders: Iterable[tuple[float, Order]],
               on_reject: Callable[[Order, OrderRejected], None] | None = None) -> None:
        """Admit each order at its sim time (seconds from the start; non-decreasing)."""
        self.env.process(self._replay(timed_orders, on_reject))

    def _arrive(self, generator: OrderGenerator, limit: int | None) -> Process:
        for n, (gap, order) in enumerate(generator, start=1):
            if n > 1:
                yield self.env.timeout(gap)
            self.admit(order)
            if limit is not None and n >= limit:
                return

    def _replay(self, timed_orders: Iterable[tuple[float, Order]],
                on_reject: Callable[[Order, OrderRejected], None] | None) -> Process:
        for at, order in timed_orders:
            if at > self.env.now:
                yield self.env.timeout(at - self.env.now)
            try:
                self.admit(order)
            except OrderRejected as exc:
                if on_reject is None:
                    raise
                on_reject(order, exc)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` inside the next step, at the current instant (a fault drill's failing step)."""

        def process() -> Process:
            yield self.env.timeout(0)
            fn()

        self.env.process(process())

    def replace_sink(self, sink: Sink) -> None:
        """From now on, records go to ``sink``."""
        self.recorder.sink = sink

    # -- time -----------------------------------------------------------------------------------
    def settle(self, sim_time: float) -> None:
        """Process every event due at or before ``sim_time``, then move the clock to it: the point
        at which an input stamped ``sim_time`` applies (the driver does the same, in slices)."""
        env = self.env
        while env.peek() <= sim_time:
            env.step()
        self.move_clock_to(sim_time)

    def move_clock_to(self, sim_time: float) -> None:
        """Move the clock forward to ``sim_time`` when nothing is due before it (else nothing)."""
        env = self.env
        if sim_time > env.now and sim_time != math.inf and env.peek() > sim_time:
            env.timeout(sim_time - env.now)
            env.step()

    # -- observation ----------------------------------------------------------------------------
    def on_lot_finished(self, listener: Callable[[Lot], None]) -> None:
        self._finish_listeners.append(listener)

    def lot_finished(self, lot: Lot) -> None:
        for listener in self._finish_listeners:
            listener(lot)

    def flush_timeline(self) -> None:
        """Close every machine's current state interval at ``now`` so the timeline is complete
        (the machines stay in their states)."""
        if self.timeline is not None:
            for machine in self.plant.machines.values():
                machine.set_state(machine.state, self.env.now)

    @property
    def now(self) -> float:
        return float(self.env.now)

    def wall_time(self, sim_time: float | None = None) -> dt.datetime:
        """The UTC instant of ``sim_time`` (default: now)."""
        return self.start + dt.timedelta(seconds=self.now if sim_time is None else sim_time)
