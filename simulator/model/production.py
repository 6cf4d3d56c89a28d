"""The life of a lot: queue, seize a machine by priority, operate (with blocks and failures),
test outcome, rework or scrap, next stage, completion."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
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
            yield env.timeout(work)
            machine.in_work = False
            blocked_s, reason = 0.0, None
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
            ) -> Generator[simpy.Event, Any, tuple[float, str | None]]:
    """Process ``work`` seconds on ``machine``; a per-cycle block (``block``) stops it at a random
    point, and a failure may interrupt it.  Returns (blocked seconds, last block reason)."""
    env = world.env
    blocked_s = 0.0
    reason: str | None = None
    block_at = machine.rng_blocks.random() * work if block else None
    done = 0.0
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
            lot.to(LotState.BLOCKED)
            halted = env.now
            yield failure.repaired
            lot.to(LotState.PROCESSING)
            blocked_s += env.now - halted
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
        yield env.timeout(repair)
        machine.block_reason = None
        machine.set_state(RUNNING, env.now)
        lot.to(LotState.PROCESSING)
        world.recorder.machine_event("machine.repaired", machine, plan.name, reason=reason,
                                     cause="cycle_block")
        blocked_s += repair


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
