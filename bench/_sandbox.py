"""The sandbox at rest: `python supervisor.py` on config/sandbox.yaml without demo traffic (free ports, as
bench/_litellm_world.py builds it), as a real child process.

Printed: the time from spawning the process to the gateway's first answer, the supervisor's RSS once the
tree has settled (the managed LiteLLM proxy and the local model are other processes or not loaded), and
its idle CPU (% of one core) over a quiet window, the proxy and MCP servers up and no task in flight.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from clients.gateway_client import GatewaySession
from config import PROJECT_ROOT

from ._orchestrator import stop_group
from ._litellm_world import PROXY_VENV_LITELLM, bench_config, fresh_ports

READY_S = 90.0
SETTLE_S = 5.0           # after everything is up: background imports, first probes
IDLE_WINDOW_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class RestFigures:
    gateway_answer_s: float
    ready_s: float
    rss_mb: float
    idle_cpu_pct: float
    window_s: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _first_answer(url_file: Path, token: str, process: subprocess.Popen, started: float) -> float:
    """Seconds from spawning to the gateway answering `system_status`."""
    while True:
        if process.poll() is not None or time.perf_counter() - started > READY_S:
            raise RuntimeError("the sandbox supervisor did not answer")
        if url_file.exists():
            try:
                async with GatewaySession(url_file.read_text().strip(), token, timeout_s=5) as gateway:
                    await gateway.call("system_status")
                    answered = time.perf_counter()   # not after closing the session: that is the client's time
                return answered - started
            except Exception:   # noqa: BLE001 (not listening yet)
                pass
        await asyncio.sleep(0.01)


async def _until_settled(url: str, token: str, started: float) -> float:
    """Seconds from spawning until every executor's link is up and the route goes through the proxy."""
    async with GatewaySession(url, token) as gateway:
        while time.perf_counter() - started < READY_S:
            status = await gateway.call("system_status")
            links = [e.get("link") for e in status["executors"].values()]
            if status["route"] == "proxy" and all(link == "up" for link in links):
                return time.perf_counter() - started
            await asyncio.sleep(0.2)
    raise RuntimeError("the sandbox did not settle (executors up, route proxy)")


def measure(window_s: float = IDLE_WINDOW_S, keep: bool = False) -> RestFigures:
    home = Path(tempfile.mkdtemp(prefix="omni-bench-sandbox-"))
    token = "bench-" + secrets.token_hex(16)
    config = home / "bench-sandbox.yaml"
    config.write_text(yaml.safe_dump(bench_config(fresh_ports()), allow_unicode=True), encoding="utf-8")
    config.chmod(0o600)
    env = {**os.environ, "OMNI_HOME": str(home), "OMNI_GATEWAY_TOKEN": token}
    log = (home / "supervisor-stdout.log").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "supervisor.py", "--config", str(config)], cwd=PROJECT_ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        answer_s = asyncio.run(_first_answer(home / "gateway.url", token, process, started))
        url = (home / "gateway.url").read_text().strip()
        ready_s = asyncio.run(_until_settled(url, token, started))
        time.sleep(SETTLE_S)
        cpu0, t0 = cpu_seconds(process.pid), time.perf_counter()
        time.sleep(window_s)
        cpu1, t1 = cpu_seconds(process.pid), time.perf_counter()
        return RestFigures(answer_s, ready_s, rss_mb(process.pid), (cpu1 - cpu0) / (t1 - t0) * 100, t1 - t0)
    finally:
        stop_group(process, 60)   # the tree stops the proxy and providers; then its group is killed
        log.close()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)




def report(figures: RestFigures) -> str:
    rows = [("start to the gateway answering (s)", figures.gateway_answer_s, "<= 1", figures.gateway_answer_s <= 1),
            ("supervisor RSS, settled, no local model (MB)", figures.rss_mb, "<= 150", figures.rss_mb <= 150),
            (f"idle CPU over {figures.window_s:.0f}s (% of a core)", figures.idle_cpu_pct, "<= 0.5",
             figures.idle_cpu_pct <= 0.5)]
    lines = [f"{label:<72} {value:>8.2f}   target {target:<8} {'met' if ok else 'NOT met'}"
             for label, value, target, ok in rows]
    lines.append(f"(start to executors up and the route through the proxy: {figures.ready_s:.1f}s)")
    return "\n".join(lines)


def run(quick: bool, keep: bool) -> int:
    if not PROXY_VENV_LITELLM.exists():
        print(f"the LiteLLM proxy's venv is missing ({PROXY_VENV_LITELLM}): run `make setup`")
        return 1
    window = 10.0 if quick else IDLE_WINDOW_S
    print(f"sandbox at rest (no demo traffic): start, settle, then {window:.0f}s idle ...", flush=True)
    print(report(measure(window, keep)))
    return 0
