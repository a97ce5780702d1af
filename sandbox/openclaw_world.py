"""A real OpenClaw gateway, offline, in a folder of its own: for tests, benches and the sandbox.

    world = OpenClawWorld(tmp_path / "openclaw", telegram_api_root="http://127.0.0.1:PORT",
                          bot_token="123456:…", model_base_url="http://127.0.0.1:P/v1").start()
    world.url, world.token, world.token_file     # ws://127.0.0.1:N, the gateway token, a file holding it
    world.bridge_command(), world.bridge_env()   # `openclaw mcp serve …` for the orchestrator's im.openclaw
    world.kill(); world.start()                  # SIGKILL the gateway, start it again on the same port
    world.restart(); world.stop()

Its `openclaw.json` is config/openclaw/openclaw.json5 (the shipped front door, parsed with OpenClaw's own
JSON5 parser) with only what a test world must change: the Telegram channel's `apiRoot` (the Bot API stand-in,
sandbox/telegram_bot_api.py), the plugin path (this checkout), a model provider `omnisim` on `model_base_url`
(an OpenAI-compatible server such as sandbox/providers.py) as agent "main"'s model, the gateway port,
`logging.file` inside the folder, and no heartbeat or memory dreaming (agent turns nobody asked for).
Secrets stay `${…}` references, filled from the gateway's environment.

The gateway runs in its own process group (every child of it dies with it); start, stop and kill are bounded in
time, and `stop()` leaves no process behind. Layout of the folder: `home/` (HOME), `state/`
(OPENCLAW_STATE_DIR, with openclaw.json), `bridge-state/` (HOME and OPENCLAW_STATE_DIR of the bridge),
`logs/gateway.log` (stdout and stderr), `logs/openclaw.log`, `gateway.token` (0600), `gateway.pid` (a gateway
left running by an owner that was SIGKILLed is killed by the next `start`/`launch` in the same folder).
"""
from __future__ import annotations

import copy
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sandbox import openclaw_install

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FRONT_DOOR = PROJECT_ROOT / "config" / "openclaw" / "openclaw.json5"
PLACEHOLDER_ROOT = "/ABSOLUTE/PATH/TO/omni-orchestrator"
MODEL_PROVIDER, MODEL_ID = "omnisim", "sim-model"
READY_TIMEOUT_S = 120.0       # ~13 s idle, 22–30 s on a loaded machine or after a restart
STOP_TIMEOUT_S = 15.0         # SIGTERM takes ~4 s; then SIGKILL
LOG_TAIL_LINES = 30


