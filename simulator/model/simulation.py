"""The simulation: the event calendar (``env``), the plant, the lots and the statistics.

Everything enters through :meth:`Simulation.admit` (a lot at the current simulated time) or
:meth:`Simulation.start_arrivals` (generated orders); time advances only through ``env``.
Deterministic per seed: every entity draws from its own stream (see ``randomness``), and
everything that will happen is an entry of the calendar, so the whole state is data
(:mod:`simulator.model.snapshot` writes and restores it).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Iterator

from simulator.config.plant import PlantSettings
from simulator.errors import OrderRejected
from simulator.limits import calendar_end_s
from simulator.model.arrivals import OrderGenerator, mix_with
from simulator.model.climate import OutdoorClimate
from simulator.model.disruptions import maintain, maintenance_clock, schedule_anomaly, schedule_failure
from simulator.model.events import Calendar, handler
from simulator.model.lot import Lot
from simulator.model.machine import Machine, Timeline
from simulator.model.order import Order
from simulator.model.plant import Plant
from simulator.model.production import enter_stage, start_stage
from simulator.model.randomness import stream
from simulator.model.recorder import Recorder
from simulator.model.records import Sink
from simulator.model.sampling import start_sampling
from simulator.model.shifts import CalendarClock, shift_change
from simulator.model.statistics import Statistics
from simulator.model.utilities import continuous_types, interrupt_utility, start_utility, utility_step


class Arrivals:
    """Generated orders on their way in: the generator, the next order and how many may still come."""

    __slots__ = ("generator", "left", "pending", "until")

    def __init__(self, generator: OrderGenerator, left: int | None, pending: Order, until: float = math.inf) -> None:
        self.generator = generator
        self.left = left  # orders still to admit, the pending one included (None: without end)
        self.pending = pending
        self.until = until  # no order comes at or after this sim time (a warm-up's own orders)


class Simulation:
    def __init__(self, config: PlantSettings, sink: Sink, *, seed: int | None = None,
                 sample_limit: int | None = None, timeline: tuple[float, float] | None = None,
                 arrivals_key: str | None = None, warm_up_s: float = 0.0, _restoring: bool = False) -> None:
        """``arrivals_key``: generated orders draw from a stream of their own under this key (the
        plants of a config cut to some of them each get their own orders, not the same ones).
        ``warm_up_s``: the statistics count from this simulated time (see :meth:`warm_up_at`)."""
        self.config = config
        self.arrivals_key = arrivals_key
        self.seed = config.simulation.seed if seed is None else seed
        self.start: dt.datetime = config.simulation.start
        self.env = Calendar()
        self.calendar_end_s = calendar_end_s(self.start)  # simulated time cannot go past this
        self.plant = Plant(self.env, config, self.seed)
        self.stats = Statistics(
            [s.name for s in config.route], list(config.locations),
            sample_limit=sample_limit, rng=stream(self.seed, "statistics"),
            pools=self.plant.pools,
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
        self.arrivals: Arrivals | None = None
        self.replaying = False  # a replay of timed orders is under way (it cannot be snapshotted)
        self.calendar_clocks = {
            name: CalendarClock(config.shift_calendars[loc.shift_calendar], loc.timezone, self.start)
            for name, loc in config.locations.items() if loc.shift_calendar is not None
        }
        for key, pool in self.plant.pools.items():
            pool.stats = self.stats.pools[key]
            pool.start_maintenance = self._start_maintenance
            pool.start_lot = self._start_lot
        for machine in self.plant.machines.values():
            machine.attach_timeline(self.timeline)
            if self.plant.machine_disruptions[machine.machine_type].failures is not None:
                self.failures_possible = True
        if not _restoring:  # (a restored simulation gets its state and calendar from the snapshot)
            self._start_utilities()  # first: out of their pools before a maintenance clock looks for idle machines
            self._start_machines()
            self._start_shifts()
            if warm_up_s > 0:
                self.warm_up_at(warm_up_s)

    # -- wiring ---------------------------------------------------------------------------------
    def _start_machines(self) -> None:
        for machine in self.plant.machines.values():
            self.start_machine(machine)

    def start_machine(self, machine: Machine) -> None:
        """Start ``machine``'s own clocks: failures, every-hours maintenance, samples, random anomalies."""
        dis = self.plant.machine_disruptions[machine.machine_type]
        history = stream(self.seed, "machine", self.plant.stream_keys[machine.id], "setup")
        if dis.failures is not None:
            schedule_failure(self, machine)
        if dis.maintenance is not None:
            if dis.maintenance.every_cycles:
                machine.preset_cycles_since_maintenance(history.randrange(dis.maintenance.every_cycles))
            if dis.maintenance.every_hours:
                maintenance_clock(self, machine)
        interval = self.config.sample_interval_of(machine.machine_type)
        if interval > 0:
            start_sampling(self, machine, interval, history.uniform(0.0, interval))
        if dis.anomalies is not None:
            schedule_anomaly(self, machine)

    def _start_maintenance(self, machine: Machine) -> None:
        maintain(self, machine)

    def _start_lot(self, lot: Lot, machine: Machine) -> None:
        start_stage(self, lot, machine)

    def _start_shifts(self) -> None:
        for name in self.calendar_clocks:
            shift_change(self, name)

    def _start_utilities(self) -> None:
        for name in self.config.locations:
            for pool in self.plant.pools_at(name):
                if pool.machine_type in self.continuous_types:
                    for machine in pool.machines:
                        start_utility(self, machine)

    # the machine-level steps other modules call back into
    def resume_utility(self, machine: Machine) -> None:
        utility_step(self, machine)

    def interrupt_utility(self, machine: Machine) -> None:
        interrupt_utility(self, machine)

    def next_failure(self, machine: Machine) -> None:
        schedule_failure(self, machine)

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
        enter_stage(self, lot, 0)
        return lot

    def start_arrivals(self, limit: int | None = None, code_prefix: str | None = None,
                       until: float = math.inf) -> OrderGenerator:
        """Generate orders from ``config.arrivals`` (``limit`` lots, or without end, or until
        sim time ``until``); lot codes are ``<code_prefix>-<n>`` (default prefix ``L-<start date>``)."""
        generator = self.order_generator(code_prefix or f"L-{self.start:%Y%m%d}")
        if (limit is None or limit > 0) and until > self.env.now:
            generator.gap()  # (the first order comes at once: its gap is drawn and not used)
            self.arrivals = Arrivals(generator, limit, generator.order(), until)
            self.env.at(self.env.now, arrival, self)
        return generator

    def order_generator(self, code_prefix: str) -> OrderGenerator:
        """The generator of ``config.arrivals`` orders (lot codes ``<code_prefix>-<n>``)."""
        arrivals = self.config.arrivals
        mix = arrivals.location_mix or dict.fromkeys(self.config.locations, 1.0)
        rng = stream(self.seed, "arrivals") if self.arrivals_key is None else \
            stream(self.seed, "arrivals", self.arrivals_key)
        return OrderGenerator(arrivals, mix_with(mix, self.config.location_of), rng,
                              code_prefix=code_prefix)

    def replay(self, timed_orders: Iterable[tuple[float, Order]],
               on_reject: Callable[[Order, OrderRejected], None] | None = None) -> None:
        """Admit each order at its sim time (seconds from the start; non-decreasing)."""
        self.replaying = True
        self._replay_next(iter(timed_orders), on_reject)

    def _replay_next(self, orders: Iterator[tuple[float, Order]],
                     on_reject: Callable[[Order, OrderRejected], None] | None) -> None:
        item = next(orders, None)
        if item is None:
            self.replaying = False
            return
        at, order = item

        def admit() -> None:
            try:
                self.admit(order)
            except OrderRejected as exc:
                if on_reject is None:
                    raise
                on_reject(order, exc)
            self._replay_next(orders, on_reject)

        self.call_at(max(at, self.env.now), admit)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` inside the next step, at the current instant (a fault drill's failing step)."""
        self.call_at(self.env.now, fn)

    def call_at(self, at: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` inside a step at simulated ``at`` (an unnamed entry: a snapshot refuses it)."""
        self.env.at(at, fn)

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
            env.now = sim_time

    def warm_up_at(self, at: float) -> None:
        """The statistics count from simulated time ``at`` (after now): then they start again, and
        the counters and machine KPIs are read from a baseline taken then (see
        :mod:`simulator.model.statistics`).  Records are not affected."""
        if at <= self.env.now:
            raise ValueError(f"the warm-up must end after now ({self.env.now:g} s), got {at:g} s")
        self.stats.warm_up_s = at
        self.env.at(at, warm_up_over, self)

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
                machine.close_interval(self.env.now)

    @property
    def now(self) -> float:
        return float(self.env.now)

    def calendar_time(self, sim_time: float | None = None) -> dt.datetime:
        """The calendar instant (UTC) of simulated time ``sim_time`` (default: now): the run's start plus
        that many seconds.  No wall clock is involved."""
        return self.start + dt.timedelta(seconds=self.now if sim_time is None else sim_time)


@handler("plant.arrival")
def arrival(sim: Simulation) -> None:
    """The next generated order comes in; the one after it is drawn (gap, then order) at once."""
    arrivals = sim.arrivals
    assert arrivals is not None
    sim.admit(arrivals.pending)
    if arrivals.left is not None:
        arrivals.left -= 1
        if arrivals.left <= 0:
            sim.arrivals = None
            return
    gap = arrivals.generator.gap()
    if sim.env.now + gap >= arrivals.until:
        sim.arrivals = None
        return
    arrivals.pending = arrivals.generator.order()
    sim.env.after(gap, arrival, sim)


@handler("statistics.warm_up")
def warm_up_over(sim: Simulation) -> None:
    """The warm-up is over: the statistics count from now."""
    sim.stats.restart(sim.env.now, sim.plant.machines.values())
