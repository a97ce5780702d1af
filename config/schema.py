"""The configuration, as typed, validated, frozen values.

Every actor receives the part of this it needs; no actor reads YAML or holds a literal threshold.
`config.load_config()` builds these from a YAML file and names the file and key path of any mistake.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping
from notifications import NotifySetting
from vocabulary import Tier

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
    model_route: bool = False           # its server's model traffic uses our route: give it LiteLLM's URL and key
    provides: tuple[str, ...] = ()      # the needs it meets (gpu, always_on, long_running): tasks needing them go here


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """Text matching any of `patterns` (or a task submitted with this `kind`) goes to the first
    healthy executor of `executors`."""

    kind: str
    executors: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...] = ()
    tier: str = Tier.P1                 # P2 marks work complex enough for the paid tier (budget permitting)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    rules: tuple[RoutingRule, ...]
    default_kind: str
    classify_with_model: bool = False   # the classifier unsure (below the threshold): ask a P1 model for the kind
    classifier: bool = True             # text no rule matches: the local classifier (routing/) gives kind and needs
    confidence_threshold: float = 0.5   # below it the classifier's kind is checked by a model, when one can be asked
    provides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # executor → the needs it meets

    def rule_for(self, kind: str) -> RoutingRule | None:
        return next((rule for rule in self.rules if rule.kind == kind), None)


@dataclass(frozen=True, slots=True)
class SupervisionConfig:
    """Erlang/OTP's supervisor flags: at most `max_restarts` in `within_s` seconds, else escalate.

    A child's restarts wait `backoff_s(n)` after its n-th crash in a row; a child crashing at every start
    escalates only if those waits fit in the window (`crash_loop_s < within_s`, checked at load).

    >>> SupervisionConfig().crash_loop_s    # 0.05 + 0.1 + 0.2 + 0.4 + 0.8 + 5 × 1.0
    6.55
    """

    strategy: Strategy = "one_for_one"
    max_restarts: int = 10
    within_s: float = 10.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    sweep_interval_s: float = 1.0
    shutdown_timeout_s: float = 5.0

    def backoff_s(self, level: int) -> float:
        """The wait before restarting a child that crashed `level` times in a row before: doubling, capped."""
        return min(self.backoff_initial_s * 2.0 ** min(level, 64), self.backoff_max_s)

    @property
    def crash_loop_s(self) -> float:
        """The waits between the first and the (max_restarts + 1)-th crash of a child that crashes at once."""
        doubling = min(self.max_restarts, 64)
        return round(sum(self.backoff_s(level) for level in range(doubling))
                     + (self.max_restarts - doubling) * self.backoff_s(64), 9)


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
class TierConfig:
    """One model tier: its model group on the proxy, and how to reach it directly with a backup key."""

    name: str                           # P1 | P2
    proxy_model: str                    # the model group name in the LiteLLM config (e.g. free-tier)
    direct_model: str                   # litellm model id for direct calls (e.g. openai/claude-sonnet)
    direct_api_base: str
    backup_key: str = field(repr=False, default="")   # expanded from api_keys.backup.<name>; never printed
    paid: bool = False
    input_usd_per_mtok: float = 0.0     # prices for direct-mode cost (litellm's own map may not know the model)
    output_usd_per_mtok: float = 0.0


@dataclass(frozen=True, slots=True)
class LiteLLMConfig:
    """The route to models. `managed`: the supervisor starts and restarts the proxy; `external`: a
    proxy the user runs, at `url`."""

    mode: Literal["managed", "external"]
    url: str                            # e.g. http://127.0.0.1:4000
    tiers: Mapping[str, TierConfig]     # P1, P2 in order of preference
    proxy_key: str = field(repr=False, default="")     # the key we send to the proxy (primary), may be empty
    config_path: str | None = None      # managed: the proxy's own YAML
    executable: str | None = None       # managed: the `litellm` program (its own venv)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)   # managed: the proxy's environment
    start_deadline_s: float = 90.0
    rss_ceiling_mb: float = 1500.0
    probe_interval_s: float = 2.0
    probe_timeout_s: float = 0.8        # the seed: a probe failing means no answer in < 1 s
    failures_to_down: int = 2
    successes_to_up: int = 2
    call_timeout_s: float = 60.0
    restart_command: str = ""           # what the repair prompt tells the coding executor to run
    route_env: Mapping[str, str] = field(default_factory=dict)  # executor child env names: base_url, api_key


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    daily_usd: float = 1.0
    monthly_usd: float = 20.0
    paid_call_reserve_usd: float = 0.02    # held against the caps while a paid call runs
    warn_at: tuple[float, ...] = (0.8,)    # shares of each cap at which a warning goes out, once per period
    operators: tuple[str, ...] = ()        # IM senders told of every budget warning (besides console and journal)


@dataclass(frozen=True, slots=True)
class RepairConfig:
    executor_kind: str = "repair"       # the routing kind whose executor repairs LiteLLM (the coder)
    prompt: str = ""                    # template: {health_url} {restart_command} {log_tail} {error}
    max_per_hour: int = 3
    backoff_initial_s: float = 60.0
    verify_s: float = 15.0              # after a repair task ends: how long to wait for the proxy to be back
    log_lines: int = 40


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Cloud reachability (the seed's numbers): 3 consecutive pings timing out after 10 s → brainstem;
    there, a ping every 30 s, and 2 consecutive answers → back to normal."""

    interval_s: float = 15.0
    timeout_s: float = 10.0
    timeouts_to_down: int = 3
    brainstem_interval_s: float = 30.0
    successes_to_up: int = 2


