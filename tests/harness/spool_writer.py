"""A process that fills a durable spool until it is killed (tests/test_spool.py kills it with SIGKILL):
``python spool_writer.py PATH [--deliver]``.

It opens the spool at PATH, prints ``open``, then puts messages 0, 1, 2, … (the value is the
number), a few per event-loop turn, and prints ``handed N`` when message N is handed over (its
``on_done``: committed to the file).  With ``--deliver`` a second task takes the messages and calls
``done`` for each, printing ``delivered N`` first, so the spool deletes rows while it is filled; each
taken batch is done in reverse order (acknowledgements out of order).
Every line is flushed at once: a line the parent reads happened before the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from simulator.adapters.delivery.spool import SpoolQueue
from simulator.formats import WireMessage
from simulator.model.records import Record

PER_TURN = 40


def no_records(record: Record) -> list[WireMessage]:
    raise AssertionError("only messages are put")


def report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def deliver(spool: SpoolQueue) -> None:
    while True:
        for taken in reversed(await spool.take(100)):
            report(f"delivered {int(taken.messages[0].value)}")
            taken.done()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--deliver", action="store_true")
    args = parser.parse_args()
    spool = SpoolQueue(args.path, max_bytes=1 << 30, policy="block", encode=no_records)
    spool.open()
    report("open")
    delivering = asyncio.get_running_loop().create_task(deliver(spool)) if args.deliver else None
    number = 0
    while True:
        for _ in range(PER_TURN):
            spool.put([WireMessage("spool/test", b"", (), str(number).encode())],
                      lambda number=number: report(f"handed {number}"))
            number += 1
        await asyncio.sleep(0)
        if delivering is not None and delivering.done():
            delivering.result()


if __name__ == "__main__":
    asyncio.run(main())
