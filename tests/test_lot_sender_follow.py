"""``lot-sender --follow`` accounts per sent message: a lot code sent again and dead-lettered as a
duplicate counts as dead-lettered, never as completed by the final event of an earlier order of
the same code.  The accounting rules on hand-made records, then against a real service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml

from simulator.config.schema import Config
from simulator.lotsender import cli
from simulator.lotsender.follow import Accounting
from simulator.lotsender.plan import RUN_HEADER, SEQ_HEADER, Planned
from simulator.lotsender.report import build_summary, render_text
from simulator.lotsender.sender import SendStats
from simulator.lotsender.session import run_session
from simulator.programs.service import Service

from harness.service import Reader, running_service, service_config

EVENTS, DLQ, RUN = "ev", "dlq", "run1"


# -- the rules, on hand-made records --------------------------------------------------------------
def follower_for(*codes: str) -> Accounting:
    """The accounting of messages 1, 2, … with these lot codes, sent at epoch 1000 s."""
    stats = SendStats()
    for seq, code in enumerate(codes, start=1):
        stats.planned[seq] = Planned(seq, None, b"Italia", b"{}", code)
        stats.sent_wall[seq] = 1000.0
        stats.seqs_by_code.setdefault(code, []).append(seq)
    stats.sent = len(codes)
    return Accounting(stats, RUN)


_event_ids = iter(range(1, 1_000_000))


def event(follower: Accounting, code: str, event_type: str, *, at_s: float = 1010.0, event_id: str | None = None,
          lead_time_s: float | None = None) -> None:
    eid = event_id or f"e{next(_event_ids)}"
    follower.event(SimpleNamespace(  # type: ignore[arg-type]
        topic=EVENTS, key=code.encode(), timestamp=int(at_s * 1000),
        headers=[("event_id", eid.encode()), ("event_type", event_type.encode())],
        value=orjson.dumps({"event_type": event_type, "lot_code": code, "lead_time_s": lead_time_s})))


def dead_letter(follower: Accounting, seq: int, reason: str = "duplicate_lot") -> None:
    follower.dead_letter(SimpleNamespace(  # type: ignore[arg-type]
        topic=DLQ, key=b"Italia", timestamp=0, value=b"{}",
        headers=[(RUN_HEADER, RUN.encode()), (SEQ_HEADER, str(seq).encode()), ("dlq.reason", reason.encode())]))


def follow_summary(follower: Accounting) -> dict[str, Any]:
    summary = build_summary(run_id=RUN, broker="b:1", topic="orders", mode="batch", requested_rate_per_min=None,
                            stats=follower.stats, follow=follower.result, follow_outstanding=follower.outstanding())
    follow: dict[str, Any] = summary["follow"]
    return follow


def test_a_final_event_counts_only_after_the_lot_was_admitted_in_this_run() -> None:
    follower = follower_for("A")
    event(follower, "A", "lot.completed")  # an earlier order of A, admitted before the follower started
    assert follower.outstanding() == (1, 0)
    event(follower, "A", "lot.received", at_s=1000.5)
    event(follower, "A", "lot.completed", at_s=1012.5, lead_time_s=14_743.0)
    follow = follow_summary(follower)
    assert (follow["completed"], follow["ignored_final_events"], follow["not_finished"]) == (1, 1, 0)
    assert follow["lead_time_s"]["max"] == 12.5 and follow["sim_lead_time_s"]["max"] == 14_743.0


def test_a_dead_lettered_resend_counts_as_dead_lettered_even_when_the_old_order_completes_first() -> None:
    follower = follower_for("A")
    event(follower, "A", "lot.received", at_s=999.0)  # the earlier order, admitted just as the run began
    event(follower, "A", "lot.completed")  # ... and finished: given to message 1 for now
    assert follower.outstanding() == (0, 0)
    dead_letter(follower, 1)  # the dead letter names message 1: it was the duplicate
    follow = follow_summary(follower)
    assert (follow["completed"], follow["rejected"], follow["ignored_final_events"]) == (0, {"duplicate_lot": 1}, 1)
    text = render_text({"follow": follow, **build_summary(
        run_id=RUN, broker="b:1", topic="orders", mode="batch", requested_rate_per_min=None,
        stats=follower.stats, follow=follower.result)})
    assert "0 completed, 0 scrapped, 1 dead-lettered (duplicate_lot ×1), 0 not finished" in text


@pytest.mark.parametrize("dead_letter_first", [True, False])
def test_a_code_sent_twice_in_one_run_is_one_completed_and_one_dead_lettered(dead_letter_first: bool) -> None:
    follower = follower_for("A", "B", "A")  # message 3 repeats message 1's code
    event(follower, "A", "lot.received")
    event(follower, "B", "lot.received")
    if dead_letter_first:
        dead_letter(follower, 1)  # (the service admits whichever comes first; here message 3)
    event(follower, "A", "lot.completed", at_s=1020.0)
    event(follower, "B", "lot.scrapped")
    if not dead_letter_first:
        dead_letter(follower, 1)  # the final event given to message 1 moves to message 3
    follow = follow_summary(follower)
    assert follow["lots"] == 3
    assert (follow["completed"], follow["scrapped"], follow["rejected"]) == (1, 1, {"duplicate_lot": 1})
    assert follow["not_finished"] == 0 and follow["ignored_final_events"] == 0
    assert set(follower.result.finished) == {2, 3}


def test_events_published_twice_count_once() -> None:
    follower = follower_for("A", "A")
    event(follower, "A", "lot.received", event_id="r1")
    event(follower, "A", "lot.received", event_id="r1")  # one admission, published twice
    event(follower, "A", "lot.completed", event_id="c1")
    event(follower, "A", "lot.completed", event_id="c1")
    follow = follow_summary(follower)
    assert (follow["completed"], follow["not_finished"], follow["ignored_final_events"]) == (1, 1, 0)


# -- against a real service ---------------------------------------------------------------------
def write_config(config: Config, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    return path


def write_orders(tmp_path: Path, name: str, *orders: tuple[str, str]) -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(orjson.dumps({"codice_lotto": code, "cliente": "Bar", "quantita": 10,
                                            "location": location}) + b"\n" for code, location in orders))
    return path


async def follow_file(config_file: Path, orders: Path, run_id: str) -> dict[str, Any]:
    argv = ["--config", str(config_file), "--from-file", str(orders), "--run-id", run_id, "--follow",
            "--follow-timeout", "90", "--no-progress"]
    return await run_session(cli.resolve(cli.build_parser().parse_args(argv), {}))


async def command(service: Service, name: str, machine_id: str) -> None:
    await service.commands.execute({"command": name, "machine_id": machine_id}, source="test")


def final_events(events: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("lot_code") == code and e["event_type"] in ("lot.completed", "lot.scrapped")]


@pytest.mark.timeout(120)
async def test_sending_a_completed_lot_again_reports_it_dead_lettered_as_a_duplicate(
        kafka_bootstrap: str, unique: str, default_yaml: dict[str, Any], tmp_path: Path) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    config_file = write_config(config, tmp_path)
    orders = write_orders(tmp_path, "orders.jsonl", (f"{unique}-A", "Italia"))
    async with running_service(config):
        first = await follow_file(config_file, orders, "first")
        assert first["ok"], first
        assert first["follow"]["completed"] + first["follow"]["scrapped"] == 1
        again = await follow_file(config_file, orders, "again")  # the same lot code, within the dedup window
    follow = again["follow"]
    assert not again["ok"]
    assert (follow["lots"], follow["completed"], follow["scrapped"]) == (1, 0, 0)
    assert follow["rejected"] == {"duplicate_lot": 1} and follow["not_finished"] == 0
    assert follow["lead_time_s"]["max"] is None
    text = render_text(again)
    assert "0 completed, 0 scrapped, 1 dead-lettered (duplicate_lot ×1)" in text
    assert "FAILED: 1 lot dead-lettered by the service" in text


@pytest.mark.timeout(150)
async def test_a_resend_of_a_lot_in_progress_is_not_completed_by_the_earlier_orders_completion(
        kafka_bootstrap: str, unique: str, default_yaml: dict[str, Any], tmp_path: Path) -> None:
    """Lot A is in the plant (its first stage blocked) when it is sent again together with lot B;
    A's earlier order completes while the run still waits for B: the run reports B completed and
    the resent A dead-lettered, and A's completion as ignored."""
    config = service_config(default_yaml, kafka_bootstrap, unique)
    config_file = write_config(config, tmp_path)
    code_a, code_b = f"{unique}-A", f"{unique}-B"
    italia = [f"Italia-fresa_cnc-{i:02d}" for i in range(1, 4)]
    vietnam = [f"Vietnam-fresa_cnc-{i:02d}" for i in range(1, 5)]
    topics = config.kafka.topics
    async with running_service(config) as service, Reader(kafka_bootstrap, [topics.events, topics.dead_letter]) as rd:
        for machine in italia + vietnam:
            await command(service, "block", machine)
        earlier = await run_session(cli.resolve(cli.build_parser().parse_args(
            ["--config", str(config_file), "--from-file", str(write_orders(tmp_path, "a.jsonl", (code_a, "Italia"))),
             "--run-id", "earlier", "--no-progress"]), {}))
        assert earlier["ok"]
        await rd.read_until(lambda c: any(e.get("lot_code") == code_a and e["event_type"] == "lot.received"
                                          for e in c.json(topics.events)), 30, "A admitted")
        run = asyncio.ensure_future(follow_file(
            config_file, write_orders(tmp_path, "ab.jsonl", (code_a, "Italia"), (code_b, "Vietnam")), "again"))
        await rd.read_until(lambda c: any(e.get("lot_code") == code_b and e["event_type"] == "lot.received"
                                          for e in c.json(topics.events)) and len(c.of(topics.dead_letter)) >= 1,
                            30, "B admitted and the resent A dead-lettered")
        for machine in italia:  # A's earlier order goes on and finishes; B still waits
            await command(service, "repair", machine)
        await rd.read_until(lambda c: final_events(c.json(topics.events), code_a), 30, "A's earlier order finished")
        assert not run.done()
        for machine in vietnam:
            await command(service, "repair", machine)
        summary = await asyncio.wait_for(run, 60)
    follow = summary["follow"]
    assert follow["lots"] == 2
    assert follow["completed"] + follow["scrapped"] == 1  # B only
    assert follow["rejected"] == {"duplicate_lot": 1} and follow["not_finished"] == 0
    assert follow["ignored_final_events"] == 1  # A's earlier order
    assert not summary["ok"]
