"""What the LiteLLM bench runs against: simulated providers and a real LiteLLM proxy on free ports, alone
or inside an in-process orchestrator tree — built like tests/conftest.py's `models_world` + `start_tree`,
and always cleaned up (tree stopped, proxy process group killed, providers killed).
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from config import EMBEDDED_DEFAULT, PROJECT_ROOT, Config, load_config, overlay

PROXY_VENV_LITELLM = PROJECT_ROOT / ".venv-litellm" / "bin" / "litellm"
TREE_READY_S = 90.0
PROBE_INTERVAL_S = 1       # the seed's numbers: a probe a second, down after 2 consecutive failures
FAILURES_TO_DOWN = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_config(ports: dict[str, int]) -> dict[str, Any]:
    """config/sandbox.yaml without demo traffic, gateway on port 0, providers and proxy on `ports`
    (admin, free, paid, direct, proxy), the seed's probe thresholds.

    The repair flow is tamed so it never races the bench's own proxy restarts: at most one repair an
    hour, and its restart command is `true` (the sandbox coder would otherwise run
    `supervisor.py proxy restart` at the same moment as the bench's `restart_proxy`).
    """
    raw = yaml.safe_load(EMBEDDED_DEFAULT.read_text(encoding="utf-8"))
    raw.pop("demo", None)
    raw.pop("sandbox_openclaw", None)
    direct = f"http://127.0.0.1:{ports['direct']}/v1"
    return overlay(raw, {
        "gateway": {"port": 0, "generate_token": False},
        "providers": {name: ports[name] for name in ("admin", "free", "paid", "direct")},
        "litellm": {"url": f"http://127.0.0.1:{ports['proxy']}", "start_deadline_s": 60,
                    "probe_interval_s": PROBE_INTERVAL_S, "failures_to_down": FAILURES_TO_DOWN,
                    "restart_command": "true",
                    "env": {"OMNI_SANDBOX_FREE_URL": f"http://127.0.0.1:{ports['free']}/v1",
                            "OMNI_SANDBOX_PAID_URL": f"http://127.0.0.1:{ports['paid']}/v1"},
                    "tiers": {"P1": {"direct_api_base": direct}, "P2": {"direct_api_base": direct}}},
        "repair": {"max_per_hour": 1, "backoff_initial_s": 3600},
    })


def write_config(raw: dict[str, Any], path: Path) -> Config:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    return load_config(path)


def fresh_ports() -> dict[str, int]:
    return {name: free_port() for name in ("admin", "free", "paid", "direct", "proxy")}


# --- the run's home and environment --------------------------------------------------------------------------

class BenchHome:
    """A temp $OMNI_HOME and gateway token in os.environ for the run; restored (and removed) on exit."""

    def __init__(self, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="omni-bench-litellm-"))
        self.token = "bench-" + secrets.token_hex(16)
        self._keep = keep
        self._saved: dict[str, str | None] = {}
        self._log_handler: logging.Handler | None = None

    def __enter__(self) -> BenchHome:
        for name, value in (("OMNI_HOME", str(self.path)), ("OMNI_GATEWAY_TOKEN", self.token)):
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        (self.path / "logs").mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self._log_handler = handler
        return self

    @property
    def log_path(self) -> Path:
        return self.path / "logs" / "bench-litellm.log"

    def troubles(self) -> list[str]:
        """WARNING/ERROR lines logged in this process during the run."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if " WARNING " in line or " ERROR " in line]

    def __exit__(self, *exc_info: object) -> None:
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if not self._keep:
            shutil.rmtree(self.path, ignore_errors=True)


# --- processes: by pid only ----------------------------------------------------------------------------------

def kill_proxy_group(home: Path) -> None:
    """SIGKILL the process group of the proxy named in `home`/litellm.pid (it leads its own session)."""
    pid_file = home / "litellm.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def kill_own_children(marker: str) -> None:
    """SIGKILL this process's direct children whose command line contains `marker` (by pid, Linux /proc)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and marker in command:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- the in-process orchestrator tree ------------------------------------------------------------------------

@dataclass
class Tree:
    cfg: Config
    token: str
    escalations: list[str] = field(default_factory=list)
    directory: Any = None
    loop: Any = None
    supervisor: Any = None
    journal: Any = None
    _devnull: Any = None

    def ask(self, name: str, message: Any, timeout_s: float = 10) -> Any:
        return self.directory.ask(name, message, timeout_s)

    def start(self) -> Tree:
        """actor_tree.build_tree + Supervisor, as tests/conftest.py's start_tree does."""
        from rich.console import Console

        import actor_tree
        from runtime.directory import Directory
        from runtime.event_loop import EventLoopThread
        from runtime.journal import Journal
        from runtime.supervisor import Supervisor

        self.journal = Journal(self.cfg.log_dir)
        self.loop = EventLoopThread().start()
        self.directory = Directory()
        self._devnull = open(os.devnull, "w", encoding="utf-8")
        specs = actor_tree.build_tree(self.cfg, self.journal, Console(file=self._devnull), self.token)
        self.supervisor = Supervisor.start(specs, self.cfg.supervision, self.loop, self.directory,
                                           on_escalation=self.escalations.append)
        self.directory.register("supervisor", self.supervisor)
        return self

    def wait_ready(self) -> None:
        """Executors' MCP links up, and the guard has seen the managed proxy answer and routes through it."""
        from messages import Introspect
        wait_until(lambda: all(self.ask(name, Introspect())["link"] == "up" for name in self.cfg.executors),
                   TREE_READY_S, "the executors' MCP servers up")
        wait_until(lambda: (g := self.ask("litellm_guard", Introspect()))["proxy_answered"] and g["route"] == "proxy",
                   TREE_READY_S, "the guard to see the managed proxy answer")

    def stop(self) -> None:
        """Stop the tree (the ProxyKeeper stops the proxy, SandboxProviders the providers), then make sure."""
        import pykka
        try:
            if self.supervisor is not None and self.supervisor.is_alive():
                self.supervisor.stop(block=True, timeout=30)
        except Exception:   # noqa: BLE001 (cleanup goes on)
            logging.getLogger(__name__).exception("stopping the tree")
        finally:
            try:
                pykka.ActorRegistry.stop_all(block=True, timeout=10)
            finally:
                if self.loop is not None:
                    try:
                        self.loop.stop()
                    except Exception:   # noqa: BLE001
                        pass
                if self.journal is not None:
                    self.journal.close()
                if self._devnull is not None:
                    self._devnull.close()
                kill_proxy_group(self.cfg.home)
                kill_own_children("sandbox.providers")


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.01) -> Any:
    """Poll `condition` until truthy; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)
