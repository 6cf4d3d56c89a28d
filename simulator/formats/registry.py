"""The wire formats by name, their topic templates, and what the formats share.

``build_format(name, config, seed)`` builds one of :data:`simulator.config.mqtt.FORMATS` for an MQTT target
(``coffeemek`` there publishes to its Kafka topic names with ``/`` for ``.``).  Every format has a
default topic template with named placeholders; a target's ``topic_template`` replaces it, and an
unknown placeholder is a ``ValueError`` naming the allowed ones (:func:`check_topic_template`
validates a template without building the format).  Topic levels that come out empty (a
``{machine}`` level on a message about an order) are dropped.

What the formats share lives in :mod:`simulator.formats.common`.
"""

from __future__ import annotations

from simulator.config.mqtt import FORMATS
from simulator.config.schema import Config
from simulator.formats import Format, coffeemek, enms, spaceship, sparkplug, uns
from simulator.formats.common import TopicTemplate


# --- building formats by name ------------------------------------------------------------------
def build_format(name: str, config: Config, seed: int, *, run_id: str = "",
                 topic_template: str | None = None) -> Format:
    """The MQTT wire format ``name``; ``run_id`` (with the seed) makes the ids of the run's records."""
    if name == "coffeemek":
        return coffeemek.CoffeeMekFormat(config, seed, run_id,
                                         topic_template=topic_template or coffeemek.MQTT_TOPIC_TEMPLATE)
    if name == "spaceship":
        return spaceship.SpaceshipFormat(config, seed, run_id, topic_template=topic_template)
    if name == "enms":
        return enms.EnmsFormat(config, seed, run_id, topic_template=topic_template)
    if name == "uns":
        return uns.UnsFormat(config, seed, run_id, topic_template=topic_template)
    if name == "sparkplug":
        return sparkplug.SparkplugFormat(config, seed, run_id, topic_template=topic_template)
    raise ValueError(f"unknown format {name!r}; allowed: {', '.join(FORMATS)}")


def template_spec(name: str) -> tuple[str, tuple[str, ...]]:
    """(default topic template, allowed placeholders) of format ``name`` on MQTT."""
    if name == "sparkplug":
        raise ValueError("format 'sparkplug' takes no topic template: Sparkplug fixes its topics "
                         "(set formats.sparkplug.group_id and edge_node_id)")
    specs = {
        "coffeemek": (coffeemek.MQTT_TOPIC_TEMPLATE, coffeemek.PLACEHOLDERS),
        "spaceship": (spaceship.MQTT_TOPIC_TEMPLATE, spaceship.PLACEHOLDERS),
        "enms": (enms.MQTT_TOPIC_TEMPLATE, enms.PLACEHOLDERS),
        "uns": (uns.MQTT_TOPIC_TEMPLATE, uns.PLACEHOLDERS),
    }
    if name not in specs:
        raise ValueError(f"unknown format {name!r}; allowed: {', '.join(FORMATS)}")
    return specs[name]


def check_topic_template(name: str, template: str) -> None:
    """Raise ValueError if ``template`` is not a valid topic template of format ``name``."""
    TopicTemplate(name, template, template_spec(name)[1])
