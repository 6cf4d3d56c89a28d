"""The few MQTT encoders the Mosquitto readiness probe and the fake broker share, and the loopback
address both listen on."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def encode_packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body
