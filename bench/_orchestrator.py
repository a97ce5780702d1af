"""The orchestrator under test: `python supervisor.py --config …` as a real child process, in a temp home."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from config import EMBEDDED_DEFAULT, PROJECT_ROOT

START_DEADLINE_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SLOTS = 16


def bench_config() -> dict:
    """config/sandbox.yaml without demo traffic, the model route or a real OpenClaw, port 0, executors with
    16 slots (the `general` executor is the sandbox's stdio stand-in).

    The model route (LiteLLM proxy, simulated providers) is left out, as in the tests: a no-op task
    needs no model, and the proxy would add start-up time and a model call per unmatched task.
    """
    raw = yaml.safe_load(EMBEDDED_DEFAULT.read_text(encoding="utf-8"))
    for section in ("demo", "litellm", "providers", "api_keys", "sandbox_openclaw"):
        raw.pop(section, None)
    raw["routing"]["classify_with_model"] = False
    raw["gateway"].update(port=0, generate_token=False)
    for executor in raw["executors"].values():
        executor["slots"] = SLOTS
    return raw


class Orchestrator:
    """Start the supervisor in a fresh $OMNI_HOME; `url`/`token` reach its gateway. Always stopped on exit."""

    def __init__(self, keep: bool = False) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="omni-bench-"))
        self._keep = keep
        self.token = "bench-" + secrets.token_hex(16)
        self.url = ""
        self.stdout_path = self.home / "supervisor-stdout.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Orchestrator:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._stop()
        finally:
            if not self._keep:
                shutil.rmtree(self.home, ignore_errors=True)

    def _start(self) -> None:
        config = self.home / "bench-config.yaml"
        config.write_text(yaml.safe_dump(bench_config(), allow_unicode=True), encoding="utf-8")
        config.chmod(0o600)
        env = {**os.environ, "OMNI_HOME": str(self.home), "OMNI_GATEWAY_TOKEN": self.token}
        with self.stdout_path.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "supervisor.py", "--config", str(config)],
                                            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        url_file = self.home / "gateway.url"
        deadline = time.monotonic() + START_DEADLINE_S
        while not url_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor did not start:\n{self.tail()}")
            time.sleep(0.05)
        self.url = url_file.read_text().strip()

    def kill_and_restart(self) -> None:
        """SIGKILL the supervisor and its MCP server children, then start it again on the same home."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        (self.home / "gateway.url").unlink(missing_ok=True)
        self._start()

    def _stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, 30)

    def cpu_seconds(self) -> float:
        """User + system CPU so far of every live process in the supervisor's process group (it and the MCP
        servers it spawned; Linux /proc)."""
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:     # pgrp: start_new_session made the supervisor its leader
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def summary(self) -> str:
        """How much it printed, and how many WARNING/ERROR lines its log has (surprises show up here)."""
        printed = _count_lines(self.stdout_path)
        log = self.home / "logs" / "supervisor.log"
        troubles = sum(1 for line in _lines(log) if " WARNING " in line or " ERROR " in line)
        return f"{printed} stdout lines, {troubles} WARNING/ERROR lines in logs/supervisor.log"

    def tail(self, lines: int = 20) -> str:
        """The last lines the supervisor printed (for error messages)."""
        try:
            return "\n".join(self.stdout_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _count_lines(path: Path) -> int:
    return len(_lines(path))


def stop_group(process: subprocess.Popen, wait_s: float) -> None:
    """Terminate, wait `wait_s`, kill if need be, then kill the process group (its MCP server children)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
