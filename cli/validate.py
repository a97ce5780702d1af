"""`python supervisor.py validate`: check a config and every MCP server and service in it.

Schema errors come from the loader (file, key path, what was expected). Then each executor's MCP
server is started (stdio) or connected (HTTP), its tools listed and the configured tool looked for;
the LiteLLM proxy of an external install is probed. The OpenClaw bridge is asked for a real answer
(`conversations_list`: the real bridge lists its tools even when the gateway is down or refuses the
token), and when it is the `openclaw` CLI, OpenClaw's own settings that the front door relies on are
read (`openclaw config get`). The memory server, when configured, is started and its tools looked for.
Exit 0 when sound, 1 with the report otherwise.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from clients import BridgeLink, LinkFailed, McpLink
from config import Config, ExecutorConfig


@dataclass(frozen=True, slots=True)
class Check:
    subject: str
    ok: bool
    detail: str


BRIDGE_TOOLS = ("events_wait", "messages_send", "conversations_list", "messages_read")
PRIVATE_SCOPES = ("per-channel-peer", "per-peer", "per-account-channel-peer")


async def check_server(subject: str, spec: ExecutorConfig, expected: tuple[str, ...]) -> Check:
    """Start (stdio) or connect to (HTTP) the MCP server, list its tools, look for the expected ones."""
    where = spec.url if spec.transport == "http" else " ".join([spec.command or "", *spec.args])
    link = McpLink(spec)
    started = time.monotonic()
    try:
        tools = await link.open()
    except LinkFailed as failed:
        return Check(subject, False, str(failed))
    finally:
        await link.close()
    took = f"{time.monotonic() - started:.2f}s"
    missing = [name for name in expected if name not in tools]
    if missing:
        return Check(subject, False, f"{where}: no tool {', '.join(map(repr, missing))} (it offers: "
                                     f"{', '.join(tools) or 'none'})")
    return Check(subject, True, f"{where}: {len(tools)} tools, {', '.join(map(repr, expected))} present ({took})")


async def check_bridge(spec: ExecutorConfig) -> Check:
    """The bridge answers a real call: OpenClaw's gateway is up and takes its token."""
    with tempfile.TemporaryDirectory() as scratch:
        errlog = Path(scratch) / "bridge.stderr"      # the real bridge says on stderr why it gave up
        link = BridgeLink(spec, errlog=errlog)
        started = time.monotonic()
        try:
            tools = await link.open()
            if missing := [name for name in BRIDGE_TOOLS if name not in tools]:
                return Check("OpenClaw bridge", False, f"no tool {', '.join(missing)} (it offers: {', '.join(tools)})")
            listed = await link.call_json("conversations_list", {"limit": 500}, spec.call_timeout_s)
        except Exception as error:   # noqa: BLE001 (the report says what it was)
            return Check("OpenClaw bridge", False, f"no answer to conversations_list: {error}{_last_line(errlog)}")
        finally:
            await link.close()
    return Check("OpenClaw bridge", True, f"the gateway answers: {len(listed.get('conversations', []))} "
                                          f"conversations ({time.monotonic() - started:.2f}s)")


async def check_openclaw_settings(spec: ExecutorConfig) -> list[Check]:
    """OpenClaw's settings the front door needs, read with its own CLI (only when the bridge is `openclaw`)."""
    if spec.transport != "stdio" or Path(spec.command or "").name != "openclaw":
        return []
    try:
        session, commands = await asyncio.gather(_openclaw_config(spec, "session"), _openclaw_config(spec, "commands"))
    except (OSError, ValueError, TimeoutError) as error:
        return [Check("OpenClaw settings", False, f"`openclaw config get` failed: {error}")]
    scope = session.get("dmScope", "main")
    rules = (session.get("sendPolicy") or {}).get("rules") or []
    return [
        Check("OpenClaw session.dmScope", scope in PRIVATE_SCOPES,
              f"{scope}" + ("" if scope in PRIVATE_SCOPES else ": every direct message shares one conversation, so "
                            "a reply could reach another user; set session.dmScope to per-channel-peer")),
        Check("OpenClaw session.sendPolicy", any(rule.get("action") == "deny" for rule in rules),
              "its agent's replies to the IM channel are denied" if any(rule.get("action") == "deny" for rule in rules)
              else "no deny rule: OpenClaw's agent answers every message too (config/openclaw/openclaw.json5)"),
        Check("OpenClaw commands", commands.get("text") is False and commands.get("native") is False,
              "text and native commands off: /help, /status and /tasks reach us"
              if commands.get("text") is False and commands.get("native") is False else
              "OpenClaw answers /help, /status and /tasks itself: set commands.text and commands.native to false"),
    ]


