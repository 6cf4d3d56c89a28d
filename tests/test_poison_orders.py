"""No single message stops a partition: huge, hostile and unreadable orders on a real broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import RecordMetadata

from simulator.adapters.dead_letters import SMALLER_LETTER_BYTES, letter_budget
from simulator.adapters.kafka_options import orders_fetch_options, producer_options
from simulator.adapters.kafka_publisher import KafkaPublisher
from simulator.adapters.order_intake import too_large_at
from simulator.config.kafka import Consumer, Producer
from simulator.config.schema import Config
from simulator.errors import OrderRejected
from simulator.formats import WireMessage
from simulator.formats.coffeemek import CoffeeMekFormat
from simulator.io_metrics import IoMetrics
from simulator.orders import OrderParser
from simulator.runtime.outbox import Outbox

from harness.service import Reader, embedded_broker_process, finished, orders, running_service, service_config, wait_for

Headers = list[tuple[str, bytes | None]]


# --- helpers -----------------------------------------------------------------------------------------
def order_of_size(code: str, size: int) -> bytes:
    """A well-formed order of exactly ``size`` bytes (the customer name pads it)."""
    body = {"lot_code": code, "quantity": 5, "location": "Italia", "customer": ""}
    body["customer"] = "x" * (size - len(orjson.dumps(body)))
    raw = orjson.dumps(body)
    assert len(raw) == size
    return raw


async def big_producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=0,
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    return producer


async def send_all(producer: AIOKafkaProducer, topic: str,
                   records: list[tuple[bytes | None, bytes | None, Headers]]) -> list[RecordMetadata]:
    """Send in order, each acknowledged before the next (same key = same partition, in this order)."""
    sent = []
    for key, value, headers in records:
        sent.append(await (await producer.send(topic, value, key=key, headers=headers)))  # type: ignore[arg-type]
    return sent


async def send_undecodable(producer: AIOKafkaProducer, topic: str, partition: int, after: bytes) -> int:
    """One record batch on ``partition``: a record whose header key is not UTF-8 (what a librdkafka
    client may send), then ``after``; returns the base offset."""
    batch = producer.create_batch()
    batch.append(timestamp=None, key=b"bad", value=b"undecodable header key", headers=[("ZZZZ", b"v")])
    batch.append(timestamp=None, key=b"bad", value=after, headers=[])
    buffer = batch._build()
    at = bytes(buffer).index(b"ZZZZ")
    buffer[at:at + 4] = b"\xff\xfe\xfd\xfc"
    struct.pack_into(">I", buffer, 17, calc_crc32c(bytes(buffer[21:])))  # record batch v2: CRC of the rest
    metadata = await (await producer.send_batch(batch, topic, partition=partition))
    return int(metadata.offset)


async def create_topic(bootstrap: str, topic: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()


async def committed(bootstrap: str, group_id: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(tp)
        return offset
    finally:
        await consumer.stop()


def live_task(name: str) -> asyncio.Task[Any]:
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == name]
    assert len(tasks) == 1, f"one task named {name!r} expected, found {len(tasks)}"
    assert not tasks[0].done(), f"task {name!r} ended"
    return tasks[0]


def letters_by_reason(letters: list[Any], reason: str) -> list[Any]:
    return [m for m in letters if dict(m.headers)["dlq.reason"] == reason.encode()]


# --- options and the shape of aiokafka's errors ----------------------------------------------------------
def test_the_producer_and_consumer_limits_reach_aiokafka() -> None:
    assert producer_options(Producer())["max_request_size"] == 1_048_576
    assert producer_options(Producer(max_request_bytes=4_000_000))["max_request_size"] == 4_000_000
    assert orders_fetch_options(Consumer()) == {"max_partition_fetch_bytes": 2 * 1024 * 1024}
    assert orders_fetch_options(Consumer(max_order_bytes=4_000_000))["max_partition_fetch_bytes"] == 8_000_000
    with pytest.raises(ValueError, match="max_request_bytes"):
        Producer(max_request_bytes=1000)
    with pytest.raises(ValueError, match="max_partition_fetch_bytes"):
        Consumer(max_partition_fetch_bytes=10**12)


def test_where_a_record_too_large_to_fetch_was() -> None:
    """aiokafka's fetcher raises it with the partition and offset it moved past (fetcher.py)."""
    tp = TopicPartition("orders", 2)
    exc = RecordTooLargeError("There are some messages at [Partition=Offset]: %s=%s whose size is larger than "
                              "the fetch size %s", tp, 41, 1_048_576)
    assert too_large_at(exc) == (tp, 41, 1_048_576)
    assert too_large_at(RecordTooLargeError("something else")) is None


