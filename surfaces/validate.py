"""`python supervisor.py validate`: check a config and every MCP server and service in it.

Schema errors come from the loader (file, key path, what was expected). Then each executor's MCP
server is started (stdio) or connected (HTTP), its tools listed and the configured tool looked for;
the LiteLLM proxy of an external install is probed. Exit 0 when sound, 1 with the report otherwise.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from actors.mcp_link import LinkFailed, McpLink
from config import Config, ExecutorConfig


@dataclass(frozen=True, slots=True)
class Check:
    subject: str
    ok: bool
    detail: str


BRIDGE_TOOLS = ("events_wait", "messages_send")


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


async def check_proxy(cfg: Config) -> Check:
    from actors.litellm_proxy import proxy_status
    if cfg.litellm.mode == "managed":
        return Check("LiteLLM proxy", True, f"managed: started from {cfg.litellm.executable} with "
                                            f"{cfg.litellm.config_path} at {cfg.litellm.url}")
    answers = (await asyncio.to_thread(proxy_status, cfg.litellm, cfg.home))["answers"]
    return Check("LiteLLM proxy", answers, f"external at {cfg.litellm.url}: "
                                           f"{'answers' if answers else 'does not answer'} /health/liveliness")


async def check_all(cfg: Config) -> list[Check]:
    checks = [check_server(f"executor {spec.name}", spec, (spec.tool,)) for spec in cfg.executors.values()]
    if cfg.im is not None and cfg.im.openclaw is not None:
        checks.append(check_server("OpenClaw bridge", cfg.im.openclaw, BRIDGE_TOOLS))
    if cfg.litellm is not None:
        checks.append(check_proxy(cfg))
    return list(await asyncio.gather(*checks))


def report(cfg: Config, console: Console) -> int:
    console.print(f"{escape(str(cfg.source))}: the schema is sound", highlight=False)
    checks = asyncio.run(check_all(cfg))
    for check in checks:
        mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
        console.print(f"  {mark} {escape(check.subject)}: {escape(check.detail)}", highlight=False, soft_wrap=True)
    failed = sum(not check.ok for check in checks)
    console.print("sound" if not failed else f"[red]{failed} problem(s)[/]", highlight=False)
    return 0 if not failed else 1
