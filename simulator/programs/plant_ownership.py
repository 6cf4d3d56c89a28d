"""Plants owned by this instance, taken over and handed over as the instances' group rebalances.

With ``kafka.scale_out`` the instances share the plants: each plant is owned by the instance
that is assigned its partition of the plant inbox (:mod:`simulator.adapters.plant_inbox`,
:mod:`simulator.adapters.plant_assignor`), and runs there in a run of its own
(:class:`~simulator.programs.plant_run.PlantRun`).

- **Taken over** (partition assigned): the partition is held (no order is read from it); the
  plant's run is found in the journal and restored from its newest snapshot, exactly as a
  restart after a crash does, or a new run starts; its loops start; once it is live and warmed
  up, its orders are read.
- **Handed over** (partition revoked, in the rebalance listener, so before the group moves on):
  no command is taken; the driver stops at a step boundary after the inputs submitted so far,
  takes a last snapshot there, its output is delivered, its checkpoints and the snapshot are
  written, and the partition's done offsets are committed.  The next owner starts from that
  snapshot and replays nothing.  Orders submitted to it after the snapshot was asked for do not
  apply here: their offsets are not done, and the next owner reads them again (those already in
  the journal it has from the journal, and skips).
- **Crash** of an owner: the group gives its partitions to others after the session timeout;
  they recover the plants from the last snapshot plus the journal after it.  The time lease
  (:mod:`simulator.runtime.run_journal`) bounds what the dead owner can have published, so no
  event id is published twice with different contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from simulator.adapters.order_intake import OrderIntake
from simulator.asyncio_waits import wait_for
from simulator.programs.plant_run import PlantRun

if TYPE_CHECKING:
    from simulator.programs.service import Service

log = logging.getLogger(__name__)

HAND_OVER_SHARE = 0.8  # of the rebalance timeout: what a hand-over may take


class PlantOwnership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: Service, intake: OrderIntake, partitions: dict[str, int],
                 options: dict[str, Any], rebalance_timeout_s: float) -> None:
        self.service = service
        self.intake = intake
        self.plants = {index: plant for plant, index in partitions.items()}
        self.options = options
        self.budget_s = rebalance_timeout_s * HAND_OVER_SHARE
        self.taking: dict[str, asyncio.Task[None]] = {}  # plant -> its take-over under way
        self.rebalances = 0
        self.taken_over = 0
        self.handed_over = 0
        self.last_rebalance: float | None = None  # time.time() of the latest assignment
        self.take_over_s: dict[str, float] = {}  # plant -> how long its latest take-over took (to live)
        self.hand_over_s: dict[str, float] = {}  # plant -> how long its latest hand-over took

    # -- the rebalance listener --------------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        plants = [self.plants[tp.partition] for tp in revoked if tp.partition in self.plants]
        if plants:
            log.info("rebalance: handing over %s", ", ".join(plants))
        await asyncio.gather(*(self.hand_over(plant) for plant in plants))
        await self.intake.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.rebalances += 1
        self.last_rebalance = time.time()
        for tp in assigned:
            if tp.partition in self.plants:
                self.intake.hold(tp)  # before the intake learns of it: nothing is read until the plant is ready
        await self.intake.on_partitions_assigned(assigned)
        plants = sorted(self.plants[tp.partition] for tp in assigned if tp.partition in self.plants)
        log.info("rebalance: this instance owns %s", ", ".join(plants) or "no plant")
        for tp in assigned:
            plant = self.plants.get(tp.partition)
            if plant is not None and plant not in self.taking and plant not in self.service.run_of:
                task = asyncio.ensure_future(self._take_over_watched(plant, tp))
                self.taking[plant] = task
                task.add_done_callback(functools.partial(self._taken, plant))

    def _taken(self, plant: str, task: asyncio.Task[None]) -> None:
        if self.taking.get(plant) is task:
            del self.taking[plant]

    @property
    def owned(self) -> list[str]:
        """The plants assigned to this instance (running, or being taken over)."""
        return sorted({*self.taking, *self.service.run_of})

    # -- taking a plant over ----------------------------------------------------------------------------
    async def _take_over_watched(self, plant: str, tp: TopicPartition) -> None:
        await self.service.supervisor.watch(f"take-over-{plant}", self.take_over(plant, tp), until_stopped=False)

    async def take_over(self, plant: str, tp: TopicPartition) -> None:
        service = self.service
        started = time.monotonic()
        run = service.new_run([plant], fresh_before_ms=service.started_ms, keep_clock=True)
        await run.find(self.options)
        run.start_at_go_live()
        service.start_run(run)
        history = run.history
        if history is not None:
            self.intake.add_journaled(history.sources)
        self.taken_over += 1
        if not await run.ready_for_inputs(service.stop_requested):
            return
        self.intake.release(tp)
        self.take_over_s[plant] = time.monotonic() - started
        log.info("plant %s taken over in %.1f s (%s)", plant, self.take_over_s[plant],
                 "new run" if history is None else f"run {run.run_id} continued")

    # -- handing a plant over ---------------------------------------------------------------------------
    async def hand_over(self, plant: str) -> None:
        taking = self.taking.pop(plant, None)
        if taking is not None and not taking.done():
            taking.cancel()
            with contextlib.suppress(BaseException):
                await taking
        run = self.service.run_of.get(plant)
        if run is None:
            return
        started = time.monotonic()
        try:
            await wait_for(self._stop(run), self.budget_s)
        except TimeoutError:
            log.error("plant %s: the hand-over took more than %.0f s; the next owner recovers it from the journal",
                      plant, self.budget_s)
        finally:
            self.service.remove_run(run)
        self.handed_over += 1
        self.hand_over_s[plant] = time.monotonic() - started
        log.info("plant %s handed over in %.1f s", plant, self.hand_over_s[plant])

    async def _stop(self, run: PlantRun) -> None:
        """Stop ``run`` after its inputs so far, with its last snapshot written (see the module docstring)."""
        service = self.service
        run.stopped = True
        service.inputs_router.remove(run.plants)
        driver_task = run.tasks[0] if run.tasks else None
        final = await run.take_last_snapshot(driver_task, self.budget_s / 3, service.supervisor.failure is not None)
        run.driver.stop()
        if driver_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(driver_task)
        for task in run.tasks[1:]:
            task.cancel()
        if final is not None and run.snapshotter is not None:
            await run.snapshotter.write(*final)  # once the output it covers is in Kafka
        if service.journal is not None and run.run_journal is not None:
            run.run_journal.write_checkpoints()
            await service.journal.drain()
