"""``lot-sender``: orders to the orders topic for load tests, DLQ tests and demos.

Exit codes: 0 every lot acknowledged (and, with ``--follow``, finished); 1 a lot failed, was
rejected or did not finish in time, or Kafka could not be reached; 2 a bad flag or config;
130 interrupted before the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from simulator import package_version
from simulator.config import loader as config_loader
from simulator.config.kafka import Kafka
from simulator.config.plant import ArrivalSettings
from simulator.config.schema import Config
from simulator.errors import UsageError
from simulator.exit_codes import EXIT_FAILURE, EXIT_OK, run_command
from simulator.lotsender.messages import utc_now_text
from simulator.lotsender.options import (
    check_broker,
    parse_customers,
    parse_mix,
    parse_priorities,
    parse_quantity,
    positive,
)
from simulator.lotsender.plan import GeneratedLots, Planned, lot_code_prefix, replayed_lots
from simulator.lotsender.report import render_text
from simulator.lotsender.session import run_session
from simulator.orders import DIALECTS, Dialect

DEFAULT_LOCATIONS = {"Italia": 0.5, "Brasile": 0.3, "Vietnam": 0.2}
DEFAULT_RATE_PER_MIN = 2.0
DEFAULT_BATCH_COUNT = 10
_RUN_ID = re.compile(r"^[A-Za-z0-9]{1,16}$")
QUIET = logging.CRITICAL + 1  # the level that silences a library logger


@dataclass(frozen=True)
class Settings:
    mode: str
    count: int | None
    rate_per_min: float | None
    duration_s: float | None
    broker: str  # host:port list, or "embedded"
    kafka: Kafka
    config: Config | None
    topic: str
    run_id: str
    follow: bool
    follow_timeout_s: float
    report: str
    progress: bool
    connect_timeout_s: float
    embedded_speed: str
    plan: GeneratedLots | list[Planned]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lot-sender", description="Send production orders (lots) to factorysim's orders topic.",
        epilog="Flags not given come from the factorysim config (--config, $CONFIG_PATH or ./config.yaml "
               "when it exists), then from built-in defaults.")
    parser.add_argument("--version", action="version", version=f"lot-sender (factorysim {package_version()})")
    send = parser.add_argument_group("what and how fast")
    send.add_argument("--mode", choices=("batch", "continuous"), default="batch",
                      help="batch: --count lots (default 10), at once or at --rate; continuous: at --rate "
                           "(default 2/min) until --duration, --count or Ctrl-C")
    send.add_argument("--count", type=int, help="number of lots to send")
    send.add_argument("--rate", type=float, help="lots per minute (fractional allowed, e.g. 0.5)")
    send.add_argument("--duration", type=float, help="minutes to keep sending (continuous; default: no limit)")
    send.add_argument("--arrivals", choices=("fixed", "poisson"), default=None,
                      help="gaps between lots: fixed 60/rate s, or exponential with that mean (default fixed)")
    send.add_argument("--from-file", type=Path, help="replay orders from a .jsonl file (lines sent as they are) "
                                                     "or a .csv file with a header row")
    lots = parser.add_argument_group("generated lots")
    lots.add_argument("--locations", help="location mix, e.g. Italia=0.5,Brasile=0.3,Vietnam=0.2")
    lots.add_argument("--priorities", help="priority mix, e.g. alta=0.1,normale=0.8,bassa=0.1")
    lots.add_argument("--quantity", help="quantity range MIN-MAX (default 50-500)")
    lots.add_argument("--customers", help="comma-separated customer names")
    lots.add_argument("--dialect", choices=DIALECTS, default="it",
                      help="field names: it (codice_lotto, cliente, quantita, priorita) or en (default it)")
    lots.add_argument("--bad-ratio", type=float, default=0.0,
                      help="share 0..1 of deliberately malformed messages (several kinds; for DLQ tests)")
    lots.add_argument("--seed", type=int, default=None, help="seed of the generated lots (default: random)")
    lots.add_argument("--run-id", help="the run part of lot codes L-<date>-<run>-<n> (default: random)")
    kafka = parser.add_argument_group("Kafka")
    kafka.add_argument("--broker", help="bootstrap servers host:port[,host:port] (default: $KAFKA_BOOTSTRAP_SERVERS, "
                                        "the config, localhost:9092)")
    kafka.add_argument("--topic", help="orders topic (default: kafka.topics.orders of the config)")
    kafka.add_argument("--config", help="factorysim config for topics, security and defaults")
    kafka.add_argument("--connect-timeout", type=float, default=30.0, help="seconds to wait for Kafka (default 30)")
    kafka.add_argument("--embedded", action="store_true",
                       help="self-contained trial: start the embedded broker and factorysim in this process")
    kafka.add_argument("--embedded-speed", default="600",
                       help="simulation speed of the --embedded service (default 600)")
    out = parser.add_argument_group("report")
    out.add_argument("--follow", action="store_true",
                     help="wait for each lot's lot.completed/lot.scrapped event (and the dead letters) and "
                          "report lead times")
    out.add_argument("--follow-timeout", type=float, default=300.0,
                     help="seconds to wait after the last send (default 300)")
    out.add_argument("--report", choices=("text", "json"), default="text", help="summary format on stdout")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress line on stderr (default: when stderr is a terminal)")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="log the Kafka client's own lines too (hidden by default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)

    def send_and_report() -> int:
        settings = resolve(args, os.environ)
        summary = asyncio.run(run_session(settings, os.environ, handle_signals=True))
        if settings.report == "json":
            sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print(render_text(summary))
        return EXIT_OK if summary["ok"] else EXIT_FAILURE

    return run_command("lot-sender", send_and_report)


def configure_logging(verbose: bool) -> None:
    """Without ``-v`` the Kafka client stays quiet (a broker that is not up yet makes it log an error
    on every try; lot-sender says once that it waits, and why it gave up); with ``-v`` everything
    from INFO up."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.INFO if verbose else QUIET)


