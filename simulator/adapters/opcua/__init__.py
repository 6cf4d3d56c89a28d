"""The OPC UA server (``opcua.enabled``): the plant's machines as OPC UA objects, their values
written from the model's records, their alarms as events, the runtime commands as methods.

Only :mod:`simulator.adapters.opcua.server` imports the OPC UA library (``asyncua``); the service
imports it only when the server is enabled.
"""
