"""Run every benchmark and rewrite the results table and the MQTT client section in BENCHMARKS.md
(`make bench`).  A benchmark that fails is reported in its row; the others still run.

Only a few at a time (printed, BENCHMARKS.md left alone): `python tools/bench/run_all.py engine lot_sender`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
Row = tuple[str, str, str, str, str, str]


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def engine_rows() -> list[Row]:
    import engine

    r = engine.measure()
    rows: list[Row] = [("engine: lot-stage passes/s, reference route, exponential times, telemetry off",
                        f"{r['factorysim_passes_s']:,.0f}", f"bare SimPy {r['bare_simpy_passes_s']:,.0f}",
                        f"{r['ratio']:.2f}", "≥ 0.5", _met(r["ratio"] >= 0.5))]
    if "ciw_passes_s" in r:
        rows.append(("engine: the same network vs Ciw", f"{r['factorysim_passes_s']:,.0f}",
                     f"Ciw {r['ciw_passes_s']:,.0f}", f"{r['ratio_ciw']:.2f}", "(comparison)", "—"))
    return rows


def telemetry_rows() -> list[Row]:
    import telemetry_pipeline

    r = telemetry_pipeline.measure()
    return [("telemetry pipeline: records/s delivered to Kafka (outbox → coffeemek → publisher), embedded broker",
             f"{r['factorysim_records_s']:,.0f}", f"raw aiokafka {r['raw_aiokafka_msgs_s']:,.0f} msg/s "
             f"({r['payload_bytes_mean']:,.0f} B)", f"{r['ratio']:.2f} (medians {r['ratio_median']:.2f})", "≥ 0.8",
             _met(r["ratio"] >= 0.8))]


def mqtt_rows() -> list[Row]:
    import mqtt_bridge

    r = mqtt_bridge.measure()
    return [("MQTT bridge: QoS 1 msg/s acknowledged, Kafka → bridge → coffeemek target on Mosquitto (end to end)",
             f"{r['bridge_msgs_s']:,.0f}", f"raw gmqtt {r['raw_gmqtt_msgs_s']:,.0f} ({r['payload_bytes']} B)",
             f"{r['ratio']:.2f}", "≥ 20,000 msg/s", _met(r["bridge_msgs_s"] >= 20_000))]


def intake_rows() -> list[Row]:
    import order_intake

    r = order_intake.measure()
    return [("order intake: lots/s consumed, validated, journaled, admitted and committed, embedded broker",
             f"{r['factorysim_lots_s']:,.0f}", f"raw consumer {r['raw_consumer_lots_s']:,.0f}",
             f"{r['ratio']:.2f}", "≥ 20,000 lots/s", _met(r["factorysim_lots_s"] >= 20_000))]


def lot_sender_rows() -> list[Row]:
    import lot_sender

    r = lot_sender.measure()
    return [("lot-sender: lots/s produced and acknowledged, embedded broker",
             f"{r['lot_sender_lots_s']:,.0f}", f"raw aiokafka send() {r['raw_aiokafka_lots_s']:,.0f}",
             f"{r['ratio']:.2f}", "≥ 50,000 lots/s", _met(r["lot_sender_lots_s"] >= 50_000 and not r["failed"]))]


def paced_rows() -> list[Row]:
    import paced_lag

    r = paced_lag.measure()
    return [(f"paced mode: emission lag p50 / p99, {r['machines']:,.0f} machines sampling at 1 Hz, speed 1, to Kafka",
             f"{r['lag_p50_ms']:.1f} / {r['lag_p99_ms']:.1f} ms",
             f"event-loop timers {r['baseline_p50_ms']:.1f} / {r['baseline_p99_ms']:.1f} ms",
             f"{r['ratio_p99']:.2f} (p99)", "p99 ≤ 50 ms", _met(r["lag_p99_ms"] <= 50.0))]


def plant_size_rows() -> list[Row]:
    import plant_size

    rows: list[Row] = []
    for r in plant_size.measure():
        at_goal = r["machines"] == plant_size.GOAL_MACHINES
        rows.append((f"paced mode by plant size: {r['machines']:,.0f} machines sampling at 1 Hz, speed 1, to Kafka: "
                     f"emission lag p50 / p99, samples/s emitted of {r['expected_s']:,.0f}, CPU share of the process "
                     f"({r['cpu_us_per_record']:,.0f} µs per record)",
                     f"{r['lag_p50_ms']:,.1f} / {r['lag_p99_ms']:,.1f} ms; {r['samples_s']:,.0f}/s; "
                     f"{r['cpu_share']:.0%}",
                     f"event-loop timers p99 {r['baseline_p99_ms']:,.1f} ms; CPU {r['baseline_cpu_share']:.0%}",
                     f"{r['ratio_p99']:.2f} (p99)", "p99 ≤ 50 ms" if at_goal else "(scaling)",
                     _met(r["lag_p99_ms"] <= plant_size.LAG_GOAL_MS) if at_goal else "—"))
    return rows


def memory_rows() -> list[Row]:
    import memory

    r = memory.measure()
    return [(f"memory: RSS with {r['lots']:,.0f} queued lots",
             f"{r['factorysim_rss_mb']:,.0f} MB ({r['bytes_per_lot']:,.0f} B/lot)",
             f"bare SimPy {r['bare_simpy_rss_mb']:,.0f} MB ({r['bare_bytes_per_lot']:,.0f} B/lot)",
             f"{r['ratio']:.2f} (per lot)", "≤ 300 MB", _met(r["factorysim_rss_mb"] <= 300))]


def recovery_rows() -> list[Row]:
    import asyncio

    import recovery

    rows: list[Row] = []
    for lots, with_snapshot in ((10_000, False), (100_000, False), (10_000, True), (100_000, True),
                                (1_000_000, True)):
        r = asyncio.run(recovery.measure_one(lots, with_snapshot))
        how = "from its newest snapshot (nothing after it)" if with_snapshot else "from the journal (no snapshot)"
        rows.append((f"restart to live: a run of {lots:,} admitted lots continued {how}",
                     f"{r['live_s']:.1f} s", f"simulate the same lots {r['simulate_s']:.1f} s",
                     f"{r['live_s'] / r['simulate_s']:.2f}", "≤ 10 s", _met(r["live_s"] <= 10.0)))
    return rows


def snapshot_rows() -> list[Row]:
    import snapshot_size

    return [(f"snapshot of the reference plant with {r['in_progress']:,} lots in progress: compressed bytes per lot "
             f"(whole: {r['compressed_bytes'] / 1e6:.2f} MB; take {r['take_s']:.2f} s, restore {r['restore_s']:.2f} s)",
             f"{r['compressed_per_lot']:,.0f} B", f"journal entry {r['journal_per_lot']:,.0f} B",
             f"{r['compressed_per_lot'] / r['journal_per_lot']:.2f}", "(size)", "—")
            for r in snapshot_size.measure()]


def scale_out_rows() -> list[Row]:
    import scale_out

    r = scale_out.measure()
    where = f"{r['plants']} plants, {r['machines']:,} machines sampling at 1 Hz"
    return [(f"scale-out: telemetry records/s of two instances sharing the plants, {where}, speed max",
             f"{r['two_records_s']:,.0f}", f"one instance {r['one_records_s']:,.0f}", f"{r['ratio']:.2f}", "≥ 1.5",
             _met(r["ratio"] >= 1.5)),
            (f"scale-out: ownership moved after a SIGTERM (every plant live again), {where}, speed 1",
             f"{r['move_after_sigterm_s']:.1f} s", "—", "—", "≤ 10 s", _met(r["move_after_sigterm_s"] <= 10)),
            (f"scale-out: ownership moved after a SIGKILL, session timeout {r['session_timeout_s']:.0f} s",
             f"{r['move_after_sigkill_s']:.1f} s", "—", "—", f"≤ {r['session_timeout_s'] + 10:.0f} s",
             _met(r["move_after_sigkill_s"] <= r["session_timeout_s"] + 10))]


def delivery_rows() -> list[Row]:
    import delivery

    r = delivery.measure()
    return [("edge delivery: MQTT QoS 1 msg/s acknowledged through the bridge, target with the durable spool",
             f"{r['spool']:,.0f}", f"memory queue {r['off']:,.0f}", f"{r['ratio_spool']:.2f}", "≥ 0.7",
             _met(r["ratio_spool"] >= 0.7)),
            ("edge delivery: the same, spool with `fsync: true`", f"{r['spool_fsync']:,.0f}",
             f"memory queue {r['off']:,.0f}", f"{r['ratio_fsync']:.2f}", "(comparison)", "—"),
            (f"edge delivery: HTTP sink records/s answered, bridge → JSON arrays of {delivery.BATCH} → local "
             f"aiohttp server (bare aiohttp POSTing the same bodies: {r['raw_http']:,.0f} records/s)",
             f"{r['http']:,.0f}", f"bridge → MQTT QoS 1 {r['off']:,.0f}", f"{r['ratio_http']:.2f}",
             "(comparison)", "—")]


def replications_rows() -> list[Row]:
    import replications

    r = replications.measure()
    return [(f"replications: wall time of {r['replications']} replications of {r['until']} of the reference plant, "
             f"--jobs 2 (worker start included; per-repeat ratios {r['ratio_min']:.2f}–{r['ratio_max']:.2f}; two "
             f"independent interpreters doing half each: {r['machine_ratio']:.2f})",
             f"{r['two_jobs_s']:.1f} s", f"--jobs 1 {r['one_job_s']:.1f} s", f"{r['ratio']:.2f}", "≤ 0.6",
             _met(r["ratio"] <= 0.6))]


def opcua_rows() -> list[Row]:
    import opcua

    r = opcua.measure()
    repeats = ", ".join(f"{x:.2f}" for x in r["ratios"])
    return [(f"OPC UA server: {r['machines']:,.0f} machines sampling at 1 Hz, speed 1: values written to the address "
             f"space/s; data change notifications/s to a client subscription on {r['monitored_items']:,.0f} items "
             f"(slowest second); event-loop lag p99",
             f"{r['values_written_s']:,.0f}/s; {r['notifications_s']:,.0f}/s ({r['notifications_min_s']:,.0f}); "
             f"{r['loop_lag_p99_ms']:.0f} ms", f"records/s into the server {r['records_s']:,.0f}", "—", "(measured)",
             "NO (connection lost)" if r["connection_lost"] else "—"),
            (f"OPC UA server: model speed at speed max, same plant, records/s with the server on vs off (medians of "
             f"{len(r['ratios'])}; per repeat {repeats})",
             f"{r['max_records_s_on']:,.0f}", f"server off {r['max_records_s_off']:,.0f}", f"{r['ratio']:.2f}",
             "≥ 0.8", _met(r["ratio"] >= 0.8))]


def sparkplug_rows() -> list[Row]:
    import sparkplug

    r = sparkplug.measure()
    return [(f"Sparkplug B: records/s through the bridge to a sparkplug target (QoS 1, report by exception; "
             f"{r['ddata']:,.0f} DDATA/s among them), Kafka → Mosquitto",
             f"{r['sparkplug']:,.0f}", f"coffeemek pass-through {r['coffeemek']:,.0f}", f"{r['ratio']:.2f}",
             "(comparison)", "—"),
            ("Sparkplug B: the same against an enms target (decoded and re-encoded as JSON, as every format but "
             "coffeemek)", f"{r['sparkplug']:,.0f}", f"enms {r['enms']:,.0f}", f"{r['ratio_enms']:.2f}",
             "(comparison)", "—")]


BENCHMARKS: dict[str, Callable[[], list[Row]]] = {
    "engine": engine_rows, "telemetry": telemetry_rows, "mqtt": mqtt_rows, "intake": intake_rows,
    "lot_sender": lot_sender_rows, "paced": paced_rows, "plant_size": plant_size_rows, "memory": memory_rows,
    "recovery": recovery_rows, "snapshot": snapshot_rows, "scale_out": scale_out_rows, "delivery": delivery_rows,
    "replications": replications_rows, "opcua": opcua_rows, "sparkplug": sparkplug_rows,
}


def main() -> None:
    chosen = sys.argv[1:] or [*BENCHMARKS, "mqtt_clients"]
    unknown = [name for name in chosen if name not in BENCHMARKS and name != "mqtt_clients"]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join([*BENCHMARKS, 'mqtt_clients'])}")
    load = os.getloadavg()[0]
    rows: list[Row] = []
    for name in chosen:
        if name == "mqtt_clients":
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            rows += BENCHMARKS[name]()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append((name, "failed", f"{type(exc).__name__}: {exc}"[:120], "—", "—", "NO"))
    path = ROOT / "BENCHMARKS.md"
    if rows:
        every = all(name in chosen for name in BENCHMARKS)
        table = ["| benchmark | factorysim | baseline (same run) | ratio | goal | met |", "|---|---|---|---|---|---|"]
        table += ["| " + " | ".join(row) + " |" for row in rows]
        block = "\n".join([BEGIN, f"Measured {dt.date.today()} on {machine()} (load average {load:.1f} at the "
                           "start); `make bench`.", "", *table, END])
        if every:
            text = path.read_text(encoding="utf-8")
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
            path.write_text(text, encoding="utf-8")
        print("\n".join(table))
    if "mqtt_clients" in chosen:  # the MQTT client choice: its own section of BENCHMARKS.md
        import mqtt_clients

        mqtt_block = mqtt_clients.measure()
        mqtt_clients.write_section(mqtt_block, path)
        print("\n".join(line for line in mqtt_block if not line.startswith("<!--")))


if __name__ == "__main__":
    main()
