"""The life of a lot as a state machine on the event calendar: queue, get a machine by priority,
work (in segments, stopped by per-cycle blocks, failures and block commands), test outcome,
rework or scrap, next stage, completion.

A lot's whole progress is data on the lot (stage, work to do and done, the block it will meet,
blocked seconds …) plus at most one calendar entry (the end of the segment it is working), so a
snapshot can hold it and a restored lot carries on exactly.

A machine that stops (a per-cycle block, a failure, a block command) has a :class:`Stoppage`: why,
until when, and what ends it.  It ends by itself at ``until`` (a calendar entry) or earlier by a
repair command; either way :func:`end_stoppage` brings the machine back and wakes whoever waited
(the lot, a continuous-duty machine, the pool, the failure clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from machines.base import FAULT_ANOMALIES
from simulator.model.events import Entry, handler
from simulator.model.lot import Lot, LotState
from simulator.model.machine import Machine

if TYPE_CHECKING:
    from simulator.model.plant import StagePlan
    from simulator.model.simulation import Simulation as World

PASS, REWORK, SCRAP = "pass", "rework", "scrap"
CYCLE_BLOCK, FAILURE, COMMAND = "cycle_block", "failure", "command"


@dataclass(slots=True)
class Stoppage:
    """Why and until when a blocked machine is down.

    ``cause``: ``cycle_block`` (a lot's per-cycle block), ``failure`` or ``command``; ``working``:
    the machine was working (a lot or a duty cycle) and resumes that work afterwards, else it was
    idle and goes back to its pool; ``stage``: the lot's stage when it stopped (for the events);
    ``duration``: the planned length (``until - since`` without rounding); ``entry``: the calendar
    entry that ends it (None: only a repair command does)."""

    cause: str
    reason: str
    since: float
    until: float
    duration: float
    working: bool
    stage: str | None
    entry: Entry | None


# -- stages ---------------------------------------------------------------------------------------
def enter_stage(world: World, lot: Lot, index: int) -> None:
    """``lot`` queues for stage ``index``; it starts at once when a machine is free."""
    plan = world.plant.stages[index]
    lot.to(LotState.QUEUED, plan.name)
    lot.stage_index = index
    lot.queued_at = world.env.now
    if world.recorder.lot_events:
        world.recorder.lot_event("lot.queued", lot, plan.name)
    pool = world.plant.pools[(lot.location, plan.machine_type)]
    machine = pool.acquire(lot)
    if machine is not None:
        start_stage(world, lot, machine)


def start_stage(world: World, lot: Lot, machine: Machine) -> None:
    """``machine`` (assigned by its pool) starts ``lot``'s current stage."""
    plan = world.plant.stages[lot.stage_index]
    now = world.env.now
    lot.started = now
    lot.to(LotState.PROCESSING)
    lot.machine = machine
    if world.recorder.lot_events:
        world.recorder.lot_event("stage.started", lot, plan.name, machine.id, waited_s=now - lot.queued_at)
    work = plan.process_time(lot.rng, lot.quantity)
    block = plan.block_probability > 0 and machine.rng_blocks.random() < plan.block_probability
    lot.work = work
    lot.work_done = 0.0
    lot.blocked_s = 0.0
    lot.block_reason = None
    lot.block_at = machine.rng_blocks.random() * work if block else None
    run_segment(world, lot)


def run_segment(world: World, lot: Lot) -> None:
    """Work up to the per-cycle block, or to the end of the work."""
    machine = lot.machine
    assert machine is not None
    target = lot.work if lot.block_at is None else lot.block_at
    lot.segment_start = world.env.now
    machine.begin_work()
    lot.entry = world.env.after(target - lot.work_done, segment_done, world, lot)


@handler("lot.segment_done")
def segment_done(world: World, lot: Lot) -> None:
    machine = lot.machine
    assert machine is not None
    machine.end_work()
    lot.entry = None
    if lot.block_at is None:
        lot.work_done = lot.work
        finish_stage(world, lot)
        return
    lot.work_done = lot.block_at
    lot.block_at = None
    plan = world.plant.stages[lot.stage_index]
    reason = plan.draw_block_reason(machine.rng_blocks)
    repair = plan.repair_time(machine.rng_blocks)
    stoppage = schedule_stoppage(world, machine, CYCLE_BLOCK, reason, repair, working=True, stage=plan.name)
    machine.block(reason, stoppage, world.env.now)
    lot.to(LotState.BLOCKED)
    world.recorder.machine_event("machine.blocked", machine, plan.name, reason=reason, cause=CYCLE_BLOCK)


def interrupt_lot(world: World, lot: Lot, restart: bool) -> None:
    """Stop ``lot``'s work now (its machine failed or was blocked); it waits, BLOCKED, for the repair.
    ``restart``: the work done in the cycle is lost."""
    machine = lot.machine
    assert machine is not None
    machine.end_work()
    world.env.cancel(lot.entry)
    lot.entry = None
    lot.work_done = 0.0 if restart else lot.work_done + (world.env.now - lot.segment_start)
    if lot.state is not LotState.BLOCKED:  # a block command marks it blocked itself
        lot.to(LotState.BLOCKED)
    lot.halted_at = world.env.now


def resume_lot(world: World, lot: Lot, reason: str) -> None:
    """The machine of an interrupted lot works again: the lot carries on with its work."""
    lot.to(LotState.PROCESSING)
    lot.blocked_s += world.env.now - lot.halted_at
    lot.block_reason = reason
    run_segment(world, lot)


def finish_stage(world: World, lot: Lot) -> None:
    plan = world.plant.stages[lot.stage_index]
    machine = lot.machine
    assert machine is not None
    now = world.env.now
    rec = world.recorder
    outcome = judge(lot, plan)
    account(world, machine, lot, plan, outcome)
    waited = lot.started - lot.queued_at
    world.stats.stage_done(plan.name, lot.location, waited, lot.work)
    if rec.cycle_records:
        rec.cycle(machine, lot, plan.name, now - lot.started, lot.work, lot.blocked_s, lot.block_reason, outcome)
    if rec.lot_events:
        rec.lot_event("stage.completed", lot, plan.name, machine.id, waited_s=waited, processed_s=lot.work,
                      outcome=outcome)
    lot.machine = None
    world.plant.pools[(lot.location, plan.machine_type)].release(machine)
    if outcome == REWORK:
        lot.to(LotState.REWORK)
        lot.reworks += 1
        world.stats.reworks += 1
        assert plan.rework_index is not None
        if rec.lot_events:
            rec.lot_event("lot.reworked", lot, world.plant.stages[plan.rework_index].name, machine.id,
                          rework_count=lot.reworks)
        enter_stage(world, lot, plan.rework_index)
    elif outcome == SCRAP:
        lot.to(LotState.SCRAPPED)
        finish(world, lot, scrapped=True, reason=f"test failed at {plan.name}")
    elif lot.stage_index + 1 < len(world.plant.stages):
        enter_stage(world, lot, lot.stage_index + 1)
    else:
        lot.to(LotState.COMPLETED)
        finish(world, lot, scrapped=False)


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
    """Count the finished cycle on its machine: good when its test passed (or it had none) and the
    machine had no fault (see machines.base.FAULT_ANOMALIES) in force as it finished the pieces."""
    faulty = machine.active_anomaly(world.env.now) in FAULT_ANOMALIES
    good = not faulty and (outcome is None or outcome == PASS)
    machine.finish_cycle(lot.quantity, good, plan.ideal_time(lot.quantity))
    maintenance = world.plant.machine_disruptions[machine.machine_type].maintenance
    if maintenance and maintenance.every_cycles and \
            machine.cycles_since_maintenance >= maintenance.every_cycles:
        machine.mark_maintenance_due()


def finish(world: World, lot: Lot, *, scrapped: bool, reason: str | None = None) -> None:
    now = world.env.now
    lead_time = now - lot.arrived_at
    world.stats.lot_finished(now, lot.location, lot.priority, lead_time, scrapped=scrapped)
    world.lots.pop(lot.code, None)
    if world.recorder.lot_events:
        world.recorder.lot_event("lot.scrapped" if scrapped else "lot.completed", lot, lot.stage,
                                 lead_time_s=lead_time, rework_count=lot.reworks, reason=reason)
    world.lot_finished(lot)


# -- stoppages ------------------------------------------------------------------------------------
def schedule_stoppage(world: World, machine: Machine, cause: str, reason: str, duration: float, *, working: bool,
                      stage: str | None) -> Stoppage:
    """The stoppage of ``machine`` about to block now: down for ``duration`` seconds (inf: until a repair
    command), its end on the calendar (see :meth:`Machine.block`)."""
    env = world.env
    now = env.now
    until = now + duration
    entry = env.after(duration, stoppage_over, world, machine) if duration != float("inf") else None
    return Stoppage(cause, reason, now, until, duration, working, stage, entry)


@handler("machine.stoppage_over")
def stoppage_over(world: World, machine: Machine) -> None:
    end_stoppage(world, machine, early=False)


def end_stoppage(world: World, machine: Machine, *, early: bool) -> Stoppage | None:
    """End ``machine``'s stoppage now (None if it has none): at its planned end, or ``early`` by a
    repair command.  The machine works again (or goes back to its pool), and whoever waited goes on."""
    stoppage = machine.stoppage
    if stoppage is None:
        return None
    world.env.cancel(stoppage.entry)
    now = world.env.now
    machine.repair(now, back_to_work=stoppage.cause == CYCLE_BLOCK or stoppage.working)
    lot: Lot | None = machine.current_lot
    if stoppage.cause == CYCLE_BLOCK:
        assert lot is not None
        lot.to(LotState.PROCESSING)
        world.recorder.machine_event("machine.repaired", machine, stoppage.stage, reason=stoppage.reason,
                                     cause=CYCLE_BLOCK)
        lot.blocked_s += now - stoppage.since if early else stoppage.duration
        lot.block_reason = stoppage.reason
        run_segment(world, lot)
    elif stoppage.working:
        world.recorder.machine_event("machine.repaired", machine, stoppage.stage, reason=stoppage.reason,
                                     cause=stoppage.cause)
        if lot is not None:
            resume_lot(world, lot, stoppage.reason)
        else:
            world.resume_utility(machine)
    else:
        world.recorder.machine_event("machine.repaired", machine, None, reason=stoppage.reason,
                                     cause=stoppage.cause)
        world.plant.pool(machine.location, machine.machine_type).release(machine)
    if stoppage.cause == FAILURE:
        world.next_failure(machine)
    return stoppage