async def _openclaw_config(spec: ExecutorConfig, section: str) -> dict[str, Any]:
    env = {name: os.environ[name] for name in ("HOME", "PATH") if name in os.environ} | dict(spec.env)
    process = await asyncio.create_subprocess_exec(spec.command, "config", "get", section, "--json", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        raise TimeoutError(f"`openclaw config get {section}` did not answer in 60 s") from None
    if process.returncode != 0:   # unset: OpenClaw's defaults apply
        return {}
    answer = json.loads(out)
    return answer if isinstance(answer, dict) else {}


def _last_line(path: Any) -> str:
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f" ({lines[-1][:200]})" if lines else ""


async def check_proxy(cfg: Config) -> Check:
    from clients.litellm_proxy import proxy_status
    if cfg.litellm.mode == "managed":
        return Check("LiteLLM proxy", True, f"managed: started from {cfg.litellm.executable} with "
                                            f"{cfg.litellm.config_path} at {cfg.litellm.url}")
    answers = (await asyncio.to_thread(proxy_status, cfg.litellm, cfg.home))["answers"]
    return Check("LiteLLM proxy", answers, f"external at {cfg.litellm.url}: "
                                           f"{'answers' if answers else 'does not answer'} /health/liveliness")


async def check_claude_cli(spec: ExecutorConfig) -> list[Check]:
    """The Claude CLI a `mcp_servers.claude_code` executor runs: present and runnable, logged in, root."""
    from mcp_servers import claude_sdk
    env = {name: os.environ[name] for name in ("HOME", "PATH") if name in os.environ} | dict(spec.env)
    found = await asyncio.to_thread(claude_sdk.check_cli, list(spec.args), env)
    return [Check(f"executor {spec.name}: {subject}", ok, detail) for subject, ok, detail in found]


async def check_workspaces(cfg: Config) -> list[Check]:
    """Each `workspaces.repos` entry: its path a git repository with its base branch (config key named)."""
    from clients import check_repository
    checks = []
    for name, repo in (cfg.workspaces.repos.items() if cfg.workspaces is not None else ()):
        problem = await check_repository(repo.path, repo.base)
        detail = f"a git repository with {repo.base!r}" if problem is None else (
            f"{problem} (workspaces.repos.{name}.path / .base)")
        checks.append(Check(f"workspaces.repos.{name}", problem is None, detail))
    return checks


async def check_all(cfg: Config) -> list[Check]:
    checks = [check_server(f"executor {spec.name}", spec, (spec.tool,)) for spec in cfg.executors.values()]
    claude = [check_claude_cli(spec) for spec in cfg.executors.values() if "mcp_servers.claude_code" in spec.args]
    settings = None
    if cfg.im is not None and cfg.im.openclaw is not None:
        checks.append(check_bridge(cfg.im.openclaw))
        settings = asyncio.ensure_future(check_openclaw_settings(cfg.im.openclaw))
    if cfg.litellm is not None:
        checks.append(check_proxy(cfg))
    if cfg.memory is not None:   # its search, add (and forget) tools
        memory = cfg.memory
        checks.append(check_server("memory (MemOS)", memory.server, tuple(
            tool.tool for tool in (memory.search, memory.add, memory.forget) if tool is not None)))
    done = list(await asyncio.gather(*checks))
    done += [check for found in await asyncio.gather(*claude) for check in found]
    done += await check_workspaces(cfg)
    return done + (await settings if settings else [])


def report(cfg: Config, console: Console) -> int:
    console.print(f"{escape(str(cfg.source))}: the schema is sound", highlight=False)
    checks = asyncio.run(check_all(cfg))
    for check in checks:
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        console.print(f"  {mark} {escape(check.subject)}: {escape(check.detail)}", highlight=False, soft_wrap=True)
    failed = sum(not check.ok for check in checks)
    console.print("sound" if not failed else f"[red]{failed} problem(s)[/]", highlight=False)
    return 0 if not failed else 1
