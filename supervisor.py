"""Omni-Orchestrator: `python supervisor.py [--config PATH]` runs the supervised actor tree.

    python supervisor.py                      # $OMNI_HOME/config.yaml, else the embedded sandbox
    python supervisor.py --config my.yaml
    python supervisor.py validate [--config PATH]
    python supervisor.py proxy {start,stop,restart,status}   # the managed LiteLLM proxy
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import pykka
from rich.console import Console

from actors import (BrainstemController, ChildSpec, Directory, EventLoopThread, Executor, Gateway, HealthMonitor, Journal,
                    LiteLLMGuard, ProxyKeeper, Router, StateStore, Supervisor, SystemMode, TransitionFeed,
                    gateway_token)
from actors.gateway_auth import MissingToken
from config import Config, ConfigError, load_config, resolve_config_path

SUBSCRIBERS = ("router", "gateway", "console", "system_mode")


def build_tree(cfg: Config, journal: Journal, console: Console, token: str) -> list[ChildSpec]:
    """The children, in start order: the store first (everyone asks it), then the model route, the
    executors, the router, and the gateway (new work) last."""
    models = cfg.litellm is not None
    specs = [ChildSpec("state_store", lambda ctx: StateStore.start(ctx, cfg.database_path, cfg.tasks.max_attempts,
                                                                  journal, SUBSCRIBERS))]
    if cfg.providers is not None:
        from sandbox.world import SandboxProviders
        specs.append(ChildSpec("sandbox_providers", lambda ctx: SandboxProviders.start(ctx, cfg.providers, cfg.home)))
    if models and cfg.litellm.mode == "managed":
        specs.append(ChildSpec("litellm_proxy", lambda ctx: ProxyKeeper.start(ctx, cfg.litellm, cfg.home, journal)))
    if models:
        route_users = tuple(name for name, spec in cfg.executors.items() if spec.model_route)
        specs.append(ChildSpec("litellm_guard", lambda ctx: LiteLLMGuard.start(ctx, cfg.litellm, cfg.budget, journal,
                                                                               cfg.locale, route_users)))
    specs += [
        ChildSpec("system_mode", lambda ctx: SystemMode.start(ctx, cfg.repair, cfg.litellm, cfg.locale, journal,
                                                              cfg.home)),
        ChildSpec("brainstem", lambda ctx: BrainstemController.start(ctx, cfg.brainstem, cfg.locale, journal)),
    ]
    if models:
        specs.append(ChildSpec("health_monitor", lambda ctx: HealthMonitor.start(ctx, cfg.health, journal)))
    tier_models = {name: tier.proxy_model for name, tier in cfg.litellm.tiers.items()} if models else {}
    specs += [ChildSpec(name, lambda ctx, spec=spec: Executor.start(ctx, spec, cfg.tasks.max_attempts, journal,
                                                                     cfg.home, tier_models))
              for name, spec in cfg.executors.items()]
    specs += [
        ChildSpec("router", lambda ctx: Router.start(ctx, cfg.routing, cfg.tasks.reconcile_interval_s, models)),
        ChildSpec("gateway", lambda ctx: Gateway.start(ctx, cfg.gateway, token,
                                                       tuple(rule.kind for rule in cfg.routing.rules),
                                                       tuple(cfg.executors), cfg.home, models)),
        ChildSpec("console", lambda ctx: TransitionFeed.start(ctx, console)),
    ]
    if cfg.demo is not None:
        from sandbox.demo_traffic import DemoTraffic
        specs.append(ChildSpec("demo", lambda ctx: DemoTraffic.start(ctx, cfg.demo, token), restart="transient"))
    return specs


def run(cfg: Config, console: Console) -> int:
    cfg.home.mkdir(parents=True, exist_ok=True)
    journal = Journal(cfg.log_dir)
    loop = EventLoopThread().start()
    directory = Directory()
    finished = threading.Event()
    escalation: list[str] = []

    def escalate(reason: str) -> None:
        escalation.append(reason)
        finished.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: finished.set())
    tree = None
    try:
        token = gateway_token(cfg.gateway, cfg.home)
        console.print(f"Omni-Orchestrator on [bold]{cfg.source}[/]  (data in {cfg.home})", highlight=False)
        tree = Supervisor.start(build_tree(cfg, journal, console, token), cfg.supervision, loop, directory,
                                on_escalation=escalate)
        directory.register("supervisor", tree)
        finished.wait()
    finally:
        if tree is not None and tree.is_alive():   # the tree stops its children in reverse start order
            tree.stop(block=True, timeout=cfg.supervision.shutdown_timeout_s * (len(cfg.executors) + 4))
        pykka.ActorRegistry.stop_all(block=True, timeout=cfg.supervision.shutdown_timeout_s)
        loop.stop()
        journal.close()
    if escalation:
        console.print(f"[red]stopped: {escalation[0]}[/]", highlight=False)
        return 1
    console.print("stopped: every actor shut down in order", highlight=False)
    return 0


def configure_logging(cfg: Config) -> None:
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(cfg.log_dir / "supervisor.log", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.WARNING)
    to_stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    to_stderr.addFilter(lambda record: not record.name.startswith(("pykka", "mcp", "httpx", "uvicorn")))
    logging.basicConfig(level=logging.INFO, handlers=[to_file, to_stderr])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="supervisor.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "validate", "proxy"))
    parser.add_argument("action", nargs="?", help="proxy: start, stop, restart or status")
    parser.add_argument("--config", help="config file (default: $OMNI_HOME/config.yaml, else the sandbox)")
    parser.add_argument("--home", help="data directory (default: $OMNI_HOME, else ~/.omni)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.home:
        os.environ["OMNI_HOME"] = args.home
    if args.command == "proxy":
        from actors.litellm_proxy import main as proxy_main
        return proxy_main([args.action or "status"] + (["--config", args.config] if args.config else []))
    console = Console(file=sys.stdout)
    try:
        cfg = load_config(resolve_config_path(args.config))
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if args.command == "validate":
        console.print(f"{cfg.source}: sound ({len(cfg.executors)} executors, {len(cfg.routing.rules)} rules)")
        return 0
    configure_logging(cfg)
    try:
        return run(cfg, console)
    except MissingToken as missing:
        print(f"cannot start: {missing}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
