"""Contracts of every message factorysim sends or accepts: JSON Schemas made from the definitions
the wire formats encode with, and the AsyncAPI document of a configuration.

- :mod:`~simulator.contracts.schema`: the schema building blocks (strict objects, nullable values);
- :mod:`~simulator.contracts.coffeemek`, :mod:`~simulator.contracts.spaceship`,
  :mod:`~simulator.contracts.enms`, :mod:`~simulator.contracts.uns`: each wire format's messages;
- :mod:`~simulator.contracts.orders`, :mod:`~simulator.contracts.commands`,
  :mod:`~simulator.contracts.dead_letters`: what the service takes in, and what it refuses;
- :mod:`~simulator.contracts.registry`: the MQTT formats' contracts by format name;
- :mod:`~simulator.contracts.asyncapi`: the AsyncAPI 3.0 document;
- :mod:`~simulator.contracts.catalogue`: every message's schema as a draft 2020-12 file.
"""