# --- the parser on nesting -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b"[" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
])
def test_deep_nesting_is_an_order_rejected(raw: bytes) -> None:
    parser = OrderParser(lambda name: "Italia" if name == "Italia" else None, max_bytes=len(raw))
    with pytest.raises(OrderRejected) as caught:
        parser.parse(raw)
    assert caught.value.reason == "not_json"


DEEP = "[" * 1020 + "]" * 1020  # within orjson's depth limit, beyond what repr or == can recurse into


def json_object(**fields: str) -> str:
    """A JSON object from field names and their JSON text."""
    return "{" + ", ".join(f'"{name}": {text}' for name, text in fields.items()) + "}"


ORDER = {"lot_code": '"X"', "quantity": "1", "location": '"Italia"'}


@pytest.mark.parametrize(("body", "reason"), [
    (json_object(**{**ORDER, "quantity": DEEP}), "invalid_field"),
    (json_object(**{**ORDER, "location": DEEP}), "invalid_field"),
    (json_object(**ORDER, timestamp=DEEP), "invalid_field"),
    (json_object(**ORDER, priority=DEEP), "unknown_priority"),
    (json_object(**{**ORDER, "lot_code": DEEP}, codice_lotto="[" * 1020 + "1" + "]" * 1020), "ambiguous_dialect"),
])
def test_deeply_nested_fields_are_rejected_not_a_recursion_error(body: str, reason: str) -> None:
    parser = OrderParser(lambda name: "Italia" if name == "Italia" else None, max_bytes=1 << 20)
    with pytest.raises(OrderRejected) as caught:
        parser.parse(body.encode())
    assert caught.value.reason == reason
    assert len(caught.value.detail) < 200


# --- the service on the real broker ----------------------------------------------------------------------
async def test_huge_orders_are_dead_lettered_and_the_orders_behind_them_complete(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"simulation.speed": "max"})
    topics = config.kafka.topics
    valid = orders(60, unique)
    huge = {2 * 1024 * 1024: order_of_size(f"{unique}-2MiB", 2 * 1024 * 1024),
            1_048_500: order_of_size(f"{unique}-1048500", 1_048_500)}
    values = [*valid[:20], huge[2 * 1024 * 1024], *valid[20:40], huge[1_048_500], *valid[40:]]
    async with running_service(config) as service:
        producer = await big_producer(kafka_bootstrap)
        try:
            sent = await send_all(producer, topics.orders, [(b"same-partition", v, []) for v in values])
        finally:
            await producer.stop()
        assert len({m.partition for m in sent}) == 1
        async with Reader(kafka_bootstrap, [topics.events, topics.dead_letter]) as reader:
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == 60 and len(c.of(topics.dead_letter)) == 2,
                90, "60 finished lots and 2 dead letters")
        live_task("service")
        live_task("order-intake")
        assert service.healthy
        assert finished(collected.json(topics.events)) == {f"{unique}-{i}" for i in range(60)}
        await wait_for(lambda: service.intake is not None and service.intake.in_flight == 0, 10, "offsets done")
    letters = collected.of(topics.dead_letter)
    by_offset = {m.offset: m for m in sent}
    for letter in letters:
        headers = dict(letter.headers)
        origin = by_offset[int(headers["dlq.offset"])]
        original = values[sent.index(origin)]
        assert len(original) in huge
        assert headers["dlq.reason"] == b"oversized"
        assert headers["dlq.truncated"] == b"true"
        assert headers["dlq.original_size"] == str(len(original)).encode()
        assert headers["dlq.original_sha256"] == hashlib.sha256(original).hexdigest().encode()
        assert original.startswith(letter.value)
        assert len(letter.value) > 1_000_000  # as much as fits the producer's request size
        assert letter.key == b"same-partition"
    tp = TopicPartition(topics.orders, sent[0].partition)
    assert await committed(kafka_bootstrap, config.kafka.consumer.group_id, tp) == sent[-1].offset + 1


