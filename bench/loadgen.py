"""A small wrk2-like HTTP load generator (asyncio + uvloop, raw HTTP/1.1 keep-alive connections).

``fixed_rate`` holds a constant request rate whatever the server does (open loop): request i is due at
start + i / rate and its latency counts from that due time, so a server that falls behind is charged
for the wait (no coordinated omission). ``saturate`` keeps C connections busy back to back (closed
loop) and counts what the server completes. Each request takes the next body of a list (distinct rows).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from itertools import cycle


@dataclass(frozen=True)
class LoadResult:
    label: str
    sent: int
    ok: int
    failed: int
    seconds: float
    latencies: tuple[float, ...]  # seconds, of the successful requests

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split(b" ", 2)[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _head(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()


async def _fixed_rate(host, port, path, bodies, rate, seconds, label, max_connections=64, grace=10.0) -> LoadResult:
    """At most ``max_connections`` open (as wrk2's fixed connections): a request due while all are busy
    waits for one, and that wait counts in its latency. Requests unanswered ``grace`` seconds after the
    last one was due count as failed: a server far behind the rate cannot stretch the run forever."""
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(max_connections):
        idle.put_nowait(Connection(host, port))
    latencies: list[float] = []
    failed = 0
    bodies_iter = cycle(bodies)

    async def one(due: float, body: bytes) -> None:
        nonlocal failed
        connection = await idle.get()
        try:
            status = await connection.request(_head(host, port, path, body), body)
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            connection.close()
            failed += 1
            idle.put_nowait(connection)
            return
        except asyncio.CancelledError:
            connection.close()
            raise
        if status == 200:
            latencies.append(loop.time() - due)
        else:
            failed += 1
        idle.put_nowait(connection)

    n = int(rate * seconds)
    started = loop.time()
    tasks = []
    for i in range(n):
        due = started + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(due, next(bodies_iter))))
    done, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    failed += len(late)
    elapsed = min(loop.time(), started + seconds + grace) - started
    while not idle.empty():
        idle.get_nowait().close()
    return LoadResult(label, n, len(latencies), failed, elapsed, tuple(latencies))


async def _saturate(host, port, path, bodies, connections, seconds, label) -> LoadResult:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failed = 0
    sent = 0
    bodies_iter = cycle(bodies)
    deadline = loop.time() + seconds

    async def client() -> None:
        nonlocal failed, sent
        connection = Connection(host, port)
        while loop.time() < deadline:
            body = next(bodies_iter)
            sent += 1
            t0 = loop.time()
            try:
                status = await connection.request(_head(host, port, path, body), body)
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                connection.close()
                connection = Connection(host, port)
                failed += 1
                continue
            if status == 200:
                latencies.append(loop.time() - t0)
            else:
                failed += 1
        connection.close()

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(connections)))
    return LoadResult(label, sent, len(latencies), failed, loop.time() - started, tuple(latencies))


def _run(coroutine):
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def fixed_rate(host: str, port: int, path: str, bodies: list[bytes], rate: float, seconds: float, label: str = "") -> LoadResult:
    return _run(_fixed_rate(host, port, path, bodies, rate, seconds, label))


def saturate(host: str, port: int, path: str, bodies: list[bytes], connections: int, seconds: float, label: str = "") -> LoadResult:
    return _run(_saturate(host, port, path, bodies, connections, seconds, label))


def cpu_seconds() -> float:
    return time.process_time()
