"""The programs: each puts the engine (:mod:`simulator.runtime`), the model and the adapters
together into something a user runs.

- :mod:`~simulator.programs.service` — ``factorysim run``: the live service (Kafka in and out,
  MQTT targets, HTTP, the journal and snapshots); :mod:`~simulator.programs.service_main` runs it
  in the foreground, :mod:`~simulator.programs.demo` adds the demo screen and the order feed;
- :mod:`~simulator.programs.bridge` — ``factorysim bridge``: Kafka telemetry and lot events to MQTT;
- :mod:`~simulator.programs.offline` — ``factorysim simulate``: a run at full speed to files.

Programs import the engine and the adapters; neither imports a program
(tests/test_import_graph.py checks it)."""