class OpenClawWorldError(RuntimeError):
    """The gateway could not be started or stopped; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_json5(path: Path) -> dict[str, Any]:
    """`path` parsed by the json5 package OpenClaw itself uses (the project's venv has no JSON5 parser)."""
    script = ("const fs=require('fs');process.stdout.write(JSON.stringify("
              "require('json5').parse(fs.readFileSync(process.argv[1],'utf8'))))")
    result = subprocess.run([str(openclaw_install.node_bin_dir() / "node"), "-e", script, str(path)],
                            cwd=openclaw_install.openclaw_dir(), capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise OpenClawWorldError(f"{path}: not valid JSON5: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def world_config(front_door: dict[str, Any], telegram_api_root: str, model_base_url: str, port: int,
                 log_file: Path) -> dict[str, Any]:
    """The shipped front door with the test world's channel, model, port and log file."""
    config = json.loads(json.dumps(front_door).replace(PLACEHOLDER_ROOT, str(PROJECT_ROOT)))
    model = {"id": MODEL_ID, "name": "sandbox model", "input": ["text"], "contextWindow": 128000,
             "maxTokens": 4096}
    return deep_merge(config, {
        "gateway": {"port": port},
        "channels": {"telegram": {"apiRoot": telegram_api_root}},
        "models": {"mode": "merge", "providers": {MODEL_PROVIDER: {
            "baseUrl": model_base_url, "apiKey": "sandbox-key", "api": "openai-completions", "models": [model]}}},
        # No agent turn of OpenClaw's own: its heartbeat (every 30 min, the first at a random point of the
        # first half hour) and memory dreaming (a nightly sweep) would call the model in the middle of a test
        # that counts its calls.
        "agents": {"defaults": {"model": {"primary": f"{MODEL_PROVIDER}/{MODEL_ID}"}, "heartbeat": {"every": "0m"}}},
        "plugins": {"entries": {"memory-core": {"config": {"dreaming": {"enabled": False}}}}},
        "logging": {"file": str(log_file)},
    })


class OpenClawWorld:
    """One real OpenClaw gateway in `root`, its Telegram channel on the stand-in, its model on loopback."""

    def __init__(self, root: Path, telegram_api_root: str, bot_token: str, model_base_url: str,
                 port: int | None = None, overrides: dict[str, Any] | None = None, token: str | None = None):
        openclaw_install.require_installed()
        self.root = Path(root)
        self.telegram_api_root, self.bot_token, self.model_base_url = telegram_api_root, bot_token, model_base_url
        self.port = port or free_port()
        self.token = token or secrets.token_urlsafe(24)
        self.home, self.state_dir, self.logs = self.root / "home", self.root / "state", self.root / "logs"
        self.bridge_state_dir = self.root / "bridge-state"
        self.token_file = self.root / "gateway.token"
        self.pid_file = self.root / "gateway.pid"
        self.config_path = self.state_dir / "openclaw.json"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._front_door = parse_json5(FRONT_DOOR)
        self._overrides = overrides or {}
        self._prepare()

    # ---------------------------------------------------------------- addresses and commands

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment the gateway runs in (and any `openclaw` CLI call against it)."""
        return openclaw_install.run_env({
            "PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.home), "LANG": "C.UTF-8",
            "OPENCLAW_STATE_DIR": str(self.state_dir), "OPENCLAW_CONFIG_PATH": str(self.config_path),
            "OPENCLAW_GATEWAY_TOKEN": self.token, "TELEGRAM_BOT_TOKEN": self.bot_token, "TZ": "UTC"})

    def bridge_env(self) -> dict[str, str]:
        """The environment of `openclaw mcp serve` (MCP's stdio client passes little else): node on PATH, and a
        state folder of its own. Sharing the gateway's, the bridge died at its first call now and then with
        "another OpenClaw process owns state-lifecycle" (both write the state database); it needs nothing
        from there: the URL and the token file are on its command line."""
        return {"PATH": self.env()["PATH"], "HOME": str(self.bridge_state_dir),
                "OPENCLAW_STATE_DIR": str(self.bridge_state_dir)}

    def bridge_command(self) -> list[str]:
        """argv of the real channel bridge, connected to this gateway."""
        return [str(openclaw_install.openclaw_bin()), "mcp", "serve", "--url", self.url,
                "--token-file", str(self.token_file), "--claude-channel-mode", "off"]

    def gateway_command(self) -> list[str]:
        return [str(openclaw_install.openclaw_bin()), "gateway", "run", "--allow-unconfigured",
                "--port", str(self.port), "--bind", "loopback", "--auth", "token", "--token", self.token]

    # ---------------------------------------------------------------- config

    def _prepare(self) -> None:
        for folder in (self.home, self.state_dir, self.logs, self.bridge_state_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(self.token + "\n", encoding="utf-8")
        self.token_file.chmod(0o600)
        self.write_config()

    def config(self) -> dict[str, Any]:
        base = world_config(self._front_door, self.telegram_api_root, self.model_base_url, self.port,
                            self.logs / "openclaw.log")
        return deep_merge(base, self._overrides)

    def write_config(self, overrides: dict[str, Any] | None = None) -> None:
        """(Re)write openclaw.json, with `overrides` merged in from now on; a running gateway hot-reloads it."""
        if overrides is not None:
            self._overrides = deep_merge(self._overrides, overrides)
        tmp = self.config_path.with_name(".openclaw.json.tmp")
        tmp.write_text(json.dumps(self.config(), indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.chmod(0o600)
        os.replace(tmp, self.config_path)

    # ---------------------------------------------------------------- life cycle

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> "OpenClawWorld":
        """Start the gateway and return once `/readyz` says ready (or raise, leaving nothing running)."""
        if self.running:
            return self
        self.launch()
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.kill()
            raise
        return self

    def launch(self) -> "OpenClawWorld":
        """Start the gateway's process and return at once (`ready()` says when it answers)."""
        if self.running:
            return self
        self._reap_leftover()
        with open(self.logs / "gateway.log", "ab") as log:
            log.write(f"\n===== start {self.starts + 1} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.gateway_command(), cwd=self.root, env=self.env(),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.pid_file.write_text(f"{self.process.pid}\n")
        self.starts += 1
        return self

    def _reap_leftover(self) -> None:
        """SIGKILL the gateway an earlier owner of this folder left running (its owner was SIGKILLed: the
        gateway has a session of its own and outlives it), so that the port and the state are free."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        command = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True).stdout
        if "openclaw" in command:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            _wait_gone(pid)
        self.pid_file.unlink(missing_ok=True)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OpenClawWorldError(f"the OpenClaw gateway exited with {self.process.returncode} "
                                         f"during start-up:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise OpenClawWorldError(f"the OpenClaw gateway was not ready after {timeout_s:g} s:\n{self.log_tail()}")

    def readyz(self) -> dict[str, Any] | None:
        """The gateway's `/readyz` answer (no auth needed), or None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:          # 503 while starting
            try:
                return json.loads(exc.read())
            except ValueError:
                return None
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        answer = self.readyz()
        return bool(answer and answer.get("ready"))

    def kill(self) -> None:
        """SIGKILL the gateway's whole process group and reap it."""
        process, self.process = self.process, None
        if process is None:
            return
        _signal_group(process, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the gateway's group, SIGKILL it after `timeout_s`; nothing of it is left running."""
        process = self.process
        if process is None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
        self.process = process
        self.kill()                     # the group's other members, and the gateway if it did not stop

    def restart(self, hard: bool = False, timeout_s: float = READY_TIMEOUT_S) -> "OpenClawWorld":
        """Stop (or SIGKILL, when `hard`) and start again on the same port, with the same token and state."""
        self.kill() if hard else self.stop()
        return self.start(timeout_s)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = (self.logs / "gateway.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no gateway log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "OpenClawWorld":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _wait_gone(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)     # start_new_session: the group id is the gateway's pid
    except ProcessLookupError:
        pass