@dataclass(frozen=True, slots=True)
class BrainstemConfig:
    model_path: str | None = None       # an MLX model directory (Qwen2.5-7B-Instruct 4-bit on a Mac); None: fixed texts
    max_tokens: int = 48


Locale = Literal["en", "zh-Hant", "zh-Hans"]


@dataclass(frozen=True, slots=True)
class ImConfig:
    """IM commands: who may give them, the language of the replies, and the OpenClaw bridge they arrive
    through (`openclaw mcp serve`, an MCP server we are a client of; None: only our gateway's `command` tool)."""

    allow: tuple[str, ...] = ()         # senders ("telegram:4242"), `*` wildcards ("cli:*"); anyone else is refused
    locale: Locale = "en"
    openclaw: ExecutorConfig | None = None   # how to start/reach the bridge (tool and arguments unused)
    session_key: str | None = None      # listen to this OpenClaw session only (None: every routed conversation)
    wait_ms: int = 20_000               # one events_wait long-poll
    recent_s: float = 7 * 86400.0       # a notice for everyone goes to the senders seen within this
    catch_up_s: float = 15.0            # how often OpenClaw's transcripts are read for messages the live queue missed
    gateway_lost_s: float = 20.0        # a bridge without its gateway this long is replaced by a fresh process
    # --- notifications (notifications.py): the default setting, senders' own in config, progress's pace
    notify: NotifySetting = NotifySetting()
    notify_senders: Mapping[str, NotifySetting] = field(default_factory=dict)
    progress_interval_s: float = 30.0   # at most one progress update per task this often (the latest wins)
    held_check_s: float = 30.0          # how often news held for quiet hours is checked for release


@dataclass(frozen=True, slots=True)
class SandboxOpenClawConfig:
    """Sandbox only: a real OpenClaw gateway on loopback whose agent "main" (its model on `model_url`, a
    simulated provider) runs the tasks of executor `executor`, through `mcp_servers.openclaw_agent`. Set only
    when OpenClaw is installed (`make openclaw`); otherwise that executor stays the stub."""
    port: int
    token: str = field(repr=False)
    model_url: str = ""
    executor: str = "general"


@dataclass(frozen=True, slots=True)
class MemoryToolConfig:
    """One tool of the memory server and its argument template (fields: memory.TEMPLATE_FIELDS in the loader)."""

    tool: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """Memory through a MemOS MCP server: searched with a task's text before it runs (what is recalled joins the
    task's context), told the exchange after it completes, emptied for a sender by /forget. Per sender always:
    every template names `{user_id}`. Adds wait in a SQLite outbox ($OMNI_HOME/memory-outbox.db) until delivered."""

    server: ExecutorConfig              # how to start/reach the server (its tool and arguments unused)
    search: MemoryToolConfig
    add: MemoryToolConfig
    forget: MemoryToolConfig | None = None   # None: the server has no tool that deletes a user's memories
    recall_chars: int = 2000            # at most this much recalled text joins a task's context
    recall_items: int = 5
    result_keys: tuple[str, ...] = ("memory", "memory_value")   # where a search's answer holds each memory's text
    search_timeout_s: float = 3.0       # a task waits at most this for its memories, then runs without
    add_timeout_s: float = 30.0
    retry_s: float = 5.0                # an add that failed (server up, tool erring) is tried again after this
    max_tries: int = 10                 # … this many times, then set aside (kept, journaled) so later ones go on


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """One repository a coding executor may work in: tasks get fresh worktrees of it, on branches from `base`."""

    name: str
    path: str                           # absolute, the repository's own checkout
    base: str = "main"                  # the branch (or commit) each new worktree starts from
    keep_s: float = 7 * 86400.0         # a finished task's worktree is kept this long for review, then removed


@dataclass(frozen=True, slots=True)
class WorkspacesConfig:
    """`workspaces:` — the repositories coding tasks run in, and who means which by default.

    >>> WorkspacesConfig(repos={"app": RepoConfig("app", "/src/app")}, executors=("coder",)).sweep_interval_s
    60.0
    """

    repos: Mapping[str, RepoConfig]
    executors: tuple[str, ...]          # the executors whose tasks get a worktree as their workFolder
    senders: Mapping[str, str] = field(default_factory=dict)   # sender pattern (fnmatch) → repo name
    default: str | None = None          # the repo when neither the text nor the sender names one
    root: str | None = None             # where worktrees live (default: $OMNI_HOME/workspaces)
    sweep_interval_s: float = 60.0      # how often the keeper looks for moved bases and stale worktrees


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
    litellm: LiteLLMConfig | None = None
    budget: BudgetConfig = BudgetConfig()
    repair: RepairConfig = RepairConfig()
    health: HealthConfig = HealthConfig()
    brainstem: BrainstemConfig = BrainstemConfig()
    locale: Literal["en", "zh-Hant", "zh-Hans"] = "en"
    providers: Mapping[str, int] | None = None   # sandbox: simulated upstreams, name → port ("admin" too)
    im: ImConfig = ImConfig()
    sandbox_openclaw: SandboxOpenClawConfig | None = None
    memory: MemoryConfig | None = None
    workspaces: WorkspacesConfig | None = None

    @property
    def database_path(self) -> Path:
        return self.home / "omni.db"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"
