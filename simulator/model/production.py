"""The life of a lot: queue, seize a machine by priority, operate (with blocks and failures),
test outcome, rework or scrap, next stage, completion."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import simpy

from simulator.model.lot import Lot, LotState
from simulator.model.machine import BLOCKED, RUNNING, Machine

if TYPE_CHECKING:
    from simulator.model.plant import StagePlan
    from simulator.model.simulation import Simulation as World

Process = Generator[simpy.Event, Any, Any]

PASS, REWORK, SCRAP = "pass", "rework", "scrap"


@dataclass(frozen=True, slots=True)
class Failure:
    """Interrupt cause: the machine failed; ``repaired`` fires when it works again."""

    repaired: simpy.Event
    reason: str
    restart: bool


@dataclass(frozen=True, slots=True)
class RepairNow:
    """Interrupt cause: a repair command ended the stoppage the interrupted process waits out."""


@dataclass(frozen=True, slots=True)
class Stoppage:
    """Why and until when a blocked machine is down, and how its block ends.

    ``waiter`` is the process waiting for the repair; ``finish`` ends the block (machine state,
    ``machine.repaired`` event, waking the lot).  Whoever ends the block first runs ``finish``
    through :func:`end_stoppage`: the waiter when the repair time is over, or a repair command,
    which then interrupts the waiter with :class:`RepairNow`."""

    cause: str  # "cycle_block" | "failure" | "command"
    reason: str
    until: float  # sim time the repair ends by itself (inf: only a repair command ends it)
    waiter: simpy.Process
    finish: Callable[[], None]


def end_stoppage(machine: Machine) -> Stoppage | None:
    """End ``machine``'s stoppage now (None if it has none)."""
    stoppage, machine.stoppage = machine.stoppage, None
    if stoppage is not None:
        stoppage.finish()
    return stoppage


def wait_repair(env: simpy.Environment, machine: Machine, cause: str, reason: str, repair: float,
                finish: Callable[[], None]) -> Generator[simpy.Event, Any, bool]:
    """Wait ``repair`` seconds and end the stoppage; a repair command may end it sooner (then it has
    already run ``finish``).  Returns True when the repair took its full time."""
    assert env.active_process is not None
    machine.stoppage = Stoppage(cause, reason, env.now + repair, env.active_process, finish)
    try:
        yield env.timeout(repair)
    except simpy.Interrupt as interrupt:
        if not isinstance(interrupt.cause, RepairNow):
            raise
        return False
    end_stoppage(machine)
    return True


def produce(world: World, lot: Lot) -> Process:
    """Move ``lot`` through the route until it is completed or scrapped."""
    env = world.env
    stages = world.plant.stages
    pools = world.plant.pools
    rec = world.recorder
    events = rec.lot_events
    stats = world.stats
    i = 0
    while i < len(stages):
        plan = stages[i]
        pool = pools[(lot.location, plan.machine_type)]
        lot.to(LotState.QUEUED, plan.name)
        queued_at = env.now
        if events:
            rec.lot_event("lot.queued", lot, plan.name)
        machine: Machine = yield pool.acquire(lot)
        started = env.now
        lot.to(LotState.PROCESSING)
        machine.current_process = env.active_process
        if events:
            rec.lot_event("stage.started", lot, plan.name, machine.id, waited_s=started - queued_at)
        work = plan.process_time(lot.rng, lot.quantity)
        block = plan.block_probability > 0 and machine.rng_blocks.random() < plan.block_probability
        if block or world.failures_possible:
            blocked_s, reason = yield from operate(world, machine, lot, plan, work, block)
        else:
            machine.in_work = True
            try:
                yield env.timeout(work)
                machine.in_work = False
                blocked_s, reason = 0.0, None
            except simpy.Interrupt as interrupt:  # a block command stopped the machine
                machine.in_work = False
                failure = interrupt.cause
                assert isinstance(failure, Failure)
                done = 0.0 if failure.restart else env.now - started
                halted_s = yield from halt(env, lot, failure)
                blocked_s, reason = yield from operate(world, machine, lot, plan, work, False, done)
                blocked_s += halted_s
                reason = reason or failure.reason
        outcome = judge(lot, plan)
        account(world, machine, lot, plan, outcome)
        stats.stage_done(plan.name, lot.location, started - queued_at, work)
        if rec.cycle_records:
            rec.cycle(machine, lot, plan.name, env.now - started, work, blocked_s, reason, outcome)
        if events:
            rec.lot_event("stage.completed", lot, plan.name, machine.id, waited_s=started - queued_at,
                          processed_s=work, outcome=outcome)
        pool.release(machine)
        if outcome == REWORK:
            lot.to(LotState.REWORK)
            lot.reworks += 1
            stats.reworks += 1
            assert plan.rework_index is not None
            if events:
                rec.lot_event("lot.reworked", lot, stages[plan.rework_index].name, machine.id,
                              rework_count=lot.reworks)
            i = plan.rework_index
            continue
        if outcome == SCRAP:
            lot.to(LotState.SCRAPPED)
            finish(world, lot, scrapped=True, reason=f"test failed at {plan.name}")
            return
        i += 1
    lot.to(LotState.COMPLETED)
    finish(world, lot, scrapped=False)


