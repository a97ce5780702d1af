"""Fixtures that start real parts on loopback and always stop them.

- `omni_home`: a fresh `$OMNI_HOME` and gateway token for the test.
- `write_config(**overrides)`: the sandbox config with a free port, no demo traffic, and overrides merged in.
- `start_tree(config_path)`: the whole supervised tree in this process (real stdio MCP executors, real
  HTTP gateway, real SQLite); stopped at teardown, failed or not.
- `live_models`: the model route on the session's one LiteLLM proxy and simulated providers (reset per test);
  `models_world`: a route of the test's own, for tests that kill, restart or starve the proxy.
- the real OpenClaw's fixtures (`openclaw_world`, `real_im_config`, `telegram`): see tests/real_openclaw.py.

Tests that use any fixture starting processes are marked `slow` (see PROCESS_FIXTURES at the end). `make test` runs
the suite on pytest-xdist workers: what they share and what they must not, at the end too.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pykka
import pytest
import yaml
from rich.console import Console

import actor_tree
from runtime.directory import Directory, Watcher
from runtime.event_loop import EventLoopThread
from runtime.journal import Journal
from runtime.supervisor import Supervisor
from config import EMBEDDED_DEFAULT, PROJECT_ROOT, Config, load_config, overlay
from sandbox.openclaw_world import READY_TIMEOUT_S as OPENCLAW_READY_TIMEOUT_S

# The real OpenClaw's fixtures, for every module: one gateway for the whole session (tests/real_openclaw.py).
from .real_openclaw import (_openclaw_world_running, openclaw_models, openclaw_world,  # noqa: F401
                            real_im_config, telegram, telegram_api)

TOKEN = "test-token-" + "x" * 20
SHARED_PROXY_PROBE_TIMEOUT_S = 5   # the session's shared proxy: see _shared_models
PROXY_START_S = 60    # a LiteLLM proxy's start deadline: ready in ~5 s idle, far longer on a starved machine


@pytest.fixture(autouse=True)
def stop_all_actors():
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=10)


@pytest.fixture
def omni_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "omni-home"
    home.mkdir()
    monkeypatch.setenv("OMNI_HOME", str(home))
    monkeypatch.setenv("OMNI_GATEWAY_TOKEN", TOKEN)
    return home


@pytest.fixture
def write_config(omni_home) -> Callable[..., Path]:
    def write(models: dict[str, Any] | None = None, keep_memory: bool = False, **overrides: Any) -> Path:
        """`models`: the `models_world` fixture's ports, to include the model route; else none is configured.
        `keep_memory`: keep the sandbox's memory (the MemOS stand-in); else none is configured."""
        raw = yaml.safe_load(EMBEDDED_DEFAULT.read_text())
        raw.pop("demo", None)
        if not keep_memory:
            raw.pop("memory", None)
        raw.pop("sandbox_openclaw", None)   # a real OpenClaw gateway only where a test asks for one
        if models is None:
            for section in ("litellm", "providers", "api_keys"):
                raw.pop(section, None)
            raw["routing"]["classify_with_model"] = False
        else:
            raw = overlay(raw, models)
        if "openclaw" in raw.get("im", {}):   # the stub bridge's admin endpoint on a free port, as the gateway's
            raw["im"]["openclaw"]["args"] = ["-m", "sandbox.openclaw_stub", "--admin-port", "0"]
        raw = overlay(raw, {"gateway": {"port": 0, "generate_token": False},
                          "supervision": {"backoff_initial_s": 0.01, "sweep_interval_s": 0.2},
                          "tasks": {"reconcile_interval_s": 0.5}})
        raw = overlay(raw, overrides)
        path = omni_home / "test-config.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
        return path
    return write


@dataclass
class Tree:
    cfg: Config
    directory: Directory
    loop: EventLoopThread
    supervisor: pykka.ActorRef
    journal: Journal
    escalations: list[str]

    @property
    def url(self) -> str:
        return self.directory.ask("gateway", _introspect())["url"]

    def ask(self, name: str, message: Any, timeout_s: float = 10) -> Any:
        return self.directory.ask(name, message, timeout_s)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.cfg.database_path)


def _introspect():
    from messages import Introspect
    return Introspect()


