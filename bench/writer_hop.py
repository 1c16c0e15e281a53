"""What the writer task's wake-up costs per token: one stream's events appended to a `MemoryEventLog` and read
by a follower task (as every face reads them today), against the same events read in the appending task itself
(what writing straight from the stream task would cost). `python -m bench.writer_hop` prints CPU µs per token.
"""

from __future__ import annotations

import asyncio
import time

import uvloop

from sessions.events import Delta
from sessions.log import MemoryEventLog

N = 200_000
DATA = b'{"type":"stream.delta","text":"x"}'


async def through_a_follower() -> float:
    log = MemoryEventLog(max_events=N + 10, max_bytes=1 << 30)
    sent = 0

    async def follower() -> None:
        nonlocal sent
        async for batch in log.follow(0):
            for entry in batch:
                sent += len(entry.data)

    task = asyncio.create_task(follower())
    await asyncio.sleep(0)
    event = Delta("x")
    t0 = time.process_time()
    for _ in range(N):
        log.append(event, DATA)
        await asyncio.sleep(0)  # the stream task waits for its next upstream read
    spent = time.process_time() - t0
    log.close()
    await task
    return spent / N * 1e6


async def in_the_appending_task() -> float:
    log = MemoryEventLog(max_events=N + 10, max_bytes=1 << 30)
    sent = 0
    event = Delta("x")
    t0 = time.process_time()
    for i in range(N):
        log.append(event, DATA)
        for entry in log.since(i):
            sent += len(entry.data)
        await asyncio.sleep(0)
    return (time.process_time() - t0) / N * 1e6


def main() -> None:
    uvloop.install()
    for _ in range(3):
        hop, inline = asyncio.run(through_a_follower()), asyncio.run(in_the_appending_task())
        print(f"through a follower task {hop:.2f} µs/token, in the appending task {inline:.2f}: {hop - inline:.2f}")


if __name__ == "__main__":
    main()
