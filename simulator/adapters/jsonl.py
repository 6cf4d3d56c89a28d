"""Writing wire messages to a JSON Lines file: one ``{"topic","key","headers","value"}`` per line.

``value`` is the message's JSON embedded as is (not re-encoded), so the file shows exactly the
bytes a broker would receive.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import IO

import orjson

from simulator.formats import Format, WireMessage
from simulator.model.records import Record


class JsonlWriter:
    def __init__(self, path: Path, fmt: Format) -> None:
        self.path = path
        self.format = fmt
        self.messages = 0
        self._file: IO[bytes] | None = None

    def __enter__(self) -> JsonlWriter:
        self._file = self.path.open("wb", buffering=1 << 20)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write_records(self, records: list[Record]) -> None:
        assert self._file is not None, "open the writer first"
        lines = [line(m) for r in records for m in self.format.encode(r)]
        self.messages += len(lines)
        self._file.write(b"".join(lines))


def line(message: WireMessage) -> bytes:
    return orjson.dumps({
        "topic": message.topic,
        "key": message.key.decode(),
        "headers": {k: v.decode() for k, v in message.headers},
        "value": orjson.Fragment(message.value),
    }) + b"\n"