@pytest.fixture
def start_tree(omni_home):
    trees: list[Tree] = []

    def start(config_path: Path, wait_for_executors: bool = True, watchers: tuple[Watcher, ...] = ()) -> Tree:
        """`watchers`: called on every ask in the tree from its start (`Directory.watch`)."""
        cfg = load_config(config_path)
        journal = Journal(cfg.log_dir)
        loop = EventLoopThread().start()
        directory = Directory()
        for watcher in watchers:
            directory.watch(watcher)
        escalations: list[str] = []
        specs = actor_tree.build_tree(cfg, journal, Console(file=open(os.devnull, "w")), TOKEN)
        tree_ref = Supervisor.start(specs, cfg.supervision, loop, directory, on_escalation=escalations.append)
        directory.register("supervisor", tree_ref)
        tree = Tree(cfg, directory, loop, tree_ref, journal, escalations)
        trees.append(tree)
        if wait_for_executors:
            wait_until(lambda: all(e["link"] == "up" for e in executors_snapshot(tree).values()),
                       timeout_s=30, what="executors' MCP servers up")
        return tree

    yield start
    with contextlib.ExitStack() as stops:   # every step runs, even after one that failed; trees in start order
        for tree in reversed(trees):
            stops.callback(tree.journal.close)
            stops.callback(tree.loop.stop)
            stops.callback(_stop_supervisor, tree)


def _stop_supervisor(tree: Tree) -> None:
    if tree.supervisor.is_alive():
        tree.supervisor.stop(block=True, timeout=30)


def executors_snapshot(tree: Tree) -> dict[str, dict[str, Any]]:
    return {name: tree.ask(name, _introspect()) for name in tree.cfg.executors}


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.02) -> Any:
    """Poll `condition` until it is truthy; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def task_states(db_path: Path) -> dict[int, str]:
    with sqlite3.connect(db_path) as db:
        return dict(db.execute("select id, state from task"))


class SupervisorProcess:
    """`python supervisor.py --config …` as a real child process."""

    def __init__(self, config_path: Path, home: Path):
        self.config_path, self.home = config_path, home
        self.log = open(home / "supervisor-stdout.log", "ab")
        self.process: subprocess.Popen | None = None

    def start(self) -> SupervisorProcess:
        url_file = self.home / "gateway.url"
        url_file.unlink(missing_ok=True)
        self.process = subprocess.Popen([sys.executable, "supervisor.py", "--config", str(self.config_path)],
                                        cwd=PROJECT_ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_until(lambda: url_file.exists() or self.process.poll() is not None, 30, "the gateway to listen")
        assert self.process.poll() is None, (self.home / "supervisor-stdout.log").read_text()
        return self

    @property
    def url(self) -> str:
        return (self.home / "gateway.url").read_text().strip()

    def kill(self) -> None:
        """SIGKILL the supervisor (its MCP server children are left to notice their closed stdin)."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        try:   # and whatever MCP server children it left behind
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.process.returncode


@pytest.fixture
def supervisor_process(omni_home):
    started: list[SupervisorProcess] = []

    def launch(config_path: Path) -> SupervisorProcess:
        proc = SupervisorProcess(config_path, omni_home).start()
        started.append(proc)
        return proc

    yield launch
    for proc in started:
        proc.stop()
        proc.log.close()


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _model_overrides(ports: dict[str, int]) -> dict[str, Any]:
    """Config overrides for the model route on these ports: simulated providers, a managed real LiteLLM proxy,
    fast probes."""
    direct = f"http://127.0.0.1:{ports['direct']}/v1"
    return {
        "providers": {name: ports[name] for name in ("admin", "free", "paid", "direct")},
        "litellm": {"url": f"http://127.0.0.1:{ports['proxy']}", "probe_interval_s": 1,
                    "start_deadline_s": PROXY_START_S,
                    "env": {"OMNI_SANDBOX_FREE_URL": f"http://127.0.0.1:{ports['free']}/v1",
                            "OMNI_SANDBOX_PAID_URL": f"http://127.0.0.1:{ports['paid']}/v1"},
                    "tiers": {"P1": {"direct_api_base": direct}, "P2": {"direct_api_base": direct}}},
        "repair": {"verify_s": 6, "backoff_initial_s": 60},
    }


def _require_litellm_venv() -> None:
    if not (PROJECT_ROOT / ".venv-litellm" / "bin" / "litellm").exists():
        pytest.fail("the LiteLLM proxy's venv is missing: run `make setup`")


@pytest.fixture
def models_world(omni_home):
    """Config overrides for a model route of the test's own: the tree starts the simulated providers and its
    managed LiteLLM proxy on free ports. For tests that kill, restart or starve the proxy (or read its pid); the
    proxy outlives a tree by design (it is detached), so teardown kills it. Tests that only need a live proxy
    take `live_models`."""
    _require_litellm_venv()
    yield _model_overrides({name: free_port() for name in ("admin", "free", "paid", "direct", "proxy")})
    pid_file = omni_home / "litellm.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@dataclass
class SharedModels:
    overrides: dict[str, Any]
    providers: Any              # sandbox.providers.ProvidersAdmin
    ready: dict[str, Any]       # the providers' ready file: {"admin": URL, "upstreams": {...}}
    litellm: Any                # config.LiteLLMConfig of the proxy
    home: Path


