"""Machine and station ids: the templates that name a plant's machines, and the checks on them.

A machine's id comes from the first template set of ``machine_types.<type>.machine_id_template``,
``locations.<name>.machine_id_template`` and the default :data:`DEFAULT_MACHINE_ID`
(``Italia-fresa_cnc-01``).  Placeholders: ``{location}``, ``{type}``, ``{code}``
(``machine_types.<type>.id_code``, default the type name) and ``{n}`` (the machine's number in its
location's pool, from 1; ``{n:02d}`` pads it).  Ids made from a template must be unique in the plant
and safe in topics and URLs (letters, digits, ``_ . -``).

A station id (the line or cell a machine stands in, which the spaceship format reports) comes from
``machine_types.<type>.station_id_template`` (default :data:`DEFAULT_STATION_ID`), with the same
placeholders and ``{machine_id}``; machines may share a station.

A machine's random streams are keyed by its default id whatever its template says, so renaming
machines changes their names and nothing else.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

DEFAULT_MACHINE_ID = "{location}-{type}-{n:02d}"
DEFAULT_STATION_ID = "{location}-{type}"
ID_PLACEHOLDERS = ("location", "type", "code", "n")
STATION_PLACEHOLDERS = (*ID_PLACEHOLDERS, "machine_id")
MAX_ID_LENGTH = 100
_ID = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_ID_LENGTH - 1}}}$")
_WIDE = re.compile(r"\d{3,}")  # a width or precision of three digits or more
_EXAMPLE = {"location": "Plant", "type": "cnc", "code": "CNC", "n": 1, "machine_id": "CNC-01"}


@dataclass(frozen=True, slots=True)
class MachineSlot:
    """One machine the config declares: its id, where it stands and what it is."""

    id: str
    location: str
    machine_type: str
    n: int  # its number in its location's pool of its type, from 1
    station: str
    stream_key: str  # what its random streams are derived from: its default id


def check_template(template: str, allowed: tuple[str, ...]) -> str:
    """``template`` if its placeholders are among ``allowed`` and it can be filled in; else
    ValueError saying what is wrong."""
    names = ", ".join(f"{{{a}}}" for a in allowed)
    try:
        parsed = [(field, spec) for _, field, spec, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise ValueError(f"{exc} (use placeholders such as {names})") from None
    for field, spec in parsed:
        if field not in allowed:
            raise ValueError(f"unknown placeholder {{{field}}}; allowed: {names}")
        if spec and _WIDE.search(spec):  # {n:999999999d} would build a string of a gigabyte
            raise ValueError(f"{{{field}:{spec}}}: a width below {MAX_ID_LENGTH} characters")
    try:
        template.format_map(_EXAMPLE)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot be filled in ({exc}); {{n}} is a number ({{n:02d}} pads it), the others "
                         f"are text") from None
    return template


def plant_slots(locations: Mapping[str, Mapping[str, int]], location_templates: Mapping[str, str | None],
                type_templates: Mapping[str, str | None], codes: Mapping[str, str | None],
                stations: Mapping[str, str | None]) -> tuple[list[MachineSlot], list[tuple[str, str]]]:
    """Every machine of ``locations`` (name -> machine type -> count), in config order, and the
    problems of its ids as (key path, message): ids a template makes that are not safe ids, or that
    two machines share."""
    slots: list[MachineSlot] = []
    problems: list[tuple[str, str]] = []
    owners: dict[str, tuple[MachineSlot, str | None]] = {}
    for slot, source in _slots(locations, location_templates, type_templates, codes, stations):
        slots.append(slot)
        if any(key == source for key, _ in problems):  # one problem per template
            continue
        where = f"{slot.location} {slot.machine_type} #{slot.n}"
        if source is not None and not _ID.match(slot.id):
            problems.append((source, f"gives {slot.id!r} to {where}: not a machine id (letters, digits, '_', '.' "
                                     f"and '-', starting with a letter or digit, at most {MAX_ID_LENGTH} "
                                     f"characters)"))
        earlier = owners.get(slot.id)
        if earlier is None:
            owners[slot.id] = (slot, source)
            continue
        other, other_source = earlier
        key = source or other_source or f"locations.{slot.location}.machine_id_template"
        if any(known == key for known, _ in problems):
            continue
        problems.append((key, f"gives the id {slot.id!r} to {other.location} {other.machine_type} #{other.n} and "
                              f"to {where}; machine ids must be unique (use {{n}}, and {{location}} when several "
                              f"locations have the type)"))
    return slots, problems


def _slots(locations: Mapping[str, Mapping[str, int]], location_templates: Mapping[str, str | None],
           type_templates: Mapping[str, str | None], codes: Mapping[str, str | None],
           stations: Mapping[str, str | None]) -> Iterator[tuple[MachineSlot, str | None]]:
    """Each machine with the key path of the template that named it (None: the default)."""
    for location, counts in locations.items():
        for mtype, count in counts.items():
            template, source = _template_of(location, mtype, location_templates, type_templates)
            station = stations.get(mtype) or DEFAULT_STATION_ID
            values: dict[str, str | int] = {"location": location, "type": mtype, "code": codes.get(mtype) or mtype}
            for n in range(1, count + 1):
                values["n"] = n
                default_id = DEFAULT_MACHINE_ID.format_map(values)
                machine_id = template.format_map(values) if source is not None else default_id
                station_id = station.format_map({**values, "machine_id": machine_id})
                yield MachineSlot(machine_id, location, mtype, n, station_id, default_id), source


def _template_of(location: str, mtype: str, location_templates: Mapping[str, str | None],
                 type_templates: Mapping[str, str | None]) -> tuple[str, str | None]:
    own = type_templates.get(mtype)
    if own is not None:
        return own, f"machine_types.{mtype}.machine_id_template"
    local = location_templates.get(location)
    if local is not None:
        return local, f"locations.{location}.machine_id_template"
    return DEFAULT_MACHINE_ID, None