async def test_hostile_records_are_dead_lettered_and_valid_orders_complete(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"kafka.consumer.max_order_bytes": 300_000})
    topics = config.kafka.topics
    valid = orders(8, unique, seed=3)
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = json_object(**{**ORDER, "quantity": DEEP}).encode()
    hostile: list[tuple[tuple[bytes | None, bytes | None, Headers], str]] = [
        ((b"only-a-key", None, []), "empty"),
        ((b"K" * (2 * 1024 * 1024), b"not json", []), "not_json"),
        ((b"h", b"{}", [(f"h{i}", b"x" * 20_000) for i in range(60)] + [("none", None)]), "missing_field"),
        ((b"d", deep, []), "not_json"),
        ((b"n", nested, [("trace", None)]), "invalid_field"),
    ]
    records: list[tuple[bytes | None, bytes | None, Headers]] = [(None, valid[0], [])]  # no key: fine
    for (record, _), good in zip(hostile, valid[1:], strict=False):
        records += [record, (b"v", good, [])]
    records += [(b"v", good, []) for good in valid[1 + len(hostile):]]
    async with running_service(config) as service:
        producer = await big_producer(kafka_bootstrap)
        try:
            await send_all(producer, topics.orders, records)
            nothing = producer.create_batch()  # neither key nor value (producer.send refuses to make one)
            nothing.append(timestamp=None, key=None, value=None, headers=[])
            await (await producer.send_batch(nothing, topics.orders, partition=0))
        finally:
            await producer.stop()
        async with Reader(kafka_bootstrap, [topics.events, topics.dead_letter]) as reader:
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == 8 and len(c.of(topics.dead_letter)) == 6,
                90, "8 finished lots and 6 dead letters")
        live_task("order-intake")
        assert service.healthy
    letters = collected.of(topics.dead_letter)
    assert sorted(dict(m.headers)["dlq.reason"].decode() for m in letters) == sorted([*(r for _, r in hostile),
                                                                                      "empty"])
    budget = letter_budget(config.kafka.producer.max_request_bytes)
    for letter in letters:
        assert len(letter.key) + len(letter.value) + sum(len(k) + len(v or b"") for k, v in letter.headers) <= budget
    [huge_key] = [m for m in letters if dict(m.headers).get("dlq.key_truncated") == b"true"]
    assert dict(huge_key.headers)["dlq.original_key_size"] == str(2 * 1024 * 1024).encode()
    assert huge_key.value == b"not json"
    [many_headers] = letters_by_reason(letters, "missing_field")
    assert int(dict(many_headers.headers)["dlq.headers_dropped"]) > 0
    assert ("none", None) in many_headers.headers
    assert many_headers.value == b"{}"
    [deep_letter] = [m for m in letters if dict(m.headers)["dlq.reason"] == b"not_json" and m.key == b"d"]
    assert deep_letter.value == deep  # fits: the original bytes
    [nested_letter] = letters_by_reason(letters, "invalid_field")
    assert ("trace", None) in nested_letter.headers


