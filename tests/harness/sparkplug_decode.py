"""An independent Sparkplug B decoder for the tests: Google's protobuf runtime with classes that
grpcio-tools generates from ``sparkplug_b_subset.proto`` (compiled once per process into a
temporary directory), plus what a Sparkplug host does with them: metric names from the births'
aliases, values by datatype."""

from __future__ import annotations

import functools
import importlib.util
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

PROTO = Path(__file__).with_name("sparkplug_b_subset.proto")
INT64, UINT64, DOUBLE, BOOLEAN, STRING = 4, 8, 10, 11, 12


@functools.cache
def _module() -> ModuleType:
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="sparkplug-pb2-"))
    code = protoc.main(["protoc", f"--proto_path={PROTO.parent}", f"--python_out={out}", PROTO.name])
    if code != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {code})")
    path = out / (PROTO.stem + "_pb2.py")
    spec = importlib.util.spec_from_file_location("sparkplug_b_subset_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Metric:
    name: str | None
    alias: int | None
    timestamp: int | None
    datatype: int | None
    value: Any  # None when is_null


@dataclass
class Payload:
    timestamp: int | None
    seq: int | None
    metrics: list[Metric] = field(default_factory=list)

    def by_name(self) -> dict[str, Any]:
        return {m.name: m.value for m in self.metrics if m.name is not None}


def decode(data: bytes) -> Payload:
    """A payload as the protobuf runtime reads it (names as sent: births have them, data not)."""
    message = _module().Payload.FromString(data)
    metrics = []
    for m in message.metrics:
        which = m.WhichOneof("value")
        value = None if m.is_null or which is None else getattr(m, which)
        if which == "long_value" and m.datatype == INT64 and value >= 1 << 63:
            value -= 1 << 64
        metrics.append(Metric(m.name if m.HasField("name") else None, m.alias if m.HasField("alias") else None,
                              m.timestamp if m.HasField("timestamp") else None,
                              m.datatype if m.HasField("datatype") else None, value))
    return Payload(message.timestamp if message.HasField("timestamp") else None,
                   message.seq if message.HasField("seq") else None, metrics)


def encode(metrics: list[tuple[str | int, int, Any]], timestamp: int = 0) -> bytes:
    """A command payload (NCMD, DCMD) as a host writes it: (name or alias, datatype, value) per metric."""
    message = _module().Payload(timestamp=timestamp)
    for name, datatype, value in metrics:
        m = message.metrics.add(alias=name, datatype=datatype) if isinstance(name, int) else \
            message.metrics.add(name=name, datatype=datatype)
        if datatype == BOOLEAN:
            m.boolean_value = value
        elif datatype == STRING:
            m.string_value = value
        elif datatype == DOUBLE:
            m.double_value = value
        else:
            m.long_value = value
    return bytes(message.SerializeToString())


class Host:
    """What a Sparkplug host application knows of one edge node: the aliases of each birth, and
    every metric's latest value by name (births and data applied in order)."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}  # alias -> name, from the births
        self.values: dict[str, dict[str, Any]] = {}  # device ("" for the node) -> name -> value

    def apply(self, kind: str, device: str, payload: Payload) -> dict[str, Any]:
        """The metrics of one message by name (resolving aliases), applied to the host's view."""
        if kind in ("NBIRTH", "DBIRTH"):
            self.values[device] = {}
            for m in payload.metrics:
                assert m.name is not None and m.alias is not None
                self.names[m.alias] = m.name
        named = {}
        for m in payload.metrics:
            name = m.name if m.name is not None else self.names[m.alias]  # type: ignore[index]
            named[name] = m.value
        self.values.setdefault(device, {}).update(named)
        return named
