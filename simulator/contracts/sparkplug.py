"""The ``sparkplug`` format's messages (:mod:`simulator.formats.sparkplug`): Sparkplug B births,
data, deaths and commands of one edge node per target.

Payloads are protobuf, so each message carries :data:`PAYLOAD_PROTO` (the part of the Sparkplug B
``Payload`` the encoder writes and the edge node reads, field numbers as the specification has
them) in ``payload_format`` protobuf 2.  Which metrics a device has — names, aliases, datatypes —
comes from the encoder's own device table (:class:`~simulator.formats.sparkplug.DeviceTable`),
summarised per machine type in the messages' summaries.  The NDEATH is the target's Last Will
(:func:`last_will`), in place of the availability topic.
"""

from __future__ import annotations

from typing import Any

from simulator.config.mqtt import MqttTarget
from simulator.config.schema import Config
from simulator.contracts.model import Message, TopicMessages, parameter
from simulator.formats import sparkplug as wire
from simulator.formats.sparkplug_wire import DATATYPE_NAMES

FORMAT = "sparkplug"
PAYLOAD_FORMAT = "application/vnd.google.protobuf;version=2"
CONTENT_TYPE = "application/x-protobuf"
PAYLOAD_PROTO = """syntax = "proto2";
package org.eclipse.tahu.protobuf;
// Sparkplug B payload: the fields factorysim writes and reads (a reader skips the others)
message Payload {
  message Metric {
    optional string name = 1;        // births, and commands by name
    optional uint64 alias = 2;       // every metric has one; data messages carry it alone
    optional uint64 timestamp = 3;   // ms since the Unix epoch (simulated instant)
    optional uint32 datatype = 4;    // births: 4 Int64, 10 Double, 11 Boolean, 12 String
    optional bool is_null = 7;       // a value not known yet
    oneof value {
      uint32 int_value = 10;
      uint64 long_value = 11;
      float float_value = 12;
      double double_value = 13;
      bool boolean_value = 14;
      string string_value = 15;
    }
  }
  optional uint64 timestamp = 1;
  repeated Metric metrics = 2;
  optional uint64 seq = 3;           // 0..255 per edge node, births included; absent in NDEATH
}
"""


def _message(name: str, title: str, summary: str, records: tuple[Any, ...]) -> Message:
    return Message(f"sparkplug.{name}", title, summary, PAYLOAD_PROTO, content_type=CONTENT_TYPE,
                   records=records, payload_format=PAYLOAD_FORMAT)


def device_metrics(config: Config) -> dict[str, list[str]]:
    """Machine type -> its devices' metrics as "name (Datatype)", in alias order (the encoder's table)."""
    table = wire.DeviceTable(config)
    found: dict[str, list[str]] = {}
    for device in table.devices.values():
        found.setdefault(device.machine_type, [
            f"{m.name} ({DATATYPE_NAMES.get(m.datatype, m.datatype)})" for m in device.metrics])
    return found


def last_will(config: Config, target: MqttTarget) -> dict[str, Any]:
    """The MQTT Last Will of a sparkplug target: the edge node's NDEATH with the connection's bdSeq."""
    table = wire.DeviceTable(config)
    return {"topic": wire.topic(table.group, "NDEATH", table.edge_node), "qos": 1, "retain": False,
            "message": "Sparkplug B payload: metric bdSeq (Int64) of this connection"}


def mqtt_messages(config: Config, target: MqttTarget) -> list[TopicMessages]:
    table = wire.DeviceTable(config)
    group, node = table.group, table.edge_node
    metrics = "; ".join(f"{mtype}: {', '.join(names)}" for mtype, names in device_metrics(config).items())
    device = {"device": parameter("the device: a machine id", (d.device_id for d in table.devices.values()))}
    every = ("cycle", "sample", "lot_event")
    node_metrics = ", ".join(f"{name} ({DATATYPE_NAMES[datatype]}, alias {alias})"
                             for name, alias, datatype in wire.NODE_METRICS)
    nbirth = _message("NBIRTH", "Node birth", f"On every connection and rebirth, seq 0: {node_metrics}", every)
    ndeath = _message("NDEATH", "Node death", f"The Last Will of each connection, and sent on a clean stop: "
                      f"{wire.BD_SEQ} of the NBIRTH it ends", every)
    dbirth = _message("DBIRTH", "Device birth", "After NBIRTH, one per machine: every metric with name, alias, "
                      f"datatype and current value (null before the first record). Metrics by machine type: "
                      f"{metrics}", every)
    ddata = _message("DDATA", "Device data", "The metrics a record changed, by alias, with the record's "
                     "timestamp (report by exception)", every)
    ncmd = _message("NCMD", "Node command", f"{wire.REBIRTH} = true: publish the births again", ())
    commands = ", ".join(name for name, _, _, _ in wire.COMMANDS.values())
    dcmd = _message("DCMD", "Device command", f"Writes of {commands} (by name or alias): runtime commands on "
                    "the machine (true or a non-empty text acts; false or \"\" does nothing)", ())
    return [
        TopicMessages(wire.topic(group, "NBIRTH", node), {}, (nbirth,), "node birth", qos=0),
        TopicMessages(wire.topic(group, "NDEATH", node), {}, (ndeath,), "node death (Last Will)", qos=1),
        TopicMessages(wire.topic(group, "DBIRTH", node, "{device}"), device, (dbirth,), "device births", qos=0),
        TopicMessages(wire.topic(group, "DDATA", node, "{device}"), device, (ddata,), "device data"),
        TopicMessages(wire.topic(group, "NCMD", node), {}, (ncmd,), "node commands", action="receive", qos=1),
        TopicMessages(wire.topic(group, "DCMD", node, "{device}"), device, (dcmd,), "device commands",
                      action="receive", qos=1),
    ]