async def test_a_record_aiokafka_cannot_decode_is_dead_lettered_and_nothing_else_is_lost(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    config = service_config(default_yaml, kafka_bootstrap, unique)
    topics = config.kafka.topics
    await create_topic(kafka_bootstrap, topics.orders, partitions=3)
    valid = orders(41, unique, seed=4)
    producer = await big_producer(kafka_bootstrap)
    try:  # all of it waits in the topic: the first fetch takes the good records of every partition with it
        before = await send_all(producer, topics.orders, [(f"k{i}".encode(), v, []) for i, v in enumerate(valid[:30])])
        bad_partition = before[-1].partition
        bad_offset = await send_undecodable(producer, topics.orders, bad_partition, after=valid[30])
        after = await send_all(producer, topics.orders, [(b"k29", v, []) for v in valid[31:]])
    finally:
        await producer.stop()
    assert {m.partition for m in after} == {bad_partition}
    async with running_service(config) as service:
        async with Reader(kafka_bootstrap, [topics.events, topics.dead_letter]) as reader:
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == 40 and len(c.of(topics.dead_letter)) == 2,
                90, "40 finished lots and 2 dead letters")
        live_task("order-intake")
        assert service.healthy
        await wait_for(lambda: service.intake is not None and service.intake.in_flight == 0, 10, "offsets done")
    # the record after the undecodable one in its batch cannot be decoded either (aiokafka decodes
    # a batch from its start): both are dead-lettered with where they were
    assert finished(collected.json(topics.events)) == {f"{unique}-{i}" for i in range(41)} - {f"{unique}-30"}
    letters = collected.of(topics.dead_letter)
    assert sorted(int(dict(m.headers)["dlq.offset"]) for m in letters) == [bad_offset, bad_offset + 1]
    for letter in letters:
        headers = dict(letter.headers)
        assert headers["dlq.reason"] == b"unreadable"
        assert headers["dlq.partition"] == str(bad_partition).encode()
        assert headers["dlq.topic"] == topics.orders.encode()
        assert b"UnicodeDecodeError" in headers["dlq.detail"]
        assert letter.value == b""
    ends = Counter({m.partition: m.offset + 1 for m in sorted([*before, *after], key=lambda m: m.offset)})
    ends[bad_partition] = max(ends[bad_partition], bad_offset + 2)
    for partition, end in ends.items():  # every partition committed to its end: nothing skipped, nothing stuck
        tp = TopicPartition(topics.orders, partition)
        assert await committed(kafka_bootstrap, config.kafka.consumer.group_id, tp) == end


# --- refusals ------------------------------------------------------------------------------------------------
async def test_the_publisher_hands_a_refusal_to_on_refused(default_config: Config, kafka_bootstrap: str,
                                                           unique: str) -> None:
    topic = f"{unique}.refused"
    await create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, max_request_size=70_000)
    await producer.start()
    try:
        publisher = KafkaPublisher(producer, Outbox(10), CoffeeMekFormat(default_config, 1), IoMetrics())
        refusals: list[BaseException] = []
        delivered: list[str] = []
        big = WireMessage(topic, b"k", (), b"x" * 100_000)
        await publisher.submit(big, lambda: delivered.append("big"), lambda exc: refusals.append(exc) or True)
        await publisher.submit(WireMessage(topic, b"k", (), b"small"), lambda: delivered.append("small"),
                               lambda exc: refusals.append(exc) or True)
        await publisher.flush()
        assert [type(e) for e in refusals] == [MessageSizeTooLargeError]
        assert delivered == ["small"]
        assert publisher.fatal_error is None
        with pytest.raises(MessageSizeTooLargeError):  # declined, or no on_refused: as before
            await publisher.submit(big, None, lambda exc: False)
        with pytest.raises(MessageSizeTooLargeError):
            await publisher.submit(big)
    finally:
        await producer.stop()


