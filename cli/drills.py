"""Drills: inject a fault into the running sandbox so that the console shows the failover and the
recovery as they happen; `heal` removes every injected fault.

    python supervisor.py drill litellm-kill     # SIGKILL the LiteLLM proxy → direct mode, repair, back
    python supervisor.py drill cloud-outage     # every simulated provider hangs → brainstem mode
    python supervisor.py drill rate-limit       # the free tier answers 429 → P2 within budget
    python supervisor.py drill executor-crash   # SIGKILL an executor's MCP server → respawned
    python supervisor.py drill actor-crash      # the Router crashes → restarted by its supervisor
    python supervisor.py drill heal             # providers back to ok, the proxy restarted if it is down

Each talks to the running supervisor's world (its pid and URL files under $OMNI_HOME, the providers'
admin API, the REPL socket), returns once the fault is in place, and says what to watch for.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Callable

from config import Config

PID_FILE = "supervisor.pid"


class DrillError(RuntimeError):
    """The drill could not be put in place; the message says why and what to do."""


def run_drill(name: str, cfg: Config) -> str:
    drill = DRILLS.get(name)
    if drill is None:
        raise DrillError(f"unknown drill {name!r}; the drills are: {', '.join(DRILLS)}")
    return drill(cfg)


def _supervisor_pid(home: Path) -> int:
    try:
        pid = int((home / PID_FILE).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        raise DrillError(f"no supervisor is running with data in {home} (start it with `make run`)") from None


def _providers(home: Path):
    from sandbox.providers import ProvidersAdmin
    _supervisor_pid(home)
    try:
        return ProvidersAdmin(json.loads((home / "providers.json").read_text())["admin"])
    except FileNotFoundError:
        raise DrillError("this supervisor runs no simulated providers: the model drills need the sandbox") from None


def litellm_kill(cfg: Config) -> str:
    from clients.litellm_proxy import proxy_paths
    _supervisor_pid(cfg.home)
    try:
        pid = int(proxy_paths(cfg.home).pid.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        raise DrillError("no managed LiteLLM proxy is running (litellm.mode must be managed)") from None
    return (f"SIGKILLed the LiteLLM proxy (pid {pid}). Watch: route → direct within two probes, mode "
            "degraded, a repair task on the coder, then the proxy back and mode normal.")


def cloud_outage(cfg: Config) -> str:
    providers = _providers(cfg.home)
    for name in ("free", "paid", "direct"):
        providers.set(name, "hang")
    health = cfg.health
    return (f"Every simulated provider now hangs. Watch: {health.timeouts_to_down} pings time out after "
            f"{health.timeout_s:g}s each, then brainstem mode, tasks waiting, the local model loading. "
            "`drill heal` brings the cloud back.")


def rate_limit(cfg: Config) -> str:
    _providers(cfg.home).set("free", "429", retry_after_s=60)
    return ("The free tier (P1) now answers 429 with Retry-After: 60. Watch: P1 cooling down, P2 used within "
            "the budget, the first paid call of the day announced. `drill heal` ends it.")


def executor_crash(cfg: Config) -> str:
    supervisor = _supervisor_pid(cfg.home)
    listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,args="], capture_output=True, text=True, check=True)
    servers = [int(pid) for pid, ppid, args in (line.split(None, 2) for line in listing.stdout.splitlines())
               if int(ppid) == supervisor and "sandbox.executors" in args]
    if not servers:
        raise DrillError("found no sandbox executor server under the supervisor")
    os.kill(servers[0], signal.SIGKILL)
    return (f"SIGKILLed an executor's MCP server (pid {servers[0]}). Watch: the executor marked down, "
            "respawned with backoff, its interrupted task retried.")


def actor_crash(cfg: Config) -> str:
    _supervisor_pid(cfg.home)
    _through_repl(cfg.home, 'crash("router")')
    return "The Router crashed on purpose. Watch: its restart count goes up; no task is lost."


def _through_repl(home: Path, line: str, timeout_s: float = 5.0) -> str:
    """Type one line into the running supervisor's REPL (its owner-only Unix socket) and return the echo."""
    path = home / "run" / "repl.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as repl:
        repl.settimeout(timeout_s)
        try:
            repl.connect(str(path))
        except OSError as error:
            raise DrillError(f"cannot reach the REPL at {path}: {error.strerror}") from None
        repl.sendall(line.encode() + b"\n")
        repl.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := repl.recv(65536):
            received += chunk
    return received.decode(errors="replace")


def heal(cfg: Config) -> str:
    from clients.litellm_proxy import proxy_status, restart_proxy
    done = []
    try:
        _providers(cfg.home).reset()
        done.append("providers back to ok")
    except DrillError:
        pass
    if cfg.litellm is not None and cfg.litellm.mode == "managed" and not proxy_status(cfg.litellm, cfg.home)["answers"]:
        restart_proxy(cfg.litellm, cfg.home)
        done.append("LiteLLM proxy restarted")
    return "Healed: " + (", ".join(done) if done else "nothing was injected") + "."


DRILLS: dict[str, Callable[[Config], str]] = {
    "litellm-kill": litellm_kill, "cloud-outage": cloud_outage, "rate-limit": rate_limit,
    "executor-crash": executor_crash, "actor-crash": actor_crash, "heal": heal,
}
