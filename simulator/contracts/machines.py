"""What every format's telemetry contract reads off the machine types: their signals, the values
those take, their anomalies, and which machines of the configuration are of which type."""

from __future__ import annotations

import machines
from machines.base import COMMON_SIGNALS, PLANT_WIDE_ANOMALIES, MachineState, MachineType
from simulator.config.schema import Config
from simulator.contracts.model import examples
from simulator.contracts.schema import NUMBER, Schema, described, enum, nullable


def machine_types(config: Config) -> dict[str, MachineType]:
    """The configuration's machine types (its names, e.g. ``fresa_cnc``) -> their signal models,
    in the order the locations name them."""
    return {mtype: machines.get(config.model_of(mtype))
            for location in config.locations.values() for mtype in location.machines}


def signals(model: MachineType) -> tuple[str, ...]:
    """Every signal a machine of ``model`` reports: its own, then the energy signals."""
    return (*model.signal_names, *COMMON_SIGNALS)


def signal_schema(model: MachineType, name: str) -> Schema:
    """A number, or one of the words of a word-valued signal (``MachineType.word_signals``)."""
    words = model.word_signals.get(name)
    if words:
        return enum(words, f"the machine's {name}")
    return described(NUMBER, f"signal {name} (units in its name)")


def anomaly_schema(model: MachineType) -> Schema:
    """The anomaly in force: one the type shows (its own or a plant-wide one), or null."""
    return nullable(enum([*model.anomalies, *PLANT_WIDE_ANOMALIES], "the anomaly in force (null: none)"))


def machine_ids(config: Config, machine_type: str | None = None) -> list[str]:
    """A few machine ids (of ``machine_type``), as examples."""
    return examples(slot.id for slot in config.machine_slots
                    if machine_type is None or slot.machine_type == machine_type)


MACHINE_STATES: tuple[str, ...] = tuple(state.value for state in MachineState)