async def test_a_letter_refused_as_too_large_is_sent_again_smaller(default_yaml: dict[str, Any], kafka_bootstrap: str,
                                                                   unique: str) -> None:
    """The letter is built for a larger request than the producer takes (as when the broker's limit
    is below ours): aiokafka refuses it, the intake sends a 64 KiB prefix instead."""
    config = service_config(default_yaml, kafka_bootstrap, unique, **{"kafka.consumer.max_order_bytes": 100_000})
    topics = config.kafka.topics
    big = order_of_size(f"{unique}-big", 1_500_000)
    valid = orders(3, unique, seed=5)
    async with running_service(config) as service:
        assert service.intake is not None
        service.intake.letter_attempts = ((4 * 1024 * 1024, True), *service.intake.letter_attempts[1:])
        producer = await big_producer(kafka_bootstrap)
        try:
            sent = await send_all(producer, topics.orders, [(b"p", v, []) for v in [valid[0], big, *valid[1:]]])
        finally:
            await producer.stop()
        async with Reader(kafka_bootstrap, [topics.events, topics.dead_letter]) as reader:
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == 3 and len(c.of(topics.dead_letter)) == 1,
                60, "3 finished lots and 1 dead letter")
        assert service.healthy
        assert service.publisher is not None and service.publisher.fatal_error is None
        await wait_for(lambda: service.intake is not None and service.intake.in_flight == 0, 10, "offsets done")
    [letter] = collected.of(topics.dead_letter)
    headers = dict(letter.headers)
    assert headers["dlq.reason"] == b"oversized"
    assert headers["dlq.original_size"] == b"1500000"
    assert headers["dlq.original_sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert SMALLER_LETTER_BYTES - 2048 < len(letter.value) < SMALLER_LETTER_BYTES
    assert big.startswith(letter.value)
    tp = TopicPartition(topics.orders, sent[0].partition)
    assert await committed(kafka_bootstrap, config.kafka.consumer.group_id, tp) == sent[-1].offset + 1


async def test_a_letter_the_broker_refuses_as_too_large_goes_without_its_value(
        default_yaml: dict[str, Any], kafka_bootstrap: str, unique: str) -> None:
    """A dead-letter topic whose max.message.bytes is below every attempt but the last."""
    config = service_config(default_yaml, kafka_bootstrap, unique)
    topics = config.kafka.topics
    await create_topic(kafka_bootstrap, topics.dead_letter, configs={"max.message.bytes": "20000"})
    probe = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await probe.start()
    try:
        await (await probe.send(topics.dead_letter, b"p" * 30_000, key=b"probe"))
        enforced = False
    except MessageSizeTooLargeError:
        enforced = True
    finally:
        await probe.stop()
    if not enforced:
        pytest.skip("the broker does not enforce a topic's max.message.bytes (tansu 0.6 stores it, accepts anything)")
    bad = b"not json " * 6000  # 54 kB: dead-lettered whole at first, then as a 64 KiB prefix (the same)
    async with running_service(config) as service:
        producer = await big_producer(kafka_bootstrap)
        try:
            await send_all(producer, topics.orders, [(b"p", bad, []), (b"p", orders(1, unique)[0], [])])
        finally:
            await producer.stop()
        async with Reader(kafka_bootstrap, [topics.events, topics.dead_letter]) as reader:
            collected = await reader.read_until(
                lambda c: len(finished(c.json(topics.events))) == 1 and len(c.of(topics.dead_letter)) == 1,
                60, "1 finished lot and 1 dead letter")
        assert service.healthy
    [letter] = collected.of(topics.dead_letter)
    headers = dict(letter.headers)
    assert (letter.value, headers["dlq.truncated"], headers["dlq.reason"]) == (b"", b"true", b"not_json")
    assert headers["dlq.original_sha256"] == hashlib.sha256(bad).hexdigest().encode()


# A tansu broker that validates the dead-letter topic against a JSON schema refuses every dead letter
# (no order is an object with "n"): a refusal that is not about size, fatal as before.
@pytest.fixture
def schema_broker(tmp_path: Path, unique: str) -> Iterator[str]:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    schema = {"type": "object", "properties": {"value": {"type": "object", "properties": {"n": {"type": "integer"}},
                                                         "required": ["n"]}}}
    (schemas / f"{unique}.dead_letter.json").write_text(json.dumps(schema), encoding="utf-8")
    # tansu reads file:///a/b as a/b under its working directory
    with embedded_broker_process("--schema-registry", f"file://{schemas}", cwd="/") as bootstrap:
        yield bootstrap


async def test_a_refusal_not_about_size_stays_fatal(default_yaml: dict[str, Any], schema_broker: str,
                                                    unique: str) -> None:
    config = service_config(default_yaml, schema_broker, unique)
    topics = config.kafka.topics
    async with running_service(config) as service:
        producer = await big_producer(schema_broker)
        try:
            sent = await send_all(producer, topics.orders, [(b"p", orders(1, unique)[0], []), (b"p", b"not json", [])])
        finally:
            await producer.stop()
        assert service.publisher is not None
        publisher = service.publisher
        await wait_for(lambda: publisher.fatal_error is not None, 30, "the refusal reported")
        assert topics.dead_letter in (publisher.fatal_error or "")
        assert not service.healthy
        await wait_for(lambda: service.sim.stats.completed + service.sim.stats.scrapped == 1, 30, "the valid lot")
    tp = TopicPartition(topics.orders, sent[0].partition)
    assert await committed(schema_broker, config.kafka.consumer.group_id, tp) == sent[1].offset  # not past it