@pytest.fixture(scope="session")
def _shared_models(tmp_path_factory) -> SharedModels:
    """One set of simulated providers and one real LiteLLM proxy in front of them, for the whole session (a
    proxy takes 5–10 s to start). Started here, not by a tree: to a tree it is an `external` proxy (no keeper), so
    no tree starts, restarts or stops it."""
    _require_litellm_venv()
    from clients.litellm_proxy import start_proxy, stop_proxy
    from sandbox.providers import ProvidersAdmin, start_providers, stop_providers
    from sandbox.tiny_model import make_tiny_qwen2
    home = tmp_path_factory.mktemp("shared-models")
    ports = {name: free_port() for name in ("admin", "free", "paid", "direct", "proxy")}
    overrides = _model_overrides(ports)
    process, ready = start_providers({name: ports[name] for name in ("free", "paid", "direct")}, ports["admin"],
                                     home / "providers.json")
    litellm = None
    try:
        config_path = home / "config.yaml"
        raw = yaml.safe_load(EMBEDDED_DEFAULT.read_text())
        raw.pop("sandbox_openclaw", None)
        config_path.write_text(yaml.safe_dump(overlay(raw, overrides)))
        litellm = load_config(config_path).litellm
        start_proxy(litellm, home)
        # the sandbox's brainstem model, which a tree's own providers would have made in the test's home
        overrides["brainstem"] = {"model_path": str(make_tiny_qwen2(home / "models" / "tiny-qwen2"))}
        overrides["providers"] = None     # the tree starts none: these are shared
        overrides["litellm"]["mode"] = "external"   # nor a proxy: this one answers already, and outlives it
        # No test kills, stops or starves this proxy: a liveness probe of it that misses the seed's 0.8 s says only
        # that the machine was busy (a tree starting in the test's own process, the other workers), and a guard that
        # took it for a dead proxy would start a repair task the test never asked for.
        overrides["litellm"]["probe_timeout_s"] = SHARED_PROXY_PROBE_TIMEOUT_S
        yield SharedModels(overrides, ProvidersAdmin(ready["admin"]), ready, litellm, home)
    finally:
        if litellm is not None:
            stop_proxy(litellm, home, timeout_s=2)
        stop_providers(process)


@pytest.fixture
def live_models(_shared_models, omni_home) -> dict[str, Any]:
    """Config overrides for the model route on the session's shared providers and LiteLLM proxy, for tests that
    only need a live proxy (they must not kill or restart it). Each test gets them as a fresh world would be:
    every upstream back to `ok` with no calls counted, the proxy answering, and the providers' admin URL in
    `$OMNI_HOME/providers.json` where a tree's own providers write it."""
    from clients.litellm_proxy import proxy_status
    shared = _shared_models
    shared.providers.reset()
    status = proxy_status(shared.litellm, shared.home)
    assert status["alive"] and status["answers"], f"the shared LiteLLM proxy is not answering: {status}"
    (omni_home / "providers.json").write_text(json.dumps(shared.ready))
    return copy.deepcopy(shared.overrides)


# Fixtures that start processes or a whole tree: a test using any of them (directly or through another fixture) is
# `slow`, left out of `make test-fast`. A test that starts processes by itself carries the marker in its module.
PROCESS_FIXTURES = {"start_tree", "supervisor_process", "models_world", "live_models", "openclaw_world",
                    "moltworker_status"}

# Session fixtures started in the setup of the first test (on each worker) that needs them, and how long their start
# may take by design: that test's pytest-timeout gets this much more, or a slow start would count as its hang.
SESSION_STARTS_S = {"_openclaw_world_running": OPENCLAW_READY_TIMEOUT_S, "_shared_models": PROXY_START_S}

# `make test` runs on several pytest-xdist workers (`-n 2 --dist loadgroup`). Each worker is a session of its own:
# session fixtures are made once per worker that needs them, on free ports, in that worker's own tmp_path. A fixture
# costly enough to be made once is kept to one worker by an xdist group: every test against the real OpenClaw
# gateway ("openclaw": one gateway costs ~20 s of CPU to start), and the tests of a module sharing a module- or
# class-scoped fixture (the module's path).
OPENCLAW_GROUP = "openclaw"


def _xdist_group(item: pytest.Item) -> str | None:
    names = set(getattr(item, "fixturenames", ()))
    if "_openclaw_world_running" in names:
        return OPENCLAW_GROUP
    info = getattr(item, "_fixtureinfo", None)
    for name in names:
        definitions = info.name2fixturedefs.get(name) if info is not None else None
        if definitions and definitions[-1].scope in ("module", "class"):
            return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    timeout_s = float(config.getini("timeout") or 0)
    grouped = config.pluginmanager.hasplugin("xdist")
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if PROCESS_FIXTURES & names:
            item.add_marker(pytest.mark.slow)
        starts_s = sum(seconds for name, seconds in SESSION_STARTS_S.items() if name in names)
        if timeout_s and starts_s and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(timeout_s + starts_s))
        if grouped and (group := _xdist_group(item)):
            item.add_marker(pytest.mark.xdist_group(group))
