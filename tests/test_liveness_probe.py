"""The guard's liveness probe against a real HTTP server on loopback: one kept-alive connection while the proxy
answers, a fresh one after the proxy closed it or restarted, and a clear failure for a refused, hung or unwell
proxy (the guard counts those towards "down")."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import AsyncIterator

import pytest

from clients import LivenessProbe
from clients.liveness import STARVED_S


class Proxy:
    """A stand-in of the proxy's `/health/liveliness`: `status` to answer, `hang` to answer nothing, `close_after`
    to say `Connection: close`; counts the connections it accepted and the requests it read."""

    def __init__(self) -> None:
        self.status, self.hang, self.close_after = 200, False, False
        self.connections = self.requests = 0
        self.paths: list[str] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        for writer in self._writers:   # a stopped proxy keeps no connection open (Python 3.11 has no close_clients)
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                self.paths.append(head.split(b" ")[1].decode())
                if self.hang:
                    await asyncio.sleep(3600)
                body = b'"I\'m alive!"'
                close = b"Connection: close\r\n" if self.close_after else b""
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (self.status, len(body), close, body))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


@contextlib.asynccontextmanager
async def probing(suffix: str = "") -> AsyncIterator[tuple[Proxy, LivenessProbe]]:
    """A proxy stand-in on a free port and a probe of it; both closed however the test ends."""
    proxy = Proxy()
    await proxy.start()
    probe = LivenessProbe(f"http://127.0.0.1:{proxy.port}{suffix}")
    try:
        yield proxy, probe
    finally:
        await probe.close()
        await proxy.stop()


def test_a_live_proxy_is_probed_on_one_kept_alive_connection():
    async def scenario() -> None:
        async with probing() as (proxy, probe):
            answers = [await probe.check(1.0) for _ in range(5)]
        assert answers == [(True, "HTTP 200", True)] * 5
        assert (proxy.connections, proxy.requests, set(proxy.paths)) == (1, 5, {"/health/liveliness"})
    run(scenario)


def test_an_unwell_answer_a_closed_connection_and_a_restart_on_the_same_port():
    async def scenario() -> None:
        async with probing("/") as (proxy, probe):
            proxy.status = 503
            assert await probe.check(1.0) == (False, "HTTP 503", True)
            proxy.status, proxy.close_after = 200, True
            assert [await probe.check(1.0) for _ in range(3)] == [(True, "HTTP 200", True)] * 3
            assert proxy.connections == 3, "a connection the proxy closed is opened afresh"
            await proxy.stop()
            ok, detail, judged = await probe.check(1.0)
            gone = ("ConnectionRefusedError", "EOFError", "ConnectionResetError")
            assert judged and not ok and detail.startswith(gone), detail
            again = Proxy()
            await again.start(proxy.port)
            try:
                assert await probe.check(1.0) == (True, "HTTP 200", True), "a proxy restarted on its port is found"
            finally:
                await again.stop()
    run(scenario)


def test_a_hung_proxy_fails_the_probe_within_its_timeout_and_the_next_probe_starts_afresh():
    async def scenario() -> None:
        async with probing() as (proxy, probe):
            proxy.hang = True
            ok, detail, judged = await probe.check(0.3)
            assert judged and not ok and detail.startswith("TimeoutError after 0.3"), detail
            proxy.hang = False
            assert await probe.check(1.0) == (True, "HTTP 200", True)
            assert proxy.connections == 2
    run(scenario)


def test_a_timeout_that_fires_late_because_this_process_was_starved_judges_nothing():
    # The loop is blocked past the probe's deadline, as the GIL held by another thread would block it: the late
    # timeout judges nothing of the proxy. With the loop free again, the same hung proxy is judged.
    async def scenario() -> None:
        async with probing() as (proxy, probe):
            proxy.hang = True
            asyncio.get_running_loop().call_later(0.05, time.sleep, 0.3 + STARVED_S + 0.2)
            ok, detail, judged = await probe.check(0.3)
            assert (ok, judged) == (False, False) and detail.startswith("no verdict: this process was starved"), detail
            ok, detail, judged = await probe.check(0.3)
            assert (ok, judged) == (False, True) and detail.startswith("TimeoutError after 0.3"), detail
    run(scenario)


def test_nothing_listening_is_named_and_a_url_it_cannot_speak_to_is_refused_at_once():
    async def scenario() -> None:
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        probe = LivenessProbe(f"http://127.0.0.1:{port}")
        ok, detail, judged = await probe.check(1.0)
        assert judged and not ok and detail.startswith("ConnectionRefusedError after"), detail
    run(scenario)
    with pytest.raises(ValueError, match="plain HTTP"):
        LivenessProbe("https://proxy.example:4000")