# -- flags → settings -----------------------------------------------------------------------------
def resolve(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]) -> Settings:
    _check_numbers(args)
    config = _load_config(args.config, environ)
    kafka = config.kafka if config is not None else Kafka()
    broker = _broker(args, kafka, environ)
    if args.embedded and config is None:
        raise UsageError("--embedded runs factorysim too and needs its config: ./config.yaml not found (--config FILE)")
    rate = args.rate
    if rate is None and args.mode == "continuous":
        rate = DEFAULT_RATE_PER_MIN
    count = args.count
    if count is None and args.mode == "batch" and args.from_file is None:
        count = DEFAULT_BATCH_COUNT
    run_id = args.run_id or secrets.token_hex(3)
    if not _RUN_ID.match(run_id):
        raise UsageError(f"--run-id: letters and digits only, at most 16, got {run_id!r}")
    plan: GeneratedLots | list[Planned]
    if args.from_file is not None:
        given = [flag for flag, value in (("--locations", args.locations), ("--priorities", args.priorities),
                                          ("--quantity", args.quantity), ("--customers", args.customers),
                                          ("--arrivals", args.arrivals)) if value is not None]
        if args.bad_ratio:
            given.append("--bad-ratio")
        if given:
            raise UsageError(f"--from-file sends the file's orders as they are; {', '.join(given)} does not apply")
        plan = replayed_lots(args.from_file, rate_per_min=rate)
    else:
        plan = _generated(args, config, rate, run_id)
    return Settings(
        mode=args.mode, count=count, rate_per_min=rate,
        duration_s=args.duration * 60.0 if args.duration is not None else None,
        broker=broker, kafka=kafka, config=config, topic=args.topic or kafka.topics.orders, run_id=run_id,
        follow=args.follow, follow_timeout_s=args.follow_timeout, report=args.report,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        connect_timeout_s=args.connect_timeout, embedded_speed=args.embedded_speed, plan=plan,
    )


def _check_numbers(args: argparse.Namespace) -> None:
    positive("--rate", args.rate)
    positive("--duration", args.duration)
    positive("--follow-timeout", args.follow_timeout)
    positive("--connect-timeout", args.connect_timeout)
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count: must be at least 1, got {args.count}")
    if not 0.0 <= args.bad_ratio <= 1.0:
        raise UsageError(f"--bad-ratio: must be between 0 and 1, got {args.bad_ratio:g}")
    if args.duration is not None and args.mode == "batch":
        raise UsageError("--duration applies to --mode continuous (batch mode sends --count lots)")
    if args.embedded and args.broker:
        raise UsageError("--embedded starts its own broker; leave out --broker")


def _load_config(explicit: str | None, environ: dict[str, str] | os._Environ[str]) -> Config | None:
    path = config_loader.config_path(explicit, environ)
    if explicit is None and not path.is_file():
        return None  # no config around: built-in defaults
    return config_loader.load(path, environ)


def _broker(args: argparse.Namespace, kafka: Kafka, environ: dict[str, str] | os._Environ[str]) -> str:
    if args.embedded:
        return "embedded"
    if args.broker:
        return check_broker(args.broker)
    if kafka.bootstrap_servers != "embedded":  # the config (which already applied $KAFKA_BOOTSTRAP_SERVERS)
        return kafka.bootstrap_servers
    from_env = environ.get("KAFKA_BOOTSTRAP_SERVERS")
    return check_broker(from_env) if from_env and from_env != "embedded" else "localhost:9092"


def _generated(args: argparse.Namespace, config: Config | None, rate: float | None, run_id: str) -> GeneratedLots:
    base = config.arrivals if config is not None else ArrivalSettings()
    update: dict[str, object] = {"process": args.arrivals or "fixed"}
    if args.priorities is not None:
        update["priority_mix"] = parse_priorities(args.priorities)
    if args.quantity is not None:
        update["quantity_min"], update["quantity_max"] = parse_quantity(args.quantity)
    if args.customers is not None:
        update["customers"] = parse_customers(args.customers)
    arrivals = base.model_copy(update=update)
    if args.locations is not None:
        locations = parse_mix("--locations", args.locations)
    elif config is not None:
        locations = dict(config.arrivals.location_mix or dict.fromkeys(config.locations, 1.0))
    else:
        locations = dict(DEFAULT_LOCATIONS)
    if config is not None:
        unknown = [name for name in locations if config.location_of(name) is None]
        if unknown:
            raise UsageError(f"--locations: unknown location {unknown[0]!r}; the plant has "
                             f"{', '.join(config.locations)} (malformed orders are what --bad-ratio is for)")
    dialect: Dialect = args.dialect
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    return GeneratedLots(arrivals, locations, seed=seed,
                         code_prefix=lot_code_prefix(dt.datetime.now(dt.UTC).strftime("%Y%m%d"), run_id),
                         dialect=dialect, rate_per_min=rate, bad_ratio=args.bad_ratio, timestamp=utc_now_text)


if __name__ == "__main__":
    sys.exit(main())
