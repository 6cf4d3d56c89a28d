"""Sparkplug B DDATA encoding: payloads per second of the candidate encoders (BENCHMARKS.md,
"Sparkplug library choice").

One DDATA payload as factorysim sends it for a machine sample: ten metrics by alias, each with its
timestamp (eight Double signals, an Int64 counter, a String state), the payload's timestamp and
``seq``.  Candidates that are not installed are skipped; install them in a scratch environment to
measure them (``pip install pysparkplug pure-protobuf``; ``mqtt-spb-wrapper`` pins protobuf 3.20,
so it needs an environment of its own):

- ``factorysim``: :mod:`simulator.formats.sparkplug_wire` (hand-written protobuf);
- ``protobuf (upb)``: Google's protobuf runtime with the classes generated from Tahu's
  ``sparkplug_b.proto`` (those pysparkplug ships, as ``grpcio-tools`` generates them);
- ``pysparkplug``: its ``DData`` / ``Metric`` objects and ``encode()``;
- ``pure-protobuf``: the same message declared as annotated dataclasses;
- ``mqtt-spb-wrapper``: Tahu's Python helpers (``addMetric``) it bundles.

Run: ``python tools/bench/sparkplug_encoders.py`` (with the repository on ``PYTHONPATH``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

TS = 1_750_000_000_000
DOUBLES = [(10 + i, 20.0 + i * 1.37) for i in range(8)]
COUNTER = (18, 1234)
STATE = (19, "running")
Encoder = Callable[[int], bytes]


def ours() -> Encoder:
    from simulator.formats import sparkplug_wire as w

    aliases = {a: w.alias_field(a) for a, _ in [*DOUBLES, COUNTER, STATE]}

    def encode(seq: int) -> bytes:
        ts = w.timestamp_field(TS)
        metrics = [w.data_metric(aliases[a], ts, w.DOUBLE, v) for a, v in DOUBLES]
        metrics.append(w.data_metric(aliases[COUNTER[0]], ts, w.INT64, COUNTER[1]))
        metrics.append(w.data_metric(aliases[STATE[0]], ts, w.STRING, STATE[1]))
        return w.payload(TS, metrics, seq)
    return encode


def upb() -> Encoder:
    from pysparkplug._protobuf import Payload  # generated from Tahu's sparkplug_b.proto

    def encode(seq: int) -> bytes:
        p = Payload(timestamp=TS, seq=seq)
        for a, v in DOUBLES:
            p.metrics.add(alias=a, timestamp=TS, double_value=v)
        p.metrics.add(alias=COUNTER[0], timestamp=TS, long_value=COUNTER[1])
        p.metrics.add(alias=STATE[0], timestamp=TS, string_value=STATE[1])
        return bytes(p.SerializeToString())
    return encode


def pysparkplug_objects() -> Encoder:
    import pysparkplug as spb

    def encode(seq: int) -> bytes:
        metrics = [spb.Metric(timestamp=TS, name=None, alias=a, datatype=spb.DataType.DOUBLE, value=v)
                   for a, v in DOUBLES]
        metrics.append(spb.Metric(timestamp=TS, name=None, alias=COUNTER[0], datatype=spb.DataType.INT64,
                                  value=COUNTER[1]))
        metrics.append(spb.Metric(timestamp=TS, name=None, alias=STATE[0], datatype=spb.DataType.STRING,
                                  value=STATE[1]))
        return bytes(spb.DData(timestamp=TS, seq=seq, metrics=tuple(metrics)).encode())
    return encode


def pure_protobuf() -> Encoder:
    from pure_protobuf.annotations import double, uint

    metric_class, payload_class = _pure_protobuf_messages()

    def encode(seq: int) -> bytes:
        metrics = [metric_class(alias=uint(a), timestamp=uint(TS), double_value=double(v)) for a, v in DOUBLES]
        metrics.append(metric_class(alias=uint(COUNTER[0]), timestamp=uint(TS), long_value=uint(COUNTER[1])))
        metrics.append(metric_class(alias=uint(STATE[0]), timestamp=uint(TS), string_value=STATE[1]))
        return bytes(payload_class(timestamp=uint(TS), metrics=metrics, seq=uint(seq)))
    return encode


def _pure_protobuf_messages() -> tuple[Any, Any]:
    """The two messages as pure-protobuf dataclasses (its annotations are evaluated in this
    module's globals, hence the imports made global here)."""
    from pure_protobuf import annotations, message

    globals().update(Field=annotations.Field, uint=annotations.uint, double=annotations.double,
                     BaseMessage=message.BaseMessage)

    @dataclass
    class Metric(message.BaseMessage):
        alias: Annotated[uint | None, Field(2)] = None  # noqa: F821
        timestamp: Annotated[uint | None, Field(3)] = None  # noqa: F821
        long_value: Annotated[uint | None, Field(11)] = None  # noqa: F821
        double_value: Annotated[double | None, Field(13)] = None  # noqa: F821
        string_value: Annotated[str | None, Field(15)] = None  # noqa: F821

    globals()["Metric"] = Metric

    @dataclass
    class Payload(message.BaseMessage):
        timestamp: Annotated[uint | None, Field(1)] = None  # noqa: F821
        metrics: Annotated[list[Metric], Field(2)] = field(default_factory=list)  # noqa: F821
        seq: Annotated[uint | None, Field(3)] = None  # noqa: F821

    return Metric, Payload


def spb_wrapper() -> Encoder:
    from mqtt_spb_wrapper.spb_protobuf import sparkplug_b as tahu

    def encode(seq: int) -> bytes:
        p = tahu.getDdataPayload()
        p.timestamp = TS
        p.seq = seq
        for a, v in DOUBLES:
            tahu.addMetric(p, None, a, tahu.MetricDataType.Double, v, TS)
        tahu.addMetric(p, None, COUNTER[0], tahu.MetricDataType.Int64, COUNTER[1], TS)
        tahu.addMetric(p, None, STATE[0], tahu.MetricDataType.String, STATE[1], TS)
        return bytes(p.SerializeToString())
    return encode


CANDIDATES: dict[str, Callable[[], Encoder]] = {
    "factorysim (hand-written)": ours, "protobuf (upb, generated)": upb, "pysparkplug": pysparkplug_objects,
    "pure-protobuf": pure_protobuf, "mqtt-spb-wrapper": spb_wrapper}


def rate(encode: Encoder, seconds: float = 1.0) -> float:
    """Payloads per second, the best of three runs of ``seconds``."""
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for seq in range(256):
                encode(seq)
            n += 256
        best = max(best, n / elapsed)
    return best


def measure() -> dict[str, Any]:
    """Per installed candidate: payloads/s, the payload's size, and whether its bytes are factorysim's."""
    reference = ours()(7)
    results: dict[str, Any] = {}
    for name, make in CANDIDATES.items():
        try:
            encode = make()
        except ImportError:
            continue
        results[name] = {"payloads_s": rate(encode), "bytes": len(encode(7)), "same_bytes": encode(7) == reference}
    return results


if __name__ == "__main__":
    for name, r in measure().items():
        same = "the same bytes" if r["same_bytes"] else "other bytes"
        print(f"{name:28} {r['payloads_s']:>12,.0f} payloads/s  {r['bytes']} B, {same}")