def operate(world: World, machine: Machine, lot: Lot, plan: StagePlan, work: float, block: bool,
            done: float = 0.0) -> Generator[simpy.Event, Any, tuple[float, str | None]]:
    """Process ``work`` seconds (``done`` of them already) on ``machine``; a per-cycle block
    (``block``) stops it at a random point, and a failure or a block command may interrupt it.
    Returns (blocked seconds, last block reason)."""
    env = world.env
    blocked_s = 0.0
    reason: str | None = None
    block_at = machine.rng_blocks.random() * work if block else None
    while True:
        target = work if block_at is None else block_at
        segment_start = env.now
        try:
            machine.in_work = True
            yield env.timeout(target - done)
            machine.in_work = False
            done = target
        except simpy.Interrupt as interrupt:
            machine.in_work = False
            failure = interrupt.cause
            assert isinstance(failure, Failure)
            done = 0.0 if failure.restart else done + (env.now - segment_start)
            blocked_s += yield from halt(env, lot, failure)
            reason = failure.reason
            continue
        if block_at is None:
            return blocked_s, reason
        block_at = None
        reason = plan.draw_block_reason(machine.rng_blocks)
        repair = plan.repair_time(machine.rng_blocks)
        machine.block_reason = reason
        machine.set_state(BLOCKED, env.now)
        lot.to(LotState.BLOCKED)
        world.recorder.machine_event("machine.blocked", machine, plan.name, reason=reason,
                                     cause="cycle_block")
        halted = env.now
        finish = partial(_end_cycle_block, world, machine, lot, plan.name, reason)
        if (yield from wait_repair(env, machine, "cycle_block", reason, repair, finish)):
            blocked_s += repair
        else:  # a repair command ended the block early
            blocked_s += env.now - halted


def halt(env: simpy.Environment, lot: Lot, failure: Failure) -> Generator[simpy.Event, Any, float]:
    """The lot waits, blocked, until its machine is repaired; returns the seconds it waited.  A
    block command may have marked the lot blocked already."""
    if lot.state is not LotState.BLOCKED:
        lot.to(LotState.BLOCKED)
    halted = env.now
    yield failure.repaired
    lot.to(LotState.PROCESSING)
    return float(env.now - halted)


def _end_cycle_block(world: World, machine: Machine, lot: Lot, stage: str, reason: str) -> None:
    machine.block_reason = None
    machine.set_state(RUNNING, world.env.now)
    lot.to(LotState.PROCESSING)
    world.recorder.machine_event("machine.repaired", machine, stage, reason=reason, cause="cycle_block")


def judge(lot: Lot, plan: StagePlan) -> str | None:
    """The test outcome at a quality stage (None elsewhere), drawn from the lot's stream."""
    quality = plan.quality
    if quality is None:
        return None
    draw = lot.rng.random()
    if draw < quality.scrap_probability:
        return SCRAP
    if draw < quality.scrap_probability + quality.rework_probability:
        return REWORK if lot.reworks < quality.max_reworks else SCRAP
    return PASS


def account(world: World, machine: Machine, lot: Lot, plan: StagePlan, outcome: str | None) -> None:
    machine.cycles += 1
    machine.cycles_since_maintenance += 1
    machine.pieces_since_maintenance += lot.quantity
    machine.ideal_time_s += plan.ideal_time(lot.quantity)
    if outcome is None or outcome == PASS:
        machine.good_cycles += 1
        machine.good_pieces += lot.quantity
    else:
        machine.bad_pieces += lot.quantity
    maintenance = world.plant.machine_disruptions[machine.machine_type].maintenance
    if maintenance and maintenance.every_cycles and \
            machine.cycles_since_maintenance >= maintenance.every_cycles:
        machine.maintenance_due = True


def finish(world: World, lot: Lot, *, scrapped: bool, reason: str | None = None) -> None:
    now = world.env.now
    lead_time = now - lot.arrived_at
    world.stats.lot_finished(now, lot.location, lot.priority, lead_time, scrapped=scrapped)
    world.lots.pop(lot.code, None)
    if world.recorder.lot_events:
        world.recorder.lot_event("lot.scrapped" if scrapped else "lot.completed", lot, lot.stage,
                                 lead_time_s=lead_time, rework_count=lot.reworks, reason=reason)
    world.lot_finished(lot)
