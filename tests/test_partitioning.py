"""Key placement: the same partition as Kafka's default partitioner (aiokafka's murmur2)."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from simulator.adapters import partitioning


@given(st.binary(max_size=400))
def test_the_hash_is_kafkas_murmur2(key: bytes) -> None:
    assert partitioning.murmur2(key) == murmur2(key)


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_the_default_partitioner_puts_it(key: bytes, partitions: int) -> None:
    ids = list(range(partitions))
    assert ids[partitioning.partition_of(key, partitions)] == DefaultPartitioner()(key, ids, ids)


def test_known_values_of_the_java_client() -> None:
    # org.apache.kafka.common.utils.Utils.murmur2 (as ints): "21" -> -973932308, "foobar" -> -790332482
    assert partitioning.murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert partitioning.murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
