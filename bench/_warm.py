"""`python -m bench warm`: time from a task's dispatch (the executor's tool call) to the executor's first progress,
with the executor's session warm (process spawned, MCP initialised before the task, as the Executor keeps it)
and cold (spawned and initialised for the task). For the sandbox coder, and for the real mcp_servers/claude_code.py
(claude-agent-sdk's CLI, its model the loopback Anthropic stand-in) when `make claude` has installed it.
Figures are printed, never asserted.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clients import McpLink
from config import PROJECT_ROOT, ExecutorConfig


async def first_progress(link: McpLink, tool: str, arguments: dict) -> float:
    """Seconds from the call to its first progress notification (the call is then left to finish)."""
    started, seen = time.perf_counter(), asyncio.get_running_loop().create_future()

    def progress(done: float, total: float | None, message: str | None) -> None:
        if not seen.done():
            seen.set_result(time.perf_counter() - started)
    call = asyncio.ensure_future(link.call(tool, arguments, 120, progress))
    took = await asyncio.wait_for(seen, 120)
    await call
    return took


async def cold(spec: ExecutorConfig, arguments: dict) -> float:
    started, link = time.perf_counter(), McpLink(spec)
    try:
        await link.open()
        await first_progress(link, spec.tool, arguments)
        return time.perf_counter() - started
    finally:
        await link.close()


async def measure(spec: ExecutorConfig, arguments: dict, rounds: int) -> tuple[float, float]:
    link = McpLink(spec)
    await link.open()
    try:
        warm = [await first_progress(link, spec.tool, arguments) for _ in range(rounds)]
    finally:
        await link.close()
    colds = [await cold(spec, arguments) for _ in range(max(1, rounds // 3))]
    return statistics.median(warm) * 1000, statistics.median(colds) * 1000


def run(quick: bool = False, keep: bool = False) -> int:
    rounds = 3 if quick else 9
    folder = Path(tempfile.mkdtemp(prefix="omni-bench-warm-"))
    coder = ExecutorConfig(name="coder", transport="stdio", command=sys.executable,
                           args=("-m", "sandbox.executors", "coder"), tool="claude_code", arguments={},
                           cwd=str(PROJECT_ROOT))
    warm, cold_ms = asyncio.run(measure(coder, {"prompt": "[sleep=0.05] fix", "workFolder": str(folder)}, rounds))
    print(f"dispatch → first progress, sandbox coder:            warm {warm:8.1f} ms   cold {cold_ms:8.1f} ms")
    from mcp_servers import claude_sdk
    if not claude_sdk.installed():
        print(f"real claude_code: skipped ({claude_sdk.INSTALL_HINT})")
        return 0
    from sandbox.anthropic_api import AnthropicStandIn
    (folder / "home").mkdir()
    with AnthropicStandIn() as model:
        real = ExecutorConfig(name="claude_code", transport="stdio", command=sys.executable,
                              args=("-m", "mcp_servers.claude_code"), tool="claude_code", arguments={},
                              cwd=str(PROJECT_ROOT), connect_timeout_s=60,
                              env={"HOME": str(folder / "home"), "ANTHROPIC_BASE_URL": model.base_url,
                                   "ANTHROPIC_API_KEY": "sk-ant-omni-bench-not-a-key",
                                   "OMNI_CACHE": str(claude_sdk.cache_dir())})
        warm, cold_ms = asyncio.run(measure(real, {"prompt": "Please remember PINEAPPLE",
                                                   "workFolder": str(folder)}, max(3, rounds // 3)))
    print(f"dispatch → first progress, real claude_code (stand-in): warm {warm:8.1f} ms   cold {cold_ms:8.1f} ms")
    if keep:
        print(f"(work folder {folder})")
    return 0
