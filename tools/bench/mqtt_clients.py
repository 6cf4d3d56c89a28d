"""MQTT client choice by measurement (SPEC section 9): QoS 1 messages acknowledged per second on a local
Mosquitto, for gmqtt, paho-mqtt (threaded network loop) and aiomqtt.

Each library publishes N messages of SIZE bytes (MQTT 5 by default) to a private Mosquitto with at most
WINDOW messages unacknowledged; the figure is N / (time from the first publish to the last PUBACK). The
libraries run RUNS times each, interleaved; the median is reported with its ratio to the best library.

The broker runs with ``max_inflight_messages 0``: Mosquitto otherwise announces a receive maximum of 20
to MQTT 5 clients (its ``max_inflight_messages`` default), which would cap every client at 20 messages in
flight whatever WINDOW says. ``--broker-defaults`` measures that case too (window 19: gmqtt 0.8 uses at
most receive maximum - 1 packet ids).

    python tools/bench/mqtt_clients.py [--messages 50000] [--size 300] [--window 1000] [--runs 3]
                                       [--broker-defaults] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import logging
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import Broker, local_mosquitto, machine

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- mqtt-clients:begin -->", "<!-- mqtt-clients:end -->"
TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Case:
    broker: Broker
    messages: int
    payload: bytes
    window: int
    protocol: str  # "5" or "3.1.1"
    topic: str


# --- one run per library: returns seconds from the first publish to the last acknowledgement ------------
async def run_gmqtt(case: Case) -> float:
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv50, MQTTv311
    from gmqtt.storage import PersistentStorage

    window = asyncio.Semaphore(case.window)
    done = asyncio.Event()
    acked = 0

    class AckCounter(PersistentStorage):  # type: ignore[misc]
        """gmqtt stores each QoS 1 PUBLISH until its PUBACK removes it: that removal is the ack."""

        def remove_message_by_mid(self, mid: int) -> None:
            nonlocal acked
            if mid in self._messages:
                acked += 1
                window.release()
                if acked == case.messages:
                    done.set()
            super().remove_message_by_mid(mid)

    client = gmqtt.Client(f"bench-gmqtt-{time.monotonic_ns()}", persistent_storage=AckCounter())
    await client.connect(case.broker.host, case.broker.port,
                         version=MQTTv50 if case.protocol == "5" else MQTTv311)
    try:
        started = time.perf_counter()
        for _ in range(case.messages):
            await window.acquire()
            client.publish(case.topic, case.payload, qos=1)
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
        return time.perf_counter() - started
    finally:
        await client.disconnect()


def run_paho(case: Case) -> float:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    window = threading.Semaphore(case.window)
    done = threading.Event()
    connected = threading.Event()
    acked = 0

    def on_publish(client: paho.Client, userdata: object, mid: int, reason: object, properties: object) -> None:
        nonlocal acked
        acked += 1
        window.release()
        if acked == case.messages:
            done.set()

    v5 = case.protocol == "5"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{time.monotonic_ns()}",
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311, clean_session=None if v5 else True)
    client.max_inflight_messages_set(case.window)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.on_connect = lambda *_args: connected.set()
    client.connect(case.broker.host, case.broker.port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("paho did not connect")
        started = time.perf_counter()
        for _ in range(case.messages):
            window.acquire()
            client.publish(case.topic, case.payload, qos=1)
        if not done.wait(TIMEOUT_S):
            raise RuntimeError(f"paho: {acked} of {case.messages} acknowledged")
        return time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()


async def run_aiomqtt(case: Case) -> float:
    import aiomqtt

    # aiomqtt warns once per publish while more than 10 calls are pending: keep it off the console
    quiet = logging.getLogger("mqtt_clients.aiomqtt")
    quiet.setLevel(logging.ERROR)
    quiet.propagate = False
    window = asyncio.Semaphore(case.window)
    pending: set[asyncio.Task[None]] = set()
    protocol = aiomqtt.ProtocolVersion.V5 if case.protocol == "5" else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(case.broker.host, case.broker.port, identifier=f"bench-aiomqtt-{time.monotonic_ns()}",
                              protocol=protocol, max_inflight_messages=case.window, logger=quiet) as client:

        async def publish_one() -> None:
            try:
                await client.publish(case.topic, case.payload, qos=1, timeout=TIMEOUT_S)
            finally:
                window.release()

        started = time.perf_counter()
        for _ in range(case.messages):
            await window.acquire()
            task = asyncio.create_task(publish_one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return time.perf_counter() - started


# name (= top-level module) -> (distribution, runner)
async def run_factorysim(case: Case) -> float:
    """factorysim's own MQTT target (simulator.adapters.mqtt) on gmqtt: queue, in-flight window and
    resend bookkeeping on top of the raw client, payloads pre-serialised like the others."""
    from simulator.adapters.mqtt import MqttPublisher
    from simulator.config.mqtt import MqttTarget
    from simulator.formats import WireMessage
    from simulator.model.records import LotEvent

    class Preserialised:
        name = "preserialised"

        def __init__(self) -> None:
            self.message = [WireMessage(case.topic, b"", (), case.payload)]

        def encode(self, record: object) -> list[WireMessage]:
            return self.message

    target = MqttTarget(name="bench", host=case.broker.host, port=case.broker.port, protocol=case.protocol,
                        qos=1, max_in_flight=case.window, availability_topic=None,
                        queue={"capacity": case.messages + 1})
    publisher = MqttPublisher(target, Preserialised())
    task = asyncio.get_running_loop().create_task(publisher.run())
    await publisher.session.wait_ready()
    record = LotEvent(1, 0.0, event_type="lot.received", location="bench")
    started = time.perf_counter()
    for _ in range(case.messages):
        publisher.offer(record)
    publisher.finish()
    await asyncio.wait_for(task, TIMEOUT_S)
    return time.perf_counter() - started


LIBRARIES: dict[str, tuple[str, Callable[[Case], float]]] = {
    "gmqtt": ("gmqtt", lambda case: asyncio.run(run_gmqtt(case))),
    "paho": ("paho-mqtt", run_paho),
    "aiomqtt": ("aiomqtt", lambda case: asyncio.run(run_aiomqtt(case))),
    "factorysim": ("factorysim", lambda case: asyncio.run(run_factorysim(case))),
}
LABELS = {"gmqtt": "gmqtt {v} (asyncio)", "paho": "paho-mqtt {v} (threaded loop, on_publish)",
          "aiomqtt": "aiomqtt {v} (one task per publish)",
          "factorysim": "factorysim MQTT target {v} (on gmqtt: queue, window, resend bookkeeping)"}


def measure_broker(config: list[str], libraries: list[str], messages: int, size: int, window: int,
                   runs: int, protocol: str) -> dict[str, list[float]]:
    """msg/s of every run, by library (runs interleaved: lib A, lib B, ..., lib A, ...)."""
    rates: dict[str, list[float]] = {name: [] for name in libraries}
    payload = (b'{"machine": "cnc-01", "value": ' + b"7" * size)[:size]
    with local_mosquitto(config) as broker:
        for run in range(runs):
            for name in libraries:
                case = Case(broker, messages, payload, window, protocol, f"bench/{name}/{run}")
                seconds = LIBRARIES[name][1](case)
                rates[name].append(messages / seconds)
                print(f"  run {run + 1}/{runs} {name:8s} {messages / seconds:10,.0f} msg/s", file=sys.stderr)
    return rates


def table(rates: dict[str, list[float]]) -> list[str]:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    best = max(medians.values())
    rows = ["| client | QoS 1 msg/s acknowledged (median) | ratio to the best | runs (msg/s) |",
            "|---|---|---|---|"]
    for name in sorted(medians, key=medians.__getitem__, reverse=True):
        label = LABELS[name].format(v=version(LIBRARIES[name][0]))
        runs = " · ".join(f"{value:,.0f}" for value in rates[name])
        rows.append(f"| {label} | {medians[name]:,.0f} | {medians[name] / best:.2f} | {runs} |")
    return rows


def measure(messages: int = 50_000, size: int = 300, window: int = 1000, runs: int = 3, protocol: str = "5",
            libraries: list[str] | None = None, broker_defaults: bool = False) -> list[str]:
    """Run the benchmark; returns the BENCHMARKS.md block (between the markers, markers included)."""
    libraries = libraries or list(LIBRARIES)
    missing = [name for name in libraries
               if importlib.util.find_spec("simulator" if name == "factorysim" else name) is None]
    for name in missing:
        print(f"MQTT clients: {name} is not installed (pip install {LIBRARIES[name][0]}), left out", file=sys.stderr)
    libraries = [name for name in libraries if name not in missing]
    if not libraries:
        raise SystemExit("no MQTT client library installed: pip install gmqtt paho-mqtt aiomqtt")
    print(f"MQTT clients: {messages:,} QoS 1 messages of {size} B, window {window}, MQTT {protocol}",
          file=sys.stderr)
    load = os.getloadavg()[0]
    main_rates = measure_broker(["max_inflight_messages 0"], libraries, messages, size, window, runs, protocol)
    with local_mosquitto() as broker:
        mosquitto = broker.version
    medians = {name: statistics.median(values) for name, values in main_rates.items()}
    fastest = max(medians, key=medians.__getitem__)
    lines = [BEGIN,
             f"Measured {dt.date.today()} on {machine()} (load average {load:.1f} at the start);",
             f"Mosquitto {mosquitto} (local, persistence off, `max_inflight_messages 0`); {messages:,} QoS 1 "
             f"messages of {size} bytes, MQTT {protocol}, at most {window:,} unacknowledged; median of {runs} "
             "interleaved runs.", "", *table(main_rates), "",
             f"Fastest: **{fastest}** ({medians[fastest]:,.0f} msg/s; the MQTT bridge bar is ≥ 20,000 msg/s)."
             + (f" Not installed, left out: {', '.join(missing)}." if missing else "")]
    if broker_defaults:
        small = min(window, 19)
        default_rates = measure_broker([], libraries, messages, size, small, runs, protocol)
        lines += ["", f"With Mosquitto's defaults (receive maximum 20 announced to MQTT 5 clients), window {small}:",
                  "", *table(default_rates)]
    lines.append(END)
    return lines


def write_section(block: list[str], path: Path = ROOT / "BENCHMARKS.md") -> None:
    text = path.read_text(encoding="utf-8")
    joined = "\n".join(block)
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: joined, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## MQTT client choice\n\n" + joined + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=300, help="payload bytes")
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged messages at most")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help="comma-separated: gmqtt,paho,aiomqtt,factorysim")
    parser.add_argument("--broker-defaults", action="store_true",
                        help="also measure against Mosquitto's default receive maximum (20)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    libraries = [name.strip() for name in args.libraries.split(",") if name.strip()]
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        parser.error(f"unknown libraries {unknown}; known: {', '.join(LIBRARIES)}")
    block = measure(args.messages, args.size, args.window, args.runs, args.protocol, libraries,
                    args.broker_defaults)
    print("\n".join(line for line in block if not line.startswith("<!--")))
    if not args.no_write:
        write_section(block)


if __name__ == "__main__":
    main()
