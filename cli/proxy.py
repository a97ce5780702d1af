"""`python supervisor.py proxy {start,stop,restart,status}`: the managed LiteLLM proxy by hand (one line, exit 0/1)."""
from __future__ import annotations

import argparse
import sys

from clients import ProxyStartFailed, proxy_status, restart_proxy, start_proxy, stop_proxy
from config import ConfigError, load_config, resolve_config_path


def main(argv: list[str] | None = None) -> int:
    """python supervisor.py proxy {start,stop,restart,status} [--config OMNI_CONFIG]: one line, exit 0/1.

    main(["status", "--config", "config/sandbox.yaml"])
    # → LiteLLM proxy http://127.0.0.1:14000: answers; pid 4242, 351 MB
    # → 0
    """
    parser = argparse.ArgumentParser(prog="python supervisor.py proxy",
                                     description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("action", choices=("start", "stop", "restart", "status"))
    parser.add_argument("--config", help="the orchestrator's config (default: $OMNI_HOME/config.yaml, "
                                         "else the embedded sandbox)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(resolve_config_path(args.config))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 1
    lite, home = cfg.litellm, cfg.home
    if lite is None:
        print(f"{cfg.source}: no litellm section", file=sys.stderr)
        return 1
    if args.action != "status" and lite.mode != "managed":
        print(f"the LiteLLM proxy at {lite.url} is external (litellm.mode): start and stop it yourself",
              file=sys.stderr)
        return 1
    try:
        if args.action == "start":
            print(f"LiteLLM proxy started: pid {start_proxy(lite, home)}, {lite.url}")
        elif args.action == "restart":
            print(f"LiteLLM proxy restarted: pid {restart_proxy(lite, home)}, {lite.url}")
        elif args.action == "stop":
            print("LiteLLM proxy stopped" if stop_proxy(lite, home) else "no LiteLLM proxy was running")
        else:
            status = proxy_status(lite, home)
            rss = "" if status["rss_mb"] is None else f", {status['rss_mb']:.0f} MB"
            print(f"LiteLLM proxy {lite.url}: {'answers' if status['answers'] else 'does NOT answer'}; "
                  f"pid {status['pid'] or '-'}{rss}")
            return 0 if status["answers"] else 1
    except ProxyStartFailed as err:
        print(f"LiteLLM proxy {args.action} failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
