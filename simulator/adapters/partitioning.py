"""Where Kafka's default partitioner puts a key: ``murmur2(key) & 0x7fffffff`` modulo the number of
partitions (the Java client's, librdkafka's ``murmur2_random`` and aiokafka's choice), so records
keyed by a machine or a lot land where every other Kafka client would put them.

The hash is the same as ``aiokafka.partitioner.murmur2`` (pure Python there too), computed on
whole 32-bit little-endian words at once: about three times faster, which matters when every
lot code is a new key.
"""

from __future__ import annotations

import functools
import struct

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
_WORDS = [struct.Struct(f"<{n}I") for n in range(64)]  # keys of up to 255 bytes without building one


def murmur2(data: bytes) -> int:
    length = len(data)
    h = _SEED ^ length
    words = length >> 2
    unpack = _WORDS[words].unpack_from if words < 64 else struct.Struct(f"<{words}I").unpack_from
    for k in unpack(data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = (((h * _M) & _MASK) ^ ((k * _M) & _MASK))
    tail = length & 3
    if tail:
        rest = data[length - tail:]
        if tail == 3:
            h ^= rest[2] << 16
        if tail >= 2:
            h ^= rest[1] << 8
        h = ((h ^ rest[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


@functools.lru_cache(maxsize=100_000)  # keys are machine ids (few, repeated) and lot codes (~10 events each)
def key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_of(key: bytes, partitions: int) -> int:
    """The index (0-based, into the sorted partition ids) the default partitioner picks for ``key``."""
    return key_hash(key) % partitions
