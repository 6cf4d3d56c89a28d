"""Delivery of records to the MQTT targets and HTTP sinks: the outgoing queue (memory or a durable
spool), delivery faults and outages on purpose, and the sender loop that puts them together
(:mod:`simulator.adapters.delivery.target`)."""
