"""Process control of a *managed* LiteLLM proxy: start (with a deadline), stop, restart, status, log tail.

Plain blocking functions, usable from an actor (in a worker thread), the CLI (`cli.proxy`) and tests. The proxy
runs from its own venv (`.venv-litellm`), detached in its own session so that another process (the
repair flow's `restart` command) can stop and restart it; its pid is in `$OMNI_HOME/litellm.pid` and
its output goes to `$OMNI_HOME/logs/litellm.log`.

    pid = start_proxy(cfg.litellm, cfg.home)
    proxy_status(cfg.litellm, cfg.home)
    # → {'pid': 4242, 'alive': True, 'rss_mb': 351.2, 'answers': True}

    python supervisor.py proxy status --config ~/.omni/config.yaml
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from config import LiteLLMConfig
from redaction import redact_text

HOST = "127.0.0.1"            # no master key: the proxy accepts any key, so it listens on loopback only
POLL_S = 0.1
POLL_TIMEOUT_S = 0.5
LOG_MAX_BYTES = 10 * 1024 * 1024   # at start, a bigger log is moved to litellm.log.1
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # ignore $http_proxy for loopback
_PROCFS = Path("/proc/self/status").exists()   # Linux; macOS asks `ps`
_children: dict[int, subprocess.Popen] = {}   # proxies spawned here: polled so they never stay zombies

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ProxyStartFailed(RuntimeError):
    """The proxy did not come up; the message says why and ends with the last lines of its log."""


@dataclass(frozen=True)
class ProxyPaths:
    log: Path
    pid: Path
    fingerprint: Path   # what the proxy in `pid` was started with (see _fingerprint)


def proxy_paths(home: Path) -> ProxyPaths:
    """Where the managed proxy's log and pid file live.

    >>> proxy_paths(Path("/h"))
    ProxyPaths(log=PosixPath('/h/logs/litellm.log'), pid=PosixPath('/h/litellm.pid'), \
fingerprint=PosixPath('/h/litellm.fingerprint'))
    """
    home = Path(home)
    return ProxyPaths(log=home / "logs" / "litellm.log", pid=home / "litellm.pid",
                      fingerprint=home / "litellm.fingerprint")


def start_proxy(cfg: LiteLLMConfig, home: Path) -> int:
    """Spawn the proxy and wait until `GET {url}/health/liveliness` answers 200; its pid.

    Raises ProxyStartFailed (killing what it spawned) if the port is taken, a proxy of ours is already
    running, the process exits, or it does not answer within `cfg.start_deadline_s`.

    start_proxy(LiteLLMConfig(mode="managed", url="http://127.0.0.1:4000", tiers={},
                config_path="config/litellm.yaml", executable=".venv-litellm/bin/litellm"),
                Path("~/.omni").expanduser())
    # → 4242
    """
    paths = proxy_paths(home)
    if not cfg.executable or not cfg.config_path:
        raise ProxyStartFailed("a managed proxy needs `executable` and `config` in the litellm section")
    port = _port(cfg.url)
    running = _running_pid(cfg, paths)
    if running is not None:
        same = _recorded_fingerprint(paths) == _fingerprint(cfg)
        raise ProxyStartFailed(f"a LiteLLM proxy is already running (pid {running}"
                               f"{'' if same else ', started with another configuration'}); use restart")
    if _listening(port):
        raise ProxyStartFailed(f"something already listens on {HOST}:{port} (not our proxy: no live pid in "
                               f"{paths.pid}); stop it or change litellm.url")
    command = _proxy_command(cfg)
    env = {**os.environ, **cfg.env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    _rotate(paths.log)
    with open(paths.log, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
        log.flush()
        try:
            child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as err:
            raise ProxyStartFailed(f"cannot run {cfg.executable}: {err.strerror} (make setup?)") from None
    _children[child.pid] = child
    _write_pid(paths, child.pid, _fingerprint(cfg))
    return _await_answer(cfg, home, child.pid,
                         lambda: None if child.poll() is None else f" with code {child.returncode}")


def adopt_or_start_proxy(cfg: LiteLLMConfig, home: Path) -> tuple[int, bool]:
    """The managed proxy answering, as the keeper wants it at start-up; its pid, and True if adopted.

    A proxy of ours that is already running (our pid file, a live process, started with this very
    configuration), e.g. left behind, detached, by a supervisor that was SIGKILLed, is adopted and waited
    for as a fresh start would be (ProxyStartFailed if it exits or misses the start deadline: then it is
    killed). Otherwise a new one is started, with start_proxy's refusals (a foreign process on the port,
    a proxy of ours with another configuration).

    adopt_or_start_proxy(cfg.litellm, cfg.home)
    # → (4242, True)
    """
    paths = proxy_paths(home)
    pid = _running_pid(cfg, paths) if cfg.executable and cfg.config_path else None
    if pid is None or _recorded_fingerprint(paths) != _fingerprint(cfg):
        return start_proxy(cfg, home), False
    return _await_answer(cfg, home, pid, lambda: None if _alive(pid) else ""), True


def _await_answer(cfg: LiteLLMConfig, home: Path, pid: int, exited: Callable[[], str | None]) -> int:
    """Wait until the proxy `pid` answers its liveliness URL; `exited()` is None while it runs, else how
    it ended (" with code -9", or "" when unknown). A proxy that exits or misses the start deadline is killed (its
    group) and reported."""
    deadline = time.monotonic() + cfg.start_deadline_s
    while True:
        code = exited()
        if code is not None:
            why = f"exited{code} during start-up"
            break
        if _answers(cfg.url, POLL_TIMEOUT_S):
            return pid
        if time.monotonic() > deadline:
            why = f"did not answer {cfg.url}/health/liveliness within {cfg.start_deadline_s:g} s"
            break
        time.sleep(POLL_S)
    paths = proxy_paths(home)
    _kill_group(pid, signal.SIGKILL)
    _wait_gone(pid, 5)
    _forget_pid(paths)
    raise ProxyStartFailed(f"LiteLLM proxy {why}; log {paths.log}, last lines:\n{log_tail(home, 20)}")


def stop_proxy(cfg: LiteLLMConfig, home: Path, timeout_s: float = 10) -> bool:
    """SIGTERM the proxy in the pid file (and its process group), SIGKILL after `timeout_s`;
    removes the pid file. True if one was running. A stale pid file (e.g. after a SIGKILL) is just removed.

    stop_proxy(cfg.litellm, cfg.home)
    # → True
    """
    paths = proxy_paths(home)
    pid = _running_pid(cfg, paths)
    if pid is not None:
        _kill_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s):
            _kill_group(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
        _kill_group(pid, signal.SIGKILL, leader_too=False)   # anything the proxy left in its group
    _forget_pid(paths)
    return pid is not None


def restart_proxy(cfg: LiteLLMConfig, home: Path) -> int:
    """Stop the proxy (if any), then start it; the new pid.

    restart_proxy(cfg.litellm, cfg.home)
    # → 4243
    """
    stop_proxy(cfg, home)
    return start_proxy(cfg, home)


def proxy_status(cfg: LiteLLMConfig, home: Path) -> dict:
    """The managed proxy's pid (None without a live one), liveness, RSS in MB and whether
    `/health/liveliness` answers 200 within `cfg.probe_timeout_s` (an external proxy: only `answers`).

    proxy_status(cfg.litellm, cfg.home)
    # → {'pid': 4242, 'alive': True, 'rss_mb': 351.2, 'answers': True}
    """
    pid = _running_pid(cfg, proxy_paths(home))
    return {"pid": pid, "alive": pid is not None, "rss_mb": None if pid is None else _rss_mb(pid),
            "answers": _answers(cfg.url, cfg.probe_timeout_s)}


def log_tail(home: Path, lines: int = 40) -> str:
    """The last `lines` lines of the proxy log, colour codes stripped and anything key-like redacted.

    >>> log_tail(Path("/nonexistent"))
    ''
    """
    path = proxy_paths(home).log
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - max(65536, lines * 1000)))
            text = log.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(redact_text(line) for line in _ANSI.sub("", text).splitlines()[-lines:])


# ---------------------------------------------------------------- helpers

def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _answers(url: str, timeout_s: float) -> bool:
    try:
        with _NO_PROXY.open(f"{url}/health/liveliness", timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):   # URLError, HTTPError, timeouts, resets are all OSErrors
        return False


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(POLL_TIMEOUT_S)
        return sock.connect_ex((HOST, port)) == 0


def _proxy_command(cfg: LiteLLMConfig) -> list[str]:
    return [cfg.executable, "--config", cfg.config_path, "--host", HOST, "--port", str(_port(cfg.url))]


def _fingerprint(cfg: LiteLLMConfig) -> str:
    """What a proxy was started with (command, environment from config, the proxy's own YAML), hashed:
    a proxy found running is adopted only if it matches. Hashed, so that no value is written out."""
    try:
        proxy_yaml = Path(cfg.config_path or "").read_bytes()
    except OSError:
        proxy_yaml = b""
    blob = json.dumps([_proxy_command(cfg), sorted(cfg.env.items())]).encode() + b"\0" + proxy_yaml
    return hashlib.sha256(blob).hexdigest()[:16]


def _write_pid(paths: ProxyPaths, pid: int, fingerprint: str) -> None:
    """The fingerprint first, then the pid (the pid file stays a bare pid: `kill $(cat litellm.pid)`)."""
    for path, text in ((paths.fingerprint, fingerprint), (paths.pid, str(pid))):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"{text}\n")
        os.replace(tmp, path)


def _recorded_fingerprint(paths: ProxyPaths) -> str | None:
    try:
        return paths.fingerprint.read_text().strip()
    except FileNotFoundError:
        return None


def _forget_pid(paths: ProxyPaths) -> None:
    paths.pid.unlink(missing_ok=True)
    paths.fingerprint.unlink(missing_ok=True)


def _rotate(log: Path) -> None:
    try:
        if log.stat().st_size > LOG_MAX_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
    except FileNotFoundError:
        pass


def _running_pid(cfg: LiteLLMConfig, paths: ProxyPaths) -> int | None:
    """The pid in the pid file if that process is alive and runs the proxy (not a reused pid)."""
    try:
        pid = int(paths.pid.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    command = _command(pid) if _alive(pid) else ""
    return pid if "litellm" in command or Path(cfg.executable or "litellm").name in command else None


def _alive(pid: int) -> bool:
    """True for a live process; reaps our own exited children; a zombie counts as dead.

    Our own child is alive until reaped: while it exits its command line is already empty, and calling it
    gone then would leave a zombie behind (and a pid that still exists) after `stop_proxy` returned."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _command(pid) != ""


def _command(pid: int) -> str:
    """The process's command line ('' for a zombie or a gone process)."""
    if _PROCFS:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode(errors="replace").strip()
    result = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True)
    stat, _, command = result.stdout.strip().partition(" ")
    return "" if not stat or stat.startswith("Z") else command.strip()


def _rss_mb(pid: int) -> float | None:
    if _PROCFS:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            return None
        return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), None)
    result = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return int(result.stdout.strip()) / 1024 if result.stdout.strip().isdigit() else None


def _kill_group(pid: int, sig: signal.Signals, leader_too: bool = True) -> None:
    """Signal the process group led by `pid` (the proxy's own session), or `pid` alone if it leads none."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        if leader_too:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    except PermissionError:
        pass


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
