"""The configuration, as typed, validated, frozen values.

Every actor receives the part of this it needs; no actor reads YAML or holds a literal threshold.
`config.load_config()` builds these from a YAML file and names the file and key path of any mistake.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
RestartType = Literal["permanent", "transient", "temporary"]
Transport = Literal["stdio", "http"]


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """One MCP server that executes tasks, and how a task becomes a call to one of its tools.

    >>> ExecutorConfig(name="coder", transport="stdio", command="python",
    ...                args=("-m", "sandbox.executors", "coder"), tool="claude_code",
    ...                arguments={"prompt": "{description}", "workFolder": "/tmp"}).slots
    4
    """

    name: str
    transport: Transport
    tool: str
    arguments: Mapping[str, Any]
    command: str | None = None          # stdio: the program (already resolved: "python" is this interpreter)
    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # the child's whole extra environment, expanded
    url: str | None = None              # http: the Streamable HTTP endpoint
    headers: Mapping[str, str] = field(default_factory=dict)
    slots: int = 4
    call_timeout_s: float = 1800.0
    connect_timeout_s: float = 20.0
    respawn_initial_s: float = 0.2
    respawn_max_s: float = 10.0


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Text matching any of `patterns` (or a task submitted with this `kind`) goes to the first
    healthy executor of `executors`."""

    kind: str
    executors: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    rules: tuple[RoutingRule, ...]
    default_kind: str
    default_tier: str = "P1"

    def rule_for(self, kind: str) -> RoutingRule | None:
        return next((rule for rule in self.rules if rule.kind == kind), None)


@dataclass(frozen=True, slots=True)
class SupervisionConfig:
    """Erlang/OTP's supervisor flags: at most `max_restarts` in `within_s` seconds, else escalate."""

    strategy: Strategy = "one_for_one"
    max_restarts: int = 10
    within_s: float = 10.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 5.0
    sweep_interval_s: float = 1.0
    shutdown_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TasksConfig:
    max_attempts: int = 3
    reconcile_interval_s: float = 2.0   # how often lost messages are made good from the store


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/mcp"
    token_env: str = "OMNI_GATEWAY_TOKEN"
    generate_token: bool = False        # sandbox: write one to $OMNI_HOME/gateway.token when the env is unset


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Sandbox only: submit sample tasks through the gateway so a newcomer sees tasks flow."""

    interval_s: float = 4.0
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    home: Path
    tasks: TasksConfig
    supervision: SupervisionConfig
    routing: RoutingConfig
    executors: Mapping[str, ExecutorConfig]
    gateway: GatewayConfig
    demo: DemoConfig | None = None

    @property
    def database_path(self) -> Path:
        return self.home / "omni.db"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"
