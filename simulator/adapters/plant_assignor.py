"""Who owns which plant: the assignment of the plant inbox's partitions in the instances' group.

:class:`PlantAssignor` is the group's partition assignor (the group leader runs it at every
rebalance).  Each member says in its subscription who it is (instance id, HTTP address) and which
partitions it owned; the leader keeps every partition with its previous owner as long as that
owner stays within its fair share (plants move only when they must), and gives the others to the
members with the fewest.  The assignment each member gets carries the whole map (partition ->
owner's id and address), so any instance can say where a plant lives, as Kafka Streams tells its
instances where each partition's state is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

log = logging.getLogger(__name__)

_URL = re.compile(r"https?://[\x21-\x7e]{1,500}")  # printable ASCII, no spaces or line breaks


@dataclass(frozen=True, slots=True)
class Owner:
    instance: str
    url: str | None


class PlantAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """One per instance (it carries the instance's identity and its plants into the group)."""

    name = "factorysim-plants"
    version = 0

    def __init__(self, instance: str, url: str | None) -> None:
        self.instance = instance
        self.url = url
        self.owned: list[int] = []  # the inbox partitions of the latest assignment
        self.owners: dict[int, Owner] = {}  # partition -> its owner, as the latest assignment says
        self.generations = 0  # assignments received

    # -- every member -----------------------------------------------------------------------------
    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        data = {"instance": self.instance, "url": self.url, "owned": self.owned}
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), orjson.dumps(data))

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.owned = sorted(p for _, partitions in assignment.assignment for p in partitions)
        self.generations += 1
        try:
            owners = orjson.loads(assignment.user_data or b"{}")
            self.owners = {int(p): Owner(str(o["instance"])[:200], _url(o.get("url"))) for p, o in owners.items()}
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
            log.warning("the plant assignment does not say who owns the other plants")
            self.owners = {}

    # -- the group leader -----------------------------------------------------------------------------
    def assign(self, cluster: ClusterMetadata,
               members: Mapping[str, ConsumerProtocolMemberMetadata]) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for m in members.values() for t in m.subscription})
        if not members:
            return {}
        about = {member: _about(meta) for member, meta in members.items()}
        plan: dict[str, dict[str, list[int]]] = {member: {} for member in members}
        owners: dict[int, dict[str, Any]] = {}
        for topic in topics:
            partitions = sorted(cluster.partitions_for_topic(topic) or ())
            for member, owned in balance(partitions, {m: about[m]["owned"] for m in members}).items():
                plan[member][topic] = owned
                for partition in owned:
                    owners[partition] = {"instance": about[member]["instance"], "url": about[member]["url"]}
        user_data = orjson.dumps({str(p): o for p, o in sorted(owners.items())})
        return {member: ConsumerProtocolMemberAssignment(self.version, sorted(plan[member].items()), user_data)
                for member in members}


def _url(value: object) -> str | None:
    """An HTTP base URL as a member gave it, if it is one (it goes into a Location header)."""
    if isinstance(value, str) and _URL.fullmatch(value):
        return value
    return None


def _about(meta: ConsumerProtocolMemberMetadata) -> dict[str, Any]:
    try:
        data = orjson.loads(meta.user_data or b"{}")
        owned = [int(p) for p in data.get("owned", [])]
        return {"instance": str(data.get("instance", "?")), "url": data.get("url"), "owned": owned}
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return {"instance": "?", "url": None, "owned": []}


def balance(partitions: list[int], previous: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """``partitions`` spread over the members of ``previous`` (member -> partitions it owned):
    each keeps what it owned up to its fair share (the first ``len // members`` plus one for the
    first ``len % members`` members by name), the rest goes to the members with the fewest."""
    members = sorted(previous)
    base, extra = divmod(len(partitions), len(members))
    share = {m: base + (1 if i < extra else 0) for i, m in enumerate(members)}
    result: dict[str, list[int]] = {m: [] for m in members}
    free = set(partitions)
    for member in members:
        for partition in sorted(set(previous[member])):
            if partition in free and len(result[member]) < share[member]:
                result[member].append(partition)
                free.discard(partition)
    for partition in sorted(free):
        member = min(members, key=lambda m: (len(result[m]) - share[m], len(result[m]), m))
        result[member].append(partition)
    return {m: sorted(p) for m, p in result.items()}
