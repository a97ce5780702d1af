"""`python supervisor.py send "TEXT" [--sender S]`: one IM command through the running supervisor's gateway,
as a local operator (`cli:<login>`); the reply is printed.

    python supervisor.py send "/status"
"""
from __future__ import annotations

import asyncio
import getpass
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from clients import GatewayError, GatewaySession
from config import ConfigError, GatewayConfig, load_config, omni_home, resolve_config_path
from gateway import TOKEN_FILE, read_gateway_url


def default_sender() -> str:
    """The local operator, as `send` names them: `cli:<login>` (allowed by `cli:*` in the shipped configs)."""
    return f"cli:{getpass.getuser()}"


def send_from_cli(text: str | None, sender: str | None, config_path: str | None) -> int:
    """`python supervisor.py send "TEXT" [--sender S]`: print the reply; exit 1 when no supervisor answers."""
    if not text:
        print('send: say what to send, e.g. python supervisor.py send "/status"', file=sys.stderr)
        return 1
    try:   # the gateway's token variable, if the config names another; `send` works without a sound config too
        token_env = load_config(resolve_config_path(config_path)).gateway.token_env
    except ConfigError:
        token_env = GatewayConfig().token_env
    code, output = send(text, sender or default_sender(), omni_home(), token_env)
    print(output, file=sys.stdout if code == 0 else sys.stderr)
    return code


def send(text: str, sender: str, home: Path, token_env: str) -> tuple[int, str]:
    """Send one IM command through the running supervisor's gateway: (exit code, the reply or what went wrong)."""
    try:
        url = read_gateway_url(home)
    except FileNotFoundError:
        return 1, f"no supervisor is running with data in {home} (no gateway.url): start it with `make run`"
    token = os.environ.get(token_env, "").strip() or _read(home / TOKEN_FILE)
    if not token:
        return 1, f"no gateway token: set {token_env}, or run the sandbox, which writes {home / TOKEN_FILE}"
    if problem := _gateway_problem(url, token, token_env):
        return 1, problem

    async def call() -> str:
        async with GatewaySession(url, token, timeout_s=40) as gateway:
            return (await gateway.call("command", text=text, sender=sender))["reply"]

    try:
        return 0, asyncio.run(call())
    except GatewayError as error:
        return 1, f"the gateway refused the command: {error}"
    except (Exception, asyncio.CancelledError) as error:
        return 1, f"the gateway at {url} did not answer the command ({type(error).__name__}: {error})"


def _gateway_problem(url: str, token: str, token_env: str) -> str | None:
    """Why the gateway at `url` cannot take our call, in plain words (None: it can), before MCP is tried."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except urllib.error.HTTPError as answered:   # it answers: only a refused token is a problem here
        if answered.code == 401:
            return f"the gateway at {url} refused the token (from ${token_env}, else $OMNI_HOME/{TOKEN_FILE})"
    except OSError as error:                     # a stale URL file: the supervisor is gone
        reason = getattr(error, "reason", error)
        return f"no supervisor answers at {url} ({reason}): is it running? Start it with `make run`"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
