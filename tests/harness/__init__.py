"""Test harness (not tests): import the module you need, e.g. ``from harness.collector import MqttCollector``
(``tests/`` is on ``sys.path`` under pytest).

- ``service``: the service in the test's event loop with a config per test, Kafka I/O, waits, the
  embedded broker in a process of its own.
- ``cli_process``: ``python -m simulator`` in a subprocess with a clean environment.
- ``http_fuzz``: the service in a child process for the HTTP property tests.
- ``mosquitto``: real Mosquitto brokers (a local process, or testcontainers).
- ``pki``: the test CA and certificates.
- ``collector``: ``MqttCollector``, a reconnecting MQTT subscriber that records every message.
- ``fake_broker``: ``ConnectCapture``, a recording fake MQTT server for client tests.
- ``mqtt_wire``: the MQTT encoders the last two share; ``dependencies``: fail in CI / skip elsewhere
  when a system tool is missing.

Free ports come from :mod:`simulator.net`.
"""
