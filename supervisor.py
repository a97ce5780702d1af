"""Omni-Orchestrator: `python supervisor.py [--config PATH]` runs the supervised actor tree.

    python supervisor.py                      # $OMNI_HOME/config.yaml, else the embedded sandbox
    python supervisor.py --config my.yaml
    python supervisor.py validate [--config PATH]      # the config, then every MCP server and service in it
    python supervisor.py drill NAME                     # litellm-kill, cloud-outage, rate-limit, executor-crash,
                                                        # actor-crash, heal (the sandbox's fault drills)
    python supervisor.py proxy {start,stop,restart,status}   # the managed LiteLLM proxy
    python supervisor.py send "TEXT" [--sender S]      # one IM command (/status …) through the running gateway
    python supervisor.py repl                           # attach to the running supervisor's REPL
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
from rich.markup import escape

from actor_tree import build_tree
from cli.validate import report as validate_report
from config import Config, ConfigError, load_config, resolve_config_path
from gateway import MissingToken, gateway_token
from runtime import Directory, EventLoopThread, Journal, Supervisor
from vocabulary import ActorName


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
    tree = repl = None
    try:
        token = gateway_token(cfg.gateway, cfg.home)
        console.print(f"Omni-Orchestrator on [bold]{cfg.source}[/]  (data in {cfg.home})", highlight=False)
        (cfg.home / "supervisor.pid").write_text(f"{os.getpid()}\n")   # for drills and `send`
        tree = Supervisor.start(build_tree(cfg, journal, console, token), cfg.supervision, loop, directory,
                                on_escalation=escalate)
        directory.register(ActorName.SUPERVISOR, tree)
        from surfaces.repl import ReplServer, repl_namespace
        repl = ReplServer(cfg.home, repl_namespace(directory, cfg)).start()   # `python supervisor.py repl` attaches
        if console.is_terminal:   # the Rich live console; else the TransitionFeed prints one log line per event
            from surfaces.live_console import run_live
            run_live(console, directory, cfg, finished)
        else:
            finished.wait()
    finally:
        if repl is not None:   # first: no session may drive a tree that is stopping
            repl.stop()
        if tree is not None and tree.is_alive():   # the tree stops its children in reverse start order
            tree.stop(block=True, timeout=cfg.supervision.shutdown_timeout_s * (len(cfg.executors) + 4))
        pykka.ActorRegistry.stop_all(block=True, timeout=cfg.supervision.shutdown_timeout_s)
        loop.stop()
        journal.close()
    if escalation:   # the log has it too (critical, from the Supervisor)
        console.print(f"[red]stopped: {escape(escalation[0])}[/]", highlight=False)
        print(f"supervisor escalated, the tree is stopped: {escalation[0]}", file=sys.stderr)
        return 1
    console.print("stopped: every actor shut down in order", highlight=False)
    return 0


def configure_logging(cfg: Config) -> None:
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(cfg.log_dir / "supervisor.log", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
    from surfaces.live_console import QUIET_LOGGERS, CurrentStderr
    to_stderr = logging.StreamHandler(CurrentStderr())   # the live console redirects it; it never tears the screen
    to_stderr.setLevel(logging.WARNING)
    to_stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    to_stderr.addFilter(lambda record: not record.name.startswith(QUIET_LOGGERS))
    logging.basicConfig(level=logging.INFO, handlers=[to_file, to_stderr])
    for chatty in ("httpx", "httpx2"):   # a line for every liveliness probe, each second: noise and idle CPU
        logging.getLogger(chatty).setLevel(logging.WARNING)


def run_drill_command(name: str | None, cfg: Config, console: Console) -> int:
    from cli.drills import DrillError, run_drill
    try:
        console.print(run_drill(name or "", cfg), highlight=False)
    except DrillError as error:
        print(f"drill {name or '(none)'}: {error}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="supervisor.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "validate", "proxy", "drill", "repl",
                                                                         "send"))
    parser.add_argument("action", nargs="?", help="proxy: start, stop, restart or status; send: the text")
    parser.add_argument("--sender", help="send: who asks (default: cli:<your login>, allowed by im.allow cli:*)")
    parser.add_argument("--config", help="config file (default: $OMNI_HOME/config.yaml, else the sandbox)")
    parser.add_argument("--home", help="data directory (default: $OMNI_HOME, else ~/.omni)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.home:
        os.environ["OMNI_HOME"] = args.home
    if args.command == "proxy":
        from cli.proxy import main as proxy_main
        return proxy_main([args.action or "status"] + (["--config", args.config] if args.config else []))
    if args.command == "send":
        from cli.send import send_from_cli
        return send_from_cli(args.action, args.sender, args.config)
    if args.command == "repl":
        from config import omni_home
        from cli.attach import attach
        return attach(omni_home())
    console = Console(file=sys.stdout)
    try:
        cfg = load_config(resolve_config_path(args.config))
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 1 if args.command == "validate" else 2
    if args.command == "validate":
        return validate_report(cfg, console)
    if args.command == "drill":
        return run_drill_command(args.action, cfg, console)
    configure_logging(cfg)
    try:
        return run(cfg, console)
    except MissingToken as missing:
        print(f"cannot start: {missing}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
