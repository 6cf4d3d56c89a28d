"""The pure discrete-event plant model (SimPy): no I/O, no clocks, no asyncio.

Entry point: :class:`simulator.model.simulation.Simulation`.
"""
