"""The simulated providers as a supervised child of the sandbox's tree: started with the tree, stopped
with it, and restarted if the process dies. Its admin URL is in `$OMNI_HOME/providers.json`, for drills.
It also makes the sandbox's brainstem model (a tiny random Qwen2, offline) when it is not there yet.

Neither holds up the tree's start (the gateway answers sooner): the providers' process is spawned and its
ready file read on the next check, and the model is made by a child process (`python -m sandbox.tiny_model`),
so mlx never weighs on the supervisor's memory unless the brainstem loads it.

`SandboxOpenClaw` is the sandbox's real OpenClaw gateway (config `sandbox_openclaw`, when OpenClaw is installed)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from config import PROJECT_ROOT
from messages import Reconcile
from runtime import ChildContext, SupervisedActor

READY_FILE = "providers.json"
CHECK_INTERVAL_S = 1.0


class SandboxProviders(SupervisedActor):
    def __init__(self, context: ChildContext, ports: Mapping[str, int], home: Path, model_path: str | None = None):
        super().__init__(context)
        self._ports = dict(ports)
        self._home = home
        self._model_path = model_path
        self._process: subprocess.Popen | None = None
        self._model_maker: subprocess.Popen | None = None
        self._spawned_at = 0.0
        self.ready: dict[str, Any] = {}

    def started(self) -> None:
        from .providers import spawn_providers
        upstreams = {name: port for name, port in self._ports.items() if name != "admin"}
        self._process = spawn_providers(upstreams, self._ports.get("admin", 0), self._home / READY_FILE)
        self._spawned_at = time.monotonic()
        self.loop.tell_every(CHECK_INTERVAL_S, self.actor_ref, Reconcile())
        if self._model_path and Path(self._model_path).parent == self._home / "models":
            self._make_model(Path(self._model_path))

    def _make_model(self, path: Path) -> None:
        """~1 s, once; a real install configures a real model."""
        from .tiny_model import is_complete
        if not is_complete(path):
            self._model_maker = subprocess.Popen([sys.executable, "-m", "sandbox.tiny_model", str(path)],
                                                 cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def release(self) -> None:
        from .providers import stop_providers
        stop_providers(self._process)
        stop_providers(self._model_maker)

    def on_receive(self, message: Any) -> Any:
        match message:
            case Reconcile():
                self._check()
            case _:
                return self.unhandled(message)

    def _check(self) -> None:
        from .providers import READY_DEADLINE_S
        if self._process.poll() is not None:
            raise RuntimeError(f"the simulated providers exited with code {self._process.returncode}")
        if not self._read_ready() and time.monotonic() - self._spawned_at > READY_DEADLINE_S:
            raise RuntimeError(f"the simulated providers were not ready within {READY_DEADLINE_S:g}s")

    def _read_ready(self) -> dict[str, Any]:
        if not self.ready and (self._home / READY_FILE).exists():   # written whole, once it listens
            self.ready = json.loads((self._home / READY_FILE).read_text(encoding="utf-8"))
        return self.ready

    def snapshot(self) -> dict[str, Any]:
        self._read_ready()
        alive = self._process is not None and self._process.poll() is None
        return {"alive": alive, **self.ready}


OPENCLAW_STOP_S = 4.0    # SIGTERM takes ~4 s; then SIGKILL (the tree gives each child shutdown_timeout_s)


class SandboxOpenClaw(SupervisedActor):
    """A real OpenClaw gateway for the sandbox, in `$OMNI_HOME/openclaw`: its agent "main" (on a simulated
    provider) runs the general executor's turns. Started without waiting (the executor's health URL waits for
    it, up to 2 minutes), restarted by the supervisor when its process dies, stopped with the tree. Its
    Telegram channel is off: the sandbox's IM is the stub bridge."""

    def __init__(self, context: ChildContext, settings: Any, home: Path):
        super().__init__(context)
        self._settings = settings
        self._home = home
        self._world: Any = None

    def started(self) -> None:
        from .openclaw_world import OpenClawWorld
        self._world = OpenClawWorld(self._home / "openclaw", telegram_api_root="http://127.0.0.1:9",
                                    bot_token="0:sandbox-telegram-off", model_base_url=self._settings.model_url,
                                    port=self._settings.port, token=self._settings.token,
                                    overrides={"channels": {"telegram": {"enabled": False}}})
        self._world.launch()
        self.loop.tell_every(CHECK_INTERVAL_S, self.actor_ref, Reconcile())

    def release(self) -> None:
        if self._world is not None:
            self._world.stop(OPENCLAW_STOP_S)

    def on_receive(self, message: Any) -> Any:
        match message:
            case Reconcile() if not self._world.running:
                raise RuntimeError(f"the sandbox's OpenClaw gateway exited:\n{self._world.log_tail(5)}")
            case Reconcile():
                pass
            case _:
                return self.unhandled(message)

    def snapshot(self) -> dict[str, Any]:
        world = self._world
        return {"alive": bool(world and world.running), "url": world.url if world else None,
                "pid": world.process.pid if world and world.running else None}
