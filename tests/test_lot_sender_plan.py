"""lot-sender without a broker: generated lots (codes, keys, mixes, arrivals, dialects, malformed
messages), replay files, flag checking and the summary."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from scipy import stats

from simulator.config.plant import ArrivalSettings
from simulator.errors import OrderRejected, UsageError
from simulator.lotsender import cli
from simulator.lotsender.follow import Finish, FollowResult
from simulator.lotsender.messages import BAD_KINDS
from simulator.lotsender.options import check_broker, parse_mix, parse_priorities, parse_quantity
from simulator.lotsender.plan import GeneratedLots, Planned, ReplayError, replayed_lots
from simulator.lotsender.report import build_summary, duration_text, percentile, render_text
from simulator.lotsender.sender import SendStats
from simulator.orders import OrderParser
from simulator.progress import count_of

ROOT = Path(__file__).resolve().parents[1]
MIX = {"Italia": 0.5, "Brasile": 0.3, "Vietnam": 0.2}
PARSER = OrderParser(lambda name: {"italia": "Italia", "brasile": "Brasile", "vietnam": "Vietnam"}.get(name.casefold()))


def plan(n: int, *, rate: float | None = 60.0, process: str = "fixed", bad_ratio: float = 0.0,
         dialect: str = "it", seed: int = 1, **arrivals: object) -> list[Planned]:
    lots = GeneratedLots(ArrivalSettings(process=process, **arrivals), MIX, seed=seed, code_prefix="L-20261123-ab12",
                         dialect=dialect, rate_per_min=rate, bad_ratio=bad_ratio,  # type: ignore[arg-type]
                         timestamp=lambda: "2026-11-23T10:00:00.000Z")
    return [item for _, item in zip(range(n), lots, strict=False)]


def test_lot_codes_are_unique_per_run_and_keyed_by_location() -> None:
    items = plan(500)
    codes = [item.lot_code for item in items]
    assert len(set(codes)) == 500
    assert all(re.fullmatch(r"L-20261123-ab12-\d{6}", code or "") for code in codes)
    for item in items:
        assert item.key == orjson.loads(item.value)["location"].encode()


def test_every_generated_lot_is_a_valid_order_in_either_dialect() -> None:
    for dialect, code_key in (("it", "codice_lotto"), ("en", "lot_code")):
        for item in plan(300, dialect=dialect):
            body = orjson.loads(item.value)
            assert body[code_key] == item.lot_code
            order = PARSER.parse(item.value)
            assert order.lot_code == item.lot_code
            assert 50 <= order.quantity <= 500
            assert body["timestamp"] == "2026-11-23T10:00:00.000Z"
        if dialect == "en":
            assert {orjson.loads(i.value)["priority"] for i in plan(300, dialect="en")} <= {"high", "normal", "low"}


def test_location_and_priority_mixes_follow_their_weights() -> None:
    n = 20_000
    bodies = [orjson.loads(item.value) for item in plan(n, priority_mix={"alta": 0.1, "normale": 0.8, "bassa": 0.1})]
    locations = Counter(b["location"] for b in bodies)
    priorities = Counter(b["priorita"] for b in bodies)
    observed = [locations[name] for name in MIX]
    assert stats.chisquare(observed, [w * n for w in MIX.values()]).pvalue > 0.001
    observed = [priorities[p] for p in ("alta", "normale", "bassa")]
    assert stats.chisquare(observed, [0.1 * n, 0.8 * n, 0.1 * n]).pvalue > 0.001


def test_quantity_range_and_customers_are_respected() -> None:
    bodies = [orjson.loads(i.value) for i in plan(2000, quantity_min=7, quantity_max=9, customers=("Uno", "Due"))]
    assert {b["quantita"] for b in bodies} == {7, 8, 9}
    assert {b["cliente"] for b in bodies} == {"Uno", "Due"}


def test_fixed_arrivals_are_due_exactly_every_sixty_over_rate_seconds() -> None:
    items = plan(100, rate=7.5)
    assert [item.offset_s for item in items] == pytest.approx([i * 8.0 for i in range(100)])


def test_poisson_inter_arrival_times_are_exponential_with_the_requested_mean() -> None:
    rate_per_min = 30.0  # mean gap 2 s
    items = plan(5000, rate=rate_per_min, process="poisson")
    offsets = [item.offset_s or 0.0 for item in items]
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert sum(gaps) / len(gaps) == pytest.approx(2.0, rel=0.05)
    assert stats.kstest(gaps, "expon", args=(0, 2.0)).pvalue > 0.001
    # and not merely exponential-looking: coefficient of variation 1 (fixed gaps would give 0)
    mean = sum(gaps) / len(gaps)
    assert (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean == pytest.approx(1.0, abs=0.06)


def test_without_a_rate_lots_are_due_at_once() -> None:
    assert {item.offset_s for item in plan(50, rate=None)} == {None}


def test_the_same_seed_gives_the_same_lots() -> None:
    assert [i.value for i in plan(200, seed=5)] == [i.value for i in plan(200, seed=5)]
    assert [i.value for i in plan(200, seed=5)] != [i.value for i in plan(200, seed=6)]


def test_every_malformed_kind_is_rejected_by_the_service_parser_for_its_stated_reason() -> None:
    items = [item for item in plan(3000, bad_ratio=0.5) if item.bad_kind is not None]
    assert {item.bad_kind for item in items} == set(BAD_KINDS)
    for item in items:
        with pytest.raises(OrderRejected) as caught:
            PARSER.parse(item.value)
        assert caught.value.reason == item.expected_reason, item.value[:200]


def test_bad_ratio_is_the_share_of_malformed_messages() -> None:
    items = plan(10_000, bad_ratio=0.2)
    bad = sum(item.bad_kind is not None for item in items)
    assert stats.binomtest(bad, 10_000, 0.2).pvalue > 0.001
    assert all(item.lot_code is None for item in items if item.bad_kind is not None)


# -- replay --------------------------------------------------------------------------------------
def test_jsonl_replay_sends_each_line_as_it_is(tmp_path: Path) -> None:
    lines = [b'{"codice_lotto":"R-1","cliente":"A","quantita":10,"location":"Italia"}',
             b'{"lot_code":"R-2","customer":"B","quantity":20,"location":"Vietnam","priority":"high"}',
             b"not json at all"]
    path = tmp_path / "orders.jsonl"
    path.write_bytes(b"\n".join(lines[:2]) + b"\r\n\n" + lines[2] + b"\n")
    items = replayed_lots(path, rate_per_min=None)
    assert [item.value for item in items] == lines
    assert [item.lot_code for item in items] == ["R-1", "R-2", None]
    assert [item.key for item in items] == [b"Italia", b"Vietnam", b""]
    assert [i.offset_s for i in replayed_lots(path, rate_per_min=30)] == [0.0, 2.0, 4.0]


def test_csv_replay_turns_rows_into_orders(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("codice_lotto,cliente,quantita,location,priorita\n"
                    "C-1,Bar Centrale,120,Brasile,alta\nC-2,Caffè Roma,75,Italia,\n", encoding="utf-8")
    items = replayed_lots(path, rate_per_min=None)
    assert [PARSER.parse(item.value).lot_code for item in items] == ["C-1", "C-2"]
    assert orjson.loads(items[0].value) == {"codice_lotto": "C-1", "cliente": "Bar Centrale", "quantita": 120,
                                            "location": "Brasile", "priorita": "alta"}
    assert PARSER.parse(items[1].value).priority == "normale"  # an empty cell is a missing field


def test_replay_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=re.escape(f"--from-file: no such file: {tmp_path / 'missing.jsonl'}")):
        replayed_lots(tmp_path / "missing.jsonl", rate_per_min=None)
    with pytest.raises(ReplayError, match="cannot read"):
        replayed_lots(tmp_path, rate_per_min=None)  # a folder
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ReplayError, match="no orders"):
        replayed_lots(empty, rate_per_min=None)


# -- flags ---------------------------------------------------------------------------------------
def test_mix_and_range_flags() -> None:
    assert parse_mix("--locations", "Italia=0.5, Brasile=0.3,Vietnam=0.2") == MIX
    assert parse_priorities("high=1,normale=3") == {"alta": 1.0, "normale": 3.0}
    assert parse_quantity("50-500") == (50, 500)
    assert parse_quantity("12") == (12, 12)
    assert check_broker("a:9092, b.example:19092") == "a:9092,b.example:19092"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_mix("--locations", "Italia"), "--locations: expected NAME=WEIGHT"),
    (lambda: parse_mix("--locations", "Italia=x"), "must be a number"),
    (lambda: parse_mix("--locations", "Italia=0"), "greater than 0"),
    (lambda: parse_priorities("urgent=1"), "unknown priority 'urgent'; allowed: alta"),
    (lambda: parse_quantity("500-50"), "--quantity: need 1 <= MIN <= MAX"),
    (lambda: parse_quantity("many"), "--quantity: expected MIN-MAX"),
    (lambda: check_broker("localhost"), "--broker: expected host:port"),
    (lambda: check_broker("localhost:99999"), "--broker: expected host:port"),
])
def test_bad_flag_values_name_the_flag(call: object, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(("argv", "message"), [
    (["--rate", "0"], "--rate: must be greater than 0"),
    (["--count", "0"], "--count: must be at least 1"),
    (["--bad-ratio", "1.5"], "--bad-ratio: must be between 0 and 1"),
    (["--mode", "batch", "--duration", "2"], "--duration applies to --mode continuous"),
    (["--embedded", "--broker", "h:1"], "--embedded starts its own broker"),
    (["--broker", "nohost"], "--broker: expected host:port"),
    (["--locations", "Atlantide=1"], "--locations: unknown location 'Atlantide'; the plant has Italia"),
    (["--run-id", "a-b"], "--run-id: letters and digits only"),
    (["--from-file", "x.jsonl", "--bad-ratio", "0.1"], "--bad-ratio does not apply"),
])
def test_bad_flags_exit_2_with_one_clear_message(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = str(Path(__file__).resolve().parents[1] / "config.yaml")
    assert cli.main(["--config", config, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_a_missing_replay_file_exits_2_with_one_line_like_simulate(tmp_path: Path) -> None:
    missing = tmp_path / "orders.jsonl"
    done = subprocess.run([sys.executable, "-m", "simulator.lotsender.cli", "--from-file", str(missing),
                           "--broker", "127.0.0.1:1", "--no-progress"],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"lot-sender: --from-file: no such file: {missing}\n"
    simulate = subprocess.run([sys.executable, "-m", "simulator", "simulate", "--config", str(ROOT / "config.yaml"),
                               "--orders", str(missing)], capture_output=True, text=True, timeout=60, check=False,
                              cwd=ROOT)
    assert simulate.returncode == 2, simulate.stderr


def test_unknown_flag_and_bad_choice_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--nonsense"], ["--mode", "sometimes"], ["--dialect", "fr"]):
        with pytest.raises(SystemExit) as caught:
            cli.main(argv)
        assert caught.value.code == 2


# -- summary -------------------------------------------------------------------------------------
def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) is None


def test_the_summary_fails_when_a_lot_failed() -> None:
    ok = SendStats(sent=3, acked=3, started=0.0, first_send=0.0, last_send=1.0, finished=1.5,
                   ack_latencies_s=[0.01, 0.02, 0.03])
    summary = build_summary(run_id="r1", broker="b:1", topic="t", mode="batch", requested_rate_per_min=120.0,
                            stats=ok, follow=None)
    assert summary["ok"] and summary["achieved_rate_per_min"] == 120.0
    assert summary["ack_latency_ms"]["p50"] == 20.0
    assert render_text(summary).endswith("OK")
    failed = SendStats(sent=3, acked=2, failed=1, started=0.0, finished=1.0)
    failed.errors["KafkaTimeoutError"] = 1
    summary = build_summary(run_id="r1", broker="b:1", topic="t", mode="batch", requested_rate_per_min=None,
                            stats=failed, follow=None)
    assert not summary["ok"]
    assert "FAILED: 1 lot not acknowledged" in render_text(summary)


def test_an_all_at_once_batch_reports_no_per_minute_rate() -> None:
    stats = SendStats(sent=3000, acked=3000, started=0.0, first_send=0.0, last_send=0.0567, finished=0.25,
                      ack_latencies_s=[0.004] * 3000)
    summary = build_summary(run_id="r1", broker="b:1", topic="t", mode="batch", requested_rate_per_min=None,
                            stats=stats, follow=None)
    assert summary["achieved_rate_per_min"] is None and summary["send_span_s"] == 0.057
    assert summary["lots_per_s"] == 12_000.0
    text = render_text(summary)
    assert "rate: all at once (3,000 lots within 57 ms)" in text
    assert "in 250 ms (12,000 lots/s)" in text
    assert not re.search(r"\d\.\d{3}", text), text  # no absurd decimals anywhere
    stats.last_send = 0.0002
    assert "rate: all at once (3,000 lots within 1 ms)" in render_text(build_summary(
        run_id="r1", broker="b:1", topic="t", mode="batch", requested_rate_per_min=None, stats=stats, follow=None))


@pytest.mark.parametrize(("requested", "sent", "span_s", "line"), [
    (1200.0, 60, 2.95, "rate: achieved 1,200/min, requested 1,200/min"),
    (0.5, 3, 239.6, "rate: achieved 0.50/min, requested 0.50/min"),
    (30.0, 11, 20.1, "rate: achieved 29.9/min, requested 30.0/min"),
    (None, 100_001, 2.0, "rate: as fast as possible, 50,000 lots/s between the first and the last send"),
])
def test_rates_are_shown_with_sensible_precision(requested: float | None, sent: int, span_s: float,
                                                 line: str) -> None:
    stats = SendStats(sent=sent, acked=sent, started=0.0, first_send=0.0, last_send=span_s, finished=span_s)
    summary = build_summary(run_id="r1", broker="b:1", topic="t", mode="continuous",
                            requested_rate_per_min=requested, stats=stats, follow=None)
    assert line in render_text(summary).splitlines()


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "n/a"), (0.0, "0 ms"), (0.3504, "350 ms"), (12.34, "12.3 s"), (59.9, "59.9 s"), (59.97, "1 min 00 s"),
    (425.4, "7 min 05 s"), (3599.6, "1 h 00 min"), (14_743.0, "4 h 06 min"), (86_399.0, "1 d 00 h"),
    (183_600.0, "2 d 03 h"),
])
def test_durations_read_like_durations(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


def test_follow_lead_times_are_human_durations() -> None:
    stats = SendStats(sent=2, acked=2, started=0.0, first_send=0.0, last_send=0.001, finished=0.1)
    stats.sent_wall.update({1: 1000.0, 2: 1000.0})
    result = FollowResult(finished={1: Finish("completed", 1012.34, 14_743.0), 2: Finish("scrapped", 1002.0, 5400.0)})
    summary = build_summary(run_id="r1", broker="b:1", topic="t", mode="batch", requested_rate_per_min=None,
                            stats=stats, follow=result)
    assert summary["follow"]["sim_lead_time_s"]["max"] == 14_743.0  # JSON keeps seconds
    lines = render_text(summary).splitlines()
    assert "followed 2 lots: 1 completed, 1 scrapped, 0 dead-lettered, 0 not finished" in lines
    assert "lead time (send → finished event): p50 2.0 s, p95 12.3 s, max 12.3 s" in lines
    assert "simulated lead time: p50 1 h 30 min, p95 4 h 06 min, max 4 h 06 min" in lines


def test_counts_are_said_with_the_noun_in_the_right_number() -> None:
    assert [count_of(n, "lot") for n in (0, 1, 2, 1200)] == ["0 lots", "1 lot", "2 lots", "1,200 lots"]
    assert count_of(1, "malformed message") == "1 malformed message"
