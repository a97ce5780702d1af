"""The LiteLLM proxy's liveness probe: `GET /health/liveliness` (never `/health`, which calls every upstream and
spends tokens) on one kept-alive connection, spoken with h11 over asyncio streams.

The guard probes once a second, all day long. Through httpx a probe cost about as much CPU as the rest of an idle
orchestrator together; here it is one small write and one read on a connection that stays open. A connection the
proxy closed, or a probe that failed, is opened afresh next time, so a proxy restarted on the same port is found.

    probe = LivenessProbe("http://127.0.0.1:4000")
    ok, detail, judged = await probe.check(timeout_s=0.8)   # (True, "HTTP 200", True), (False, "Connection…", True)
    await probe.close()

A timeout whose timer fired more than STARVED_S after its deadline judges nothing: this process (its event loop,
the GIL) was busy elsewhere, and the answer may be waiting unread. Below that, a probe judged failed is one the proxy
did not answer within timeout_s + STARVED_S of wall time (the seed: two failures under 1 s, with 0.8 s probes).
"""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import h11

PATH = "/health/liveliness"
READ_SIZE = 4096
STARVED_S = 0.2


class LivenessProbe:
    """One probe at a time (a check waits for the one before it); everything runs on the caller's loop."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the liveness probe speaks plain HTTP to a host: got {url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._target = (parts.path.rstrip("/") + PATH).encode()
        self._headers = [("Host", parts.netloc), ("Accept", "*/*")]
        self._connection: h11.Connection | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock: asyncio.Lock | None = None

    async def check(self, timeout_s: float) -> tuple[bool, str, bool]:
        """(answered 200, what happened, judged): `HTTP 503`, or the error and how long it took; judged is False
        for a timeout that fired too late to say anything of the proxy."""
        self._lock = self._lock or asyncio.Lock()
        started = time.monotonic()
        async with self._lock:
            deadline = time.monotonic() + timeout_s
            try:
                async with asyncio.timeout(timeout_s):
                    status = await self._get()
            except (OSError, EOFError, TimeoutError, h11.ProtocolError) as error:
                await self.close()
                late_s = time.monotonic() - deadline
                if isinstance(error, TimeoutError) and late_s > STARVED_S:
                    return False, f"no verdict: this process was starved, its {timeout_s:g}s timer fired " \
                                  f"{late_s:.2f}s late", False
                return False, f"{type(error).__name__} after {time.monotonic() - started:.2f}s", True
        return status == 200, f"HTTP {status}", True

    async def close(self) -> None:
        writer, self._writer, self._reader, self._connection = self._writer, None, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def _get(self) -> int:
        if self._connection is None or self._connection.our_state is not h11.IDLE:
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
            self._connection = h11.Connection(h11.CLIENT)
        connection = self._connection
        self._writer.write(connection.send(h11.Request(method="GET", target=self._target, headers=self._headers))
                           + connection.send(h11.EndOfMessage()))
        status = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    raise EOFError("the proxy closed the connection")
                connection.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()   # kept alive: the next probe goes on this connection
        return status
