"""McpLink against the real sandbox executors: stdio child processes and one Streamable HTTP server."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from clients.mcp_link import CallOutcome, LinkFailed, LinkLost, McpLink
from config.schema import ExecutorConfig

pytestmark = pytest.mark.slow   # every test spawns MCP servers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DEADLINE_S = 60.0   # a hung scenario fails instead of hanging the run
CLOSE_DEADLINE_S = 10.0      # "at once": a hang fails, a slow machine does not (timings belong in bench/)
WORK_FOLDER = "/tmp"


def coder_spec(**overrides: object) -> ExecutorConfig:
    fields: dict = dict(name="coder", transport="stdio", command=sys.executable,
                        args=("-m", "sandbox.executors", "coder"), cwd=str(PROJECT_ROOT),
                        tool="claude_code", arguments={}, connect_timeout_s=20.0)
    return ExecutorConfig(**(fields | overrides))


def coder_call(link: McpLink, prompt: str, timeout_s: float = 10.0,
               on_progress: Callable[..., None] | None = None) -> Awaitable[CallOutcome]:
    return link.call("claude_code", {"prompt": prompt, "workFolder": WORK_FOLDER}, timeout_s, on_progress)


def with_link(spec: ExecutorConfig, scenario: Callable[[McpLink], Awaitable[None]]) -> None:
    """Open a link, run the scenario on it, and always close it (which reaps the child)."""
    async def main() -> None:
        link = McpLink(spec)
        try:
            async with asyncio.timeout(SCENARIO_DEADLINE_S):
                await link.open()
                await scenario(link)
        finally:
            await link.close()
    asyncio.run(main())


def child_processes(command: str = "") -> list[tuple[int, str]]:
    """(pid, state) of this process's children, zombies included; only those whose command line
    contains `command`, when given."""
    ps = subprocess.Popen(["ps", "-A", "-o", "pid=,ppid=,stat=,args="], stdout=subprocess.PIPE, text=True)
    out, _ = ps.communicate()
    rows = (line.split(None, 3) for line in out.splitlines())
    return [(int(pid), stat) for pid, ppid, stat, *args in rows
            if int(ppid) == os.getpid() and int(pid) != ps.pid and command in " ".join(args)]


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must leave no child behind (running, orphaned or zombie); kill any that it did."""
    before = {pid for pid, _ in child_processes()}
    yield
    leftovers = [(pid, stat) for pid, stat in child_processes() if pid not in before]
    for pid, _ in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert not leftovers, f"child processes left behind: {leftovers}"


