"""Independent random streams per entity, derived from the run seed and the entity id.

Never the global ``random`` state: each stream is its own ``random.Random``.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *key: str) -> int:
    """A 64-bit seed for ``key`` under the run ``seed``; stable across processes and versions."""
    material = "\x1f".join((str(seed), *key)).encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def stream(seed: int, *key: str) -> random.Random:
    """The random stream of one entity/purpose, e.g. ``stream(seed, "machine", id, "blocks")``."""
    return random.Random(derive_seed(seed, *key))
