"""Machine types: how each kind of machine behaves and what telemetry values it shows.

``get(name)`` returns the (stateless, shareable) signal model of a machine type by its kind or
one of its aliases (the CoffeeMek names ``fresa_cnc``, ``tornio``, ``assemblaggio``, ``test`` …).
"""

from __future__ import annotations

from machines.assembly import Assembly
from machines.base import COMMON_SIGNALS, PLANT_WIDE_ANOMALIES, MachineState, MachineType, SignalContext, Signals
from machines.cnc import Cnc
from machines.compressor import Compressor
from machines.conveyor import Conveyor
from machines.hvac import Hvac
from machines.hydraulic_pump import HydraulicPump
from machines.injection_moulding import InjectionMoulding
from machines.inspection import Inspection
from machines.lathe import Lathe
from machines.milling import Milling
from machines.painting import Painting
from machines.press import Press
from machines.printer_3d import Printer3D
from machines.robot_arm import RobotArm
from machines.test_rig import TestRig
from machines.welding import Welding

_TYPES: dict[str, MachineType] = {t.kind: t for t in (
    Milling(), Lathe(), Assembly(), TestRig(), Cnc(), Printer3D(), Welding(), Painting(), Compressor(),
    Hvac(), Conveyor(), HydraulicPump(), InjectionMoulding(), RobotArm(), Press(), Inspection(),
)}
KINDS: tuple[str, ...] = tuple(_TYPES)
ALIASES: dict[str, str] = {
    "fresa_cnc": "milling",
    "tornio": "lathe",
    "assemblaggio": "assembly",
    "linea_assemblaggio": "assembly",
    "test": "test_rig",
    "linea_test": "test_rig",
    "testing_rig": "test_rig",
    "motor": "conveyor",
    "pump": "hydraulic_pump",
    "welder": "welding",
    "robot-arm": "robot_arm",
}
_NAMES = frozenset(KINDS) | frozenset(ALIASES)


def names() -> frozenset[str]:
    """Every accepted machine type name: kinds and aliases."""
    return _NAMES


def get(name: str) -> MachineType:
    kind = ALIASES.get(name, name)
    try:
        return _TYPES[kind]
    except KeyError:
        raise KeyError(f"unknown machine type {name!r}; known: {', '.join(sorted(_NAMES))}") from None


def anomaly_names() -> frozenset[str]:
    """Every anomaly some machine type shows: the types' own and the plant-wide ones."""
    return frozenset(PLANT_WIDE_ANOMALIES).union(*(t.anomalies for t in _TYPES.values()))


__all__ = [
    "ALIASES", "COMMON_SIGNALS", "KINDS", "PLANT_WIDE_ANOMALIES", "MachineState", "MachineType", "SignalContext",
    "Signals", "anomaly_names", "get", "names",
]