async def eventually(condition: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {within_s}s"
        await asyncio.sleep(0.005)


# -- stdio -----------------------------------------------------------------------------------------

def test_open_lists_the_tools_and_a_plain_call_returns_text() -> None:
    prompt = "修復 LiteLLM 代理：重新啟動服務並檢查 /health/liveliness 的回應，確認所有路由恢復正常。" * 2

    async def main() -> None:
        link = McpLink(coder_spec())
        try:
            assert await link.open() == ["claude_code"]
            assert link.is_open
            expected = CallOutcome(ok=True, text=f"coder done: {prompt[:80]}")
            assert await coder_call(link, prompt) == expected
        finally:
            await link.close()
        assert not link.is_open
    asyncio.run(main())


def test_a_long_call_reports_progress() -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def scenario(link: McpLink) -> None:
        outcome = await coder_call(link, "refactor [sleep=0.5]", on_progress=lambda *r: reports.append(r))
        assert outcome.ok
        await eventually(lambda: len(reports) >= 3, within_s=10.0)  # progress tasks may land after the result
        done = [progress for progress, _, _ in reports]
        assert done == sorted(done)
        assert all(total == 0.5 for _, total, _ in reports)

    with_link(coder_spec(), scenario)


def test_a_tool_error_is_an_outcome_not_an_exception() -> None:
    async def scenario(link: McpLink) -> None:
        outcome = await coder_call(link, "break it [fail]")
        assert not outcome.ok and not outcome.timed_out
        assert "failed on purpose" in outcome.text
        unknown = await link.call("no_such_tool", {}, 5.0)
        assert not unknown.ok and "no_such_tool" in unknown.text
        assert link.is_open

    with_link(coder_spec(), scenario)


def test_a_timed_out_call_leaves_the_link_usable() -> None:
    async def scenario(link: McpLink) -> None:
        outcome = await coder_call(link, "slow [sleep=5]", timeout_s=0.3)
        assert outcome == CallOutcome(ok=False, text="timed out after 0.3s", timed_out=True)
        assert link.is_open
        assert (await coder_call(link, "next")).ok

    with_link(coder_spec(), scenario)


def test_a_crashing_server_raises_link_lost_and_closes_quickly() -> None:
    async def scenario(link: McpLink) -> None:
        with pytest.raises(LinkLost):
            await coder_call(link, "boom [crash]")
        assert not link.is_open
        with pytest.raises(LinkLost):
            await coder_call(link, "anyone there?")
        async with asyncio.timeout(CLOSE_DEADLINE_S):   # not hanging on the dead server
            await link.close()

    with_link(coder_spec(), scenario)


def test_a_killed_idle_server_is_noticed_without_a_call() -> None:
    async def scenario(link: McpLink) -> None:
        [(server_pid, _)] = child_processes("sandbox.executors")
        os.kill(server_pid, signal.SIGKILL)
        await eventually(lambda: not link.is_open, within_s=10.0)
        with pytest.raises(LinkLost):
            await coder_call(link, "hello?")
        async with asyncio.timeout(CLOSE_DEADLINE_S):
            await link.close()

    with_link(coder_spec(), scenario)


def test_cancelling_a_call_returns_control_at_once_and_the_link_stays_usable() -> None:
    async def scenario(link: McpLink) -> None:
        working = asyncio.Event()
        call = asyncio.create_task(coder_call(link, "long job [sleep=30]", timeout_s=60,
                                              on_progress=lambda *_: working.set()))
        async with asyncio.timeout(5):
            await working.wait()
        call.cancel()
        async with asyncio.timeout(CLOSE_DEADLINE_S):    # far less than the call's 30 s: it did not run on
            with pytest.raises(asyncio.CancelledError):
                await call
        assert (await coder_call(link, "after the cancel")).ok

    with_link(coder_spec(), scenario)


def test_twenty_concurrent_calls_from_separate_tasks_all_complete() -> None:
    async def scenario(link: McpLink) -> None:
        prompts = [f"任务 {n} [sleep=0.2]" for n in range(20)]
        calls = [asyncio.create_task(coder_call(link, prompt)) for prompt in prompts]
        outcomes = await asyncio.gather(*calls)
        assert [outcome.text for outcome in outcomes] == [f"coder done: {prompt}" for prompt in prompts]
        assert all(outcome.ok for outcome in outcomes)

    with_link(coder_spec(), scenario)


def test_a_missing_command_fails_with_a_readable_message() -> None:
    async def main() -> None:
        link = McpLink(coder_spec(command="/nonexistent/claude-code-mcp", args=()))
        with pytest.raises(LinkFailed, match="No such file.*/nonexistent/claude-code-mcp"):
            await link.open()
        assert not link.is_open
        await link.close()
    asyncio.run(main())


# -- Streamable HTTP ------------------------------------------------------------------------------

def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def general_http_url() -> Iterator[str]:
    """A `general` stub executor serving Streamable HTTP on a free loopback port; killed afterwards."""
    port = free_loopback_port()
    server = subprocess.Popen([sys.executable, "-m", "sandbox.executors", "general", "--http", str(port)],
                              cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, f"the HTTP stub exited with {server.returncode}"
            assert time.monotonic() < deadline, "the HTTP stub did not accept connections in 20 s"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.kill()
        server.wait()


def test_streamable_http_link(general_http_url: str) -> None:
    spec = ExecutorConfig(name="general", transport="http", url=general_http_url, tool="run_task",
                          arguments={}, connect_timeout_s=10.0)
    reports: list[tuple[float, float | None, str | None]] = []

    async def main() -> None:
        link = McpLink(spec)
        try:
            assert await link.open() == ["run_task"]
            assert await link.call("run_task", {"prompt": "总结今天的任务"}, 5.0) == \
                CallOutcome(ok=True, text="general done: 总结今天的任务")
            slow = await link.call("run_task", {"prompt": "[sleep=0.5]"}, 5.0, lambda *r: reports.append(r))
            assert slow.ok
            await eventually(lambda: len(reports) >= 3, within_s=1.0)
            assert (await link.call("run_task", {"prompt": "[fail]"}, 5.0)).ok is False
            assert (await link.call("run_task", {"prompt": "[sleep=5]"}, 0.3)).timed_out
            with pytest.raises(LinkLost):
                await link.call("run_task", {"prompt": "[crash]"}, 5.0)
            assert not link.is_open
        finally:
            await link.close()
    asyncio.run(main())
