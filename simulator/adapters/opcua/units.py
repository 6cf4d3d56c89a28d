"""Engineering units of the machines' signals, read off their names' suffixes (``spindle_temp_c``,
``power_kw``, ``flow_l_min`` …), as UN/ECE Recommendation 20 codes where one exists.

An OPC UA ``EUInformation`` carries the code as its ``UnitId`` (the code's characters as the bytes
of one integer, OPC UA Part 8) in the namespace ``http://www.opcfoundation.org/UA/units/un/cefact``;
a unit without a code (strokes per minute, parts per minute …) has ``UnitId`` -1 and only its
display name.  No OPC UA import here: the table is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

CEFACT_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


@dataclass(frozen=True, slots=True)
class Unit:
    code: str | None  # the UN/ECE Rec 20 common code; None when it has none
    symbol: str
    description: str

    @property
    def unit_id(self) -> int:
        """The OPC UA ``UnitId`` of the code (-1: none)."""
        if self.code is None:
            return -1
        value = 0
        for char in self.code:
            value = (value << 8) | ord(char)
        return value


# longest suffix first: "_mm_min" before "_min", "_kwh" before "_h"
_SUFFIXES: tuple[tuple[str, Unit], ...] = (
    ("_units_h", Unit(None, "units/h", "units per hour")),
    ("_mm_min", Unit("H81", "mm/min", "millimetre per minute")),
    ("_mm_rev", Unit(None, "mm/rev", "millimetre per revolution")),
    ("_ml_min", Unit("41", "ml/min", "millilitre per minute")),
    ("_m3_min", Unit("G53", "m³/min", "cubic metre per minute")),
    ("_l_min", Unit("L2", "l/min", "litre per minute")),
    ("_m_min", Unit("2X", "m/min", "metre per minute")),
    ("_mm_s", Unit("C16", "mm/s", "millimetre per second")),
    ("_per_min", Unit(None, "1/min", "per minute")),
    ("_kwh", Unit("KWH", "kWh", "kilowatt hour")),
    ("_kw", Unit("KWT", "kW", "kilowatt")),
    ("_kn", Unit("B47", "kN", "kilonewton")),
    ("_nm", Unit("NU", "N·m", "newton metre")),
    ("_rpm", Unit("RPM", "r/min", "revolutions per minute")),
    ("_spm", Unit(None, "strokes/min", "strokes per minute")),
    ("_hz", Unit("HTZ", "Hz", "hertz")),
    ("_bar", Unit("BAR", "bar", "bar")),
    ("_pct", Unit("P1", "%", "percent")),
    ("_um", Unit("4H", "µm", "micrometre")),
    ("_mm", Unit("MMT", "mm", "millimetre")),
    ("_kg", Unit("KGM", "kg", "kilogram")),
    ("_g", Unit("GRM", "g", "gram")),
    ("_db", Unit("2N", "dB", "decibel")),
    ("_lux", Unit("LUX", "lx", "lux")),
    ("_c", Unit("CEL", "°C", "degree Celsius")),
    ("_v", Unit("VLT", "V", "volt")),
    ("_a", Unit("AMP", "A", "ampere")),
)
DIMENSIONLESS = Unit("C62", "", "one")
_DIMENSIONLESS_NAMES = frozenset({"power_factor", "cop"})


def unit_of(signal: str) -> Unit | None:
    """The unit of ``signal`` by its name; None for a count, a phase name or anything without one."""
    if signal in _DIMENSIONLESS_NAMES:
        return DIMENSIONLESS
    for suffix, unit in _SUFFIXES:
        if signal.endswith(suffix):
            return unit
    return None


# the machine's own quantities in the address space (not signals)
SECONDS = Unit("SEC", "s", "second")
PERCENT = Unit("P1", "%", "percent")
