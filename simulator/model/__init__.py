"""The pure discrete-event plant model: no I/O, no clocks, no asyncio.

Everything that will happen is an entry of the event calendar (:mod:`simulator.model.events`) and
every entity's state is plain data, so the whole model can be written to a snapshot and restored
(:mod:`simulator.model.snapshot`).  Entry point: :class:`simulator.model.simulation.Simulation`.
"""
