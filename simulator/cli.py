"""Command-line entry points (``factorysim``).  Logging is configured only here.

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from simulator import package_version
from simulator.config import loader as config_loader
from simulator.config.origins import Override, flag
from simulator.durations import parse_duration
from simulator.errors import ConfigError, UsageError
from simulator.exit_codes import EXIT_OK, run_command
from simulator.model.snapshot import SnapshotError
from simulator.output_paths import check_outputs, write_output
from simulator.programs.offline import DEFAULT_TIMELINE_S, run_offline
from simulator.progress import ProgressBar
from simulator.reporting.summary import build_report
from simulator.reporting.summary_text import summary_text
from simulator.studies.flags import StudyFlags, study_flags
from simulator.studies.precision import run_to_precision
from simulator.studies.progress import ReplicationsBar
from simulator.studies.replications import check_kpi, run_replications, summarize
from simulator.studies.replications_text import replications_text, warm_up_text
from simulator.studies.runs import Runner, WarmUp
from simulator.studies.warm_up import PILOT_RUNS, WarmUpDecision
from simulator.studies.warm_up import decide as decide_warm_up

log = logging.getLogger("factorysim")

DESCRIPTION = ("factorysim: a Kafka-native discrete-event production simulator. `run` is the service (orders from "
               "Kafka, telemetry and lot events to Kafka and MQTT), `simulate` the offline capacity study, `study` "
               "scenarios compared and the what-if search, `bridge` the standalone MQTT bridge. Exit codes: 0 "
               "success, 1 runtime failure, 2 invalid configuration or usage.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:  # the MQTT client logs every packet at INFO; factorysim reports connections itself
        logging.getLogger("gmqtt").setLevel(logging.WARNING)
    return run_command("factorysim", lambda: int(args.handler(args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factorysim", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"factorysim {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate-config", help="check a config file and print it normalised")
    validate.add_argument("path", nargs="?", help="config file (default: $CONFIG_PATH or ./config.yaml)")
    validate.set_defaults(handler=cmd_validate)

    sim = commands.add_parser("simulate", help="run offline, as fast as possible, without any broker")
    sim.add_argument("--config", help="config file (default: $CONFIG_PATH or ./config.yaml)")
    sim.add_argument("--seed", type=int, help="run seed (default: simulation.seed)")
    amount = sim.add_argument_group("how long (at least one)")
    amount.add_argument("--lots", type=int, help="generate this many lots and run until all are finished")
    amount.add_argument("--until", help="stop at this simulated duration, e.g. 8h, 30d")
    amount.add_argument("--orders", type=Path, help="replay orders from a JSON Lines file instead of generating")
    sim.add_argument("--from-snapshot", type=Path, metavar="FILE",
                     help="start from a plant state saved by a service (GET /snapshot, or `factorysim snapshot`) "
                          "instead of an empty plant; durations count from its instant")
    gen = sim.add_argument_group("generated arrivals (override config 'arrivals')")
    gen.add_argument("--rate", type=float, help="lots per hour")
    gen.add_argument("--arrivals", choices=("poisson", "fixed"), help="inter-arrival process")
    gen.add_argument("--locations", help="location mix, e.g. Italia=0.5,Brasile=0.3,Vietnam=0.2")
    gen.add_argument("--priorities", help="priority mix, e.g. alta=0.1,normale=0.8,bassa=0.1")
    capacity = sim.add_argument_group("capacity study (README \"Capacity studies\")")
    capacity.add_argument("--replications", type=int, metavar="N",
                          help="run N independent replications (seeds derived from the run seed) and report every "
                               "KPI with its 95%% confidence interval")
    capacity.add_argument("--jobs", type=int, metavar="N", help="worker processes for the replications (default: one "
                                                                "per core)")
    capacity.add_argument("--precision", metavar="X%",
                          help="add replications until the 95%% interval of --precision-kpi is within X%% of its mean")
    capacity.add_argument("--precision-kpi", metavar="PATH",
                          help="the KPI of --precision, a dotted path of the JSON report (default lead_time_s.mean)")
    capacity.add_argument("--max-replications", type=int, metavar="N",
                          help="the cap of --precision (default 100)")
    capacity.add_argument("--warm-up", metavar="DURATION|auto|0",
                          help="statistics count from this simulated time on (e.g. 2d); auto: found by MSER-5 on the "
                               "WIP of a pilot (needs --until); 0: none (default)")
    out = sim.add_argument_group("output")
    out.add_argument("--telemetry-out", type=Path, help="write every wire message (topic, key, value) as JSONL")
    out.add_argument("--report-json", type=Path, help="write the JSON report here")
    out.add_argument("--report-html", type=Path, help="write the self-contained HTML report here")
    out.add_argument("--gantt-window", default=None,
                     help="simulated time window of the HTML Gantt chart, START,END such as 0h,72h "
                          "(default: the whole run)")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on stderr (default: when stderr is a terminal)")
    sim.set_defaults(handler=cmd_simulate)

    studies = commands.add_parser("study", help="a capacity study: scenarios of a base config run with "
                                                "replications and compared, and an optional what-if search "
                                                "(README \"Studies\")")
    studies.add_argument("file", type=Path, help="the study file (YAML)")
    study_out = studies.add_argument_group("output (the comparison and the search's answer are printed either way)")
    study_out.add_argument("--out", type=Path, metavar="DIR",
                           help="write DIR/study.json and DIR/study.html (DIR is created when missing)")
    study_out.add_argument("--report-json", type=Path, help="write the study JSON here")
    study_out.add_argument("--report-html", type=Path, help="write the study's HTML comparison here")
    studies.add_argument("--jobs", type=int,
                         help="worker processes (default: the study file's jobs, else one per core)")
    studies.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="progress bar on stderr (default: when stderr is a terminal)")
    studies.set_defaults(handler=cmd_study)

    run = commands.add_parser("run", help="the service: orders from Kafka, telemetry and lot events to Kafka")
    run.add_argument("--config", help="config file (default: $CONFIG_PATH or ./config.yaml)")
    run.add_argument("--speed", help="simulated seconds per wall second, or 'max' (default: simulation.speed)")
    run.add_argument("--seed", type=int, help="run seed (default: simulation.seed)")
    run.add_argument("--start", default="now",
                     help="the instant of simulated time 0: 'now' (default), 'config' or an ISO 8601 instant")
    run.add_argument("--demo", action="store_true",
                     help="also feed generated lots to the orders topic and show a live summary")
    run.add_argument("--fresh", action="store_true",
                     help="start a new run even if the journal holds one to continue (the old one stays there)")
    run.set_defaults(handler=cmd_run)

    snap = commands.add_parser("snapshot", help="save the live model state of a running service (its GET /snapshot) "
                                                "to a file, for `factorysim simulate --from-snapshot`")
    snap.add_argument("--url", default="http://127.0.0.1:8080",
                      help="the service's HTTP address (default http://127.0.0.1:8080)")
    snap.add_argument("--output", "-o", type=Path, required=True, help="file to write")
    snap.set_defaults(handler=cmd_snapshot)

    contract = commands.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of the config: every Kafka and "
                                                    "MQTT topic, its messages' JSON Schemas, headers and keys")
    contract.add_argument("--config", help="config file (default: $CONFIG_PATH or ./config.yaml)")
    contract.add_argument("--out", type=Path, help="write the document to this file (default: standard output)")
    contract.add_argument("--schemas-dir", type=Path,
                          help="also write every message's JSON Schema (draft 2020-12) as a file into this directory")
    contract.set_defaults(handler=cmd_asyncapi)

    bridge = commands.add_parser("bridge", help="standalone MQTT bridge: Kafka telemetry and lot events to the "
                                                "MQTT targets of the config")
    bridge.add_argument("--config", help="config file (default: $CONFIG_PATH or ./config.yaml)")
    bridge.add_argument("--http-port", type=int, help="health endpoint port (default: mqtt.bridge.http_port)")
    bridge.set_defaults(handler=cmd_bridge)
    return parser


def cmd_bridge(args: argparse.Namespace) -> int:
    from simulator.programs.bridge import run_bridge

    overrides: list[Override] = []
    if args.http_port is not None:
        overrides.append(Override("mqtt.bridge.http_port", args.http_port, flag("--http-port", args.http_port)))
    cfg = config_loader.load(config_loader.config_path(args.config), overrides=overrides)
    with cfg.errors_located():
        return run_bridge(cfg)


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from simulator.contracts.asyncapi import document
    from simulator.contracts.catalogue import dumps, schema_files

    if args.out is not None:
        check_outputs({"--out": args.out})
    if args.schemas_dir is not None and not args.schemas_dir.is_dir():
        raise UsageError(f"--schemas-dir: {args.schemas_dir} is not a directory (create it first: mkdir -p "
                         f"{args.schemas_dir})")
    cfg = config_loader.load(config_loader.config_path(args.config))
    with cfg.errors_located():
        data = dumps(document(cfg))
        files = schema_files(cfg) if args.schemas_dir is not None else {}
    if args.out is None:
        sys.stdout.buffer.write(data)
    else:
        write_output("--out", args.out, data)
    for name, schema in files.items():
        write_output("--schemas-dir", args.schemas_dir / name, dumps(schema))
    return EXIT_OK


# --- run -----------------------------------------------------------------------------------------
DEMO_SPEED = 600


def cmd_run(args: argparse.Namespace) -> int:
    from simulator.programs.service_main import run_service

    overrides: list[Override] = []
    if args.speed is not None:
        overrides.append(Override("simulation.speed", args.speed, flag("--speed", args.speed)))
    elif args.demo and "FACTORYSIM_SPEED" not in os.environ:
        overrides.append(Override("simulation.speed", DEMO_SPEED, flag("--demo")))
    if args.seed is not None:
        overrides.append(Override("simulation.seed", args.seed, flag("--seed", args.seed)))
    if args.start == "now":
        overrides.append(Override("simulation.start", dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
                                  flag("--start", args.start)))
    elif args.start != "config":
        overrides.append(Override("simulation.start", args.start, flag("--start", args.start)))
    cfg = config_loader.load(config_loader.config_path(args.config), overrides=overrides)
    with cfg.errors_located():
        if args.demo and cfg.kafka.scale_out.enabled:
            raise ConfigError(["kafka.scale_out.enabled: --demo runs every plant in this one process; turn "
                               "kafka.scale_out off for the demo"])
        return run_service(cfg, demo=args.demo, fresh=args.fresh, start_now=args.start == "now")


# --- validate-config -----------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    path = config_loader.config_path(args.path)
    cfg = config_loader.load(path)
    data = cfg.model_dump(mode="json")
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    print(f"# {path}: valid", file=sys.stderr)
    return EXIT_OK


# --- simulate ------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    if args.lots is None and args.until is None and args.orders is None:
        raise UsageError("simulate needs --lots N, --until DURATION or --orders FILE")
    if args.lots is not None and args.orders is not None:
        raise UsageError("--lots and --orders exclude each other (the order file decides the lots)")
    if args.lots is not None and args.lots < 1:
        raise UsageError(f"--lots must be at least 1, got {args.lots}")
    until_s = _duration("--until", args.until) if args.until is not None else None
    if args.orders is not None and not args.orders.is_file():
        raise UsageError(f"--orders: no such file: {args.orders}")
    window = _window(args.gantt_window)
    study = study_flags(args, until_s)
    check_outputs({"--telemetry-out": args.telemetry_out, "--report-json": args.report_json,
                   "--report-html": args.report_html},
                  inputs={"--orders": args.orders, "--from-snapshot": args.from_snapshot})
    cfg = config_loader.load(config_loader.config_path(args.config), overrides=_arrival_overrides(args))
    document, warm = None, False
    if args.from_snapshot is not None:
        if args.seed is not None:
            raise UsageError("--seed and --from-snapshot exclude each other (the snapshot's run has its seed)")
        cfg, document, warm = _from_snapshot(args.from_snapshot, cfg)
        if args.lots is not None and document.get("arrivals") is not None:
            raise UsageError("--lots and this snapshot exclude each other: its plant generates orders itself "
                             "(arrivals.in_service); use --until")
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    if study.replicated:
        return _simulate_replications(args, cfg, study, show_progress)
    warm_up = _single_run_warm_up(args, cfg, study)
    bar = ProgressBar(lots=args.lots, until_s=until_s) if show_progress else None
    try:
        result = asyncio.run(run_offline(
            cfg, seed=args.seed, lots=args.lots, until_s=until_s, orders=args.orders,
            telemetry_out=args.telemetry_out, timeline=window, progress=bar, snapshot=document, warm=warm,
            warm_up_s=warm_up.warm_up.warm_up_s,
        ))
    except SnapshotError as exc:
        raise ConfigError([f"--from-snapshot: {args.from_snapshot} cannot start this config: {exc}"]) from exc
    finally:
        if bar is not None:
            bar.close()
    report = build_report(result.sim)
    if isinstance(report.get("assumptions"), dict):
        report["assumptions"]["length"] = {"lots": args.lots, "until_s": until_s}
    if args.orders is not None:
        report["orders_rejected"] = {"count": len(result.rejected), "by_reason": result.rejected_by_reason}
        for rejected in result.rejected[:20]:
            print(f"{args.orders}:{rejected.line}: rejected ({rejected.reason}): {rejected.detail}",
                  file=sys.stderr)
    if args.report_json is not None:
        write_output("--report-json", args.report_json, orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    if args.report_html is not None:
        from simulator.reporting.html_report import render_html
        from simulator.reporting.run_charts import run_charts

        write_output("--report-html", args.report_html, render_html(report, run_charts(result.sim)).encode())
    print(summary_text(report, result))
    if warm_up.warm_up.method == "mser-5":
        print(warm_up_text(warm_up.as_dict()))
    return EXIT_OK


def _single_run_warm_up(args: argparse.Namespace, cfg: Any, study: StudyFlags) -> WarmUpDecision:
    """The warm-up of a single run (an automatic one runs a pilot of one run first)."""
    if study.warm_up == "auto" and (args.orders is not None or args.from_snapshot is not None):
        raise UsageError("--warm-up auto runs a pilot with generated arrivals from an empty plant; with --orders "
                         "or --from-snapshot give the warm-up as a duration")
    if study.warm_up != "auto" or study.length is None:
        return WarmUpDecision(study.warm_up if study.warm_up != "auto" else WarmUp("none"))
    with Runner(1) as runner:
        decision = decide_warm_up(cfg, seed=cfg.simulation.seed, length=study.length, requested="auto",
                                  replications=1, runner=runner)
    for warning in decision.warnings:
        log.warning("--warm-up auto: %s", warning)
    return decision


def _simulate_replications(args: argparse.Namespace, cfg: Any, study: StudyFlags, show_progress: bool) -> int:
    """`simulate --replications N` / `--precision X%`: the replicated report (JSON, HTML, text)."""
    if study.precision is not None:
        try:
            check_kpi(cfg, study.precision.kpi)
        except ValueError as exc:
            raise UsageError(f"--precision-kpi: {exc}") from exc
    assert study.length is not None  # (replications have --lots or --until: checked with the flags)
    pilots = min(study.start, PILOT_RUNS) if study.warm_up == "auto" else 0
    bar = ReplicationsBar(pilots=pilots) if show_progress else None
    charts = args.report_html is not None
    if charts:  # before the runs: a renderer that cannot load must not waste them
        from simulator.reporting.replications_html import render_replications_html
    precision = None
    try:
        if bar is not None:
            bar(0, pilots + study.start)
        if study.precision is None:
            replicated = run_replications(cfg, seed=cfg.simulation.seed, count=study.start, length=study.length,
                                          warm_up=study.warm_up, jobs=args.jobs, charts=charts, progress=bar)
        else:
            replicated, precision = run_to_precision(cfg, seed=cfg.simulation.seed, start=study.start,
                                                     target=study.precision, length=study.length,
                                                     warm_up=study.warm_up, jobs=args.jobs, charts=charts,
                                                     progress=bar)
    finally:
        if bar is not None:
            bar.close()
    summary = summarize(replicated, precision=precision)
    if args.report_json is not None:
        write_output("--report-json", args.report_json, orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    if charts:
        write_output("--report-html", args.report_html, render_replications_html(summary).encode())
    print(replications_text(summary))
    return EXIT_OK


# --- study ---------------------------------------------------------------------------------------
def cmd_study(args: argparse.Namespace) -> int:
    from simulator.studies.scenarios import run_study
    from simulator.studies.study_file import load_study
    from simulator.studies.study_text import StudyProgress, study_summary

    if args.out is not None and (args.report_json is not None or args.report_html is not None):
        raise UsageError("--out DIR and --report-json/--report-html exclude each other")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    study = load_study(args.file)
    outputs = {"--report-json": args.report_json, "--report-html": args.report_html}
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out: {args.out} is not a directory")
        args.out.mkdir(parents=True, exist_ok=True)
        outputs = {"--out (study.json)": args.out / "study.json", "--out (study.html)": args.out / "study.html"}
    check_outputs(outputs, inputs={"FILE": args.file})
    (json_flag, json_path), (html_flag, html_path) = outputs.items()
    renderer: Callable[[dict[str, Any]], str] | None = None
    if html_path is not None:  # imported before the run: a missing renderer must not waste it
        from simulator.reporting import study_html

        renderer = study_html.render_study_html
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    progress = StudyProgress() if show_progress else None
    try:
        result = run_study(study, jobs=args.jobs, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if json_path is not None:
        write_output(json_flag, json_path, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    if html_path is not None and renderer is not None:
        write_output(html_flag, html_path, renderer(result).encode())
    print(study_summary(result))
    return EXIT_OK


def _from_snapshot(path: Path, cfg: Any) -> tuple[Any, dict[str, Any], bool]:
    """The config of the snapshot's run (its seed and start), its model document, and whether it is
    a warm start under a changed config (another model fingerprint: the model restores what fits,
    e.g. one more machine, and refuses what does not)."""
    from simulator.formats.snapshot import SnapshotCorrupt, from_json
    from simulator.model import snapshot as model_snapshot

    try:
        snapshot = from_json(orjson.loads(path.read_bytes()))
        seed, start = int(snapshot.document["seed"]), dt.datetime.fromisoformat(
            str(snapshot.document["start"]).replace("Z", "+00:00"))
    except OSError as exc:
        raise UsageError(f"--from-snapshot: cannot read {path}: {exc.strerror or exc}") from exc
    except (orjson.JSONDecodeError, SnapshotCorrupt, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--from-snapshot: {path} is not a factorysim snapshot ({exc})") from exc
    warm = snapshot.fingerprint != cfg.model_fingerprint
    if warm:
        log.warning("--from-snapshot: %s was taken under another plant config (fingerprint %s…, this config %s…): "
                    "a warm start of the plant as configured now, from the state in the snapshot (the run after it "
                    "is not the service's)", path, snapshot.fingerprint[:12], cfg.model_fingerprint[:12])
    if snapshot.model_version != model_snapshot.SNAPSHOT_VERSION:
        raise ConfigError([f"--from-snapshot: {path} holds a model state of version {snapshot.model_version}; this "
                           f"factorysim reads version {model_snapshot.SNAPSHOT_VERSION}"])
    run_config = cfg.model_copy(update={"simulation": cfg.simulation.model_copy(update={"seed": seed,
                                                                                        "start": start})})
    log.info("starting from snapshot %s of run %s at simulated time %.0f s (%s)", snapshot.snapshot_id,
             snapshot.run_id, snapshot.sim_time_s, start + dt.timedelta(seconds=snapshot.sim_time_s))
    return run_config, snapshot.document, warm


# --- snapshot ------------------------------------------------------------------------------------
def cmd_snapshot(args: argparse.Namespace) -> int:
    """GET /snapshot of a running service, written to a file."""
    import urllib.error
    import urllib.request

    url = args.url.rstrip("/") + "/snapshot"
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url: an http:// or https:// address, got {args.url!r}")
    check_outputs({"--output": args.output})
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - the scheme is checked above
            body = response.read()
    except urllib.error.HTTPError as exc:
        print(f"factorysim snapshot: {url} answered {exc.code}: {exc.read()[:500].decode(errors='replace')}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"factorysim snapshot: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    from simulator.formats.snapshot import SnapshotCorrupt, from_json

    try:  # only a snapshot is written (not an error page of whatever answered)
        snapshot = from_json(orjson.loads(body))
    except (orjson.JSONDecodeError, SnapshotCorrupt) as exc:
        print(f"factorysim snapshot: {url} did not answer a factorysim snapshot ({exc})", file=sys.stderr)
        return 1
    write_output("--output", args.output, body)
    print(f"snapshot {snapshot.snapshot_id} of run {snapshot.run_id} at simulated time {snapshot.sim_time_s:.0f} s "
          f"written to {args.output} ({len(body)} bytes)")
    return EXIT_OK


def _duration(flag: str, text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc
    if value <= 0:
        raise UsageError(f"{flag}: must be longer than 0, got {text!r}")
    return value


def _window(text: str | None) -> tuple[float, float]:
    if text is None:
        return 0.0, math.inf
    parts = text.split(",")
    if len(parts) != 2:
        raise UsageError(f"--gantt-window: expected START,END such as 0h,72h, got {text!r}")
    start, end = (_duration("--gantt-window", p) if p.strip() not in ("0", "0h", "0s") else 0.0 for p in parts)
    if end <= start:
        raise UsageError(f"--gantt-window: END must be after START, got {text!r}")
    return start, end


def _mix(flag: str, text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, sep, weight = item.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or value <= 0:
            raise UsageError(f"{flag}: expected NAME=WEIGHT[,NAME=WEIGHT...] with positive weights, "
                             f"got {item!r}")
        mix[name.strip()] = value
    return mix


def _arrival_overrides(args: argparse.Namespace) -> list[Override]:
    overrides: list[Override] = []
    if args.rate is not None:
        overrides.append(Override("arrivals.rate_per_hour", args.rate, flag("--rate", args.rate)))
    if args.arrivals is not None:
        overrides.append(Override("arrivals.process", args.arrivals, flag("--arrivals", args.arrivals)))
    if args.locations is not None:
        overrides.append(Override("arrivals.location_mix", _mix("--locations", args.locations),
                                  flag("--locations", args.locations)))
    if args.priorities is not None:
        overrides.append(Override("arrivals.priority_mix", _mix("--priorities", args.priorities),
                                  flag("--priorities", args.priorities)))
    if args.seed is not None:
        overrides.append(Override("simulation.seed", args.seed, flag("--seed", args.seed)))
    return overrides


__all__ = ["DEFAULT_TIMELINE_S", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
