"""Reading a YAML config into `config.schema` values, with errors that name the file, key path and
what was expected.

>>> load_config(Path("config/sandbox.yaml")).gateway.port
8765
"""
from __future__ import annotations

import copy
import difflib
import math
import os
import re
import reprlib
import stat
import string
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from vocabulary import TIERS, Tier

from .schema import (BrainstemConfig, BudgetConfig, Config, HealthConfig, DemoConfig, ExecutorConfig, GatewayConfig,
                     LiteLLMConfig, RepairConfig,
                     RoutingConfig, RoutingRule, SupervisionConfig, TasksConfig, TierConfig)
from .schema import ImConfig, SandboxOpenClawConfig
from notifications import SETTINGS, BadSetting, NotifySetting, apply as apply_setting
from .schema import MemoryConfig, MemoryToolConfig
from .schema import RepoConfig, WorkspacesConfig
from redaction import hide_keys, is_secret_name, looks_like_key

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DEFAULT = PROJECT_ROOT / "config" / "sandbox.yaml"
# ${NAME}, or ${NAME:-default} for values that may be defaulted (the sandbox's fake keys)
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEYS = ("env", "headers", "api_keys")
KEY_NOT_SHOWN = "(a key, not shown)"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")       # kinds, tools, backup key names: never expanded
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a key looks like, wherever it stands: vendors' prefixes, or a long run of letters and digits.

class ConfigError(ValueError):
    """A config mistake, on one line: `file: key.path: expected …, got …`. It never holds a value that came
    from the environment, nor anything shaped like a key."""

    def __init__(self, file: Path | str, key_path: str, expected: str, got: str | None = None):
        self.file, self.key_path, self.expected = str(file), key_path, expected
        detail = f"{key_path or '(top level)'}: expected {expected}" + ("" if got is None else f", got {got}")
        super().__init__(f"{self.file}: {_one_line(hide_keys(detail, KEY_NOT_SHOWN))}")


class UnreadableConfig(ConfigError):
    """The file itself cannot be read as text: `file: not UTF-8 at byte N`."""

    def __init__(self, file: Path | str, problem: str):
        self.file, self.key_path, self.expected = str(file), "", problem
        ValueError.__init__(self, f"{self.file}: {problem}")


def omni_home() -> Path:
    """The data directory: `$OMNI_HOME`, else `~/.omni`."""
    return Path(os.environ.get("OMNI_HOME") or Path.home() / ".omni").expanduser()


def resolve_config_path(given: str | None) -> Path:
    """`--config PATH`, else `$OMNI_HOME/config.yaml` when it exists, else the embedded sandbox."""
    if given:
        try:
            return Path(given).expanduser()
        except RuntimeError:   # ~someone who has no home here
            raise UnreadableConfig(given, "no such file (its ~user has no home directory here)") from None
    user_config = omni_home() / "config.yaml"
    return user_config if user_config.exists() else EMBEDDED_DEFAULT


def overlay(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A raw config with `overrides` merged in, mappings key by key (how tests and benches derive theirs).

    >>> overlay({"gateway": {"port": 8765, "path": "/mcp"}}, {"gateway": {"port": 0}})
    {'gateway': {'port': 0, 'path': '/mcp'}}
    """
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | str) -> Config:
    """The config in `path`, or a ConfigError: never another exception, whatever the file holds."""
    path = Path(path)
    data, owner_only = _read(path)
    raw = _parse(path, data)
    return _build(_Node(path, "", raw if raw is not None else {}, owner_only))


def _read(path: Path) -> tuple[str, bool]:
    try:
        data, mode = path.read_bytes(), path.stat().st_mode
    except IsADirectoryError:
        raise ConfigError(path, "", "a readable YAML file", "a directory") from None
    except OSError as err:
        raise ConfigError(path, "", "a readable YAML file", err.strerror or type(err).__name__) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnreadableConfig(path, f"not UTF-8 at byte {err.start}") from None
    return text.removeprefix("\ufeff"), not mode & (stat.S_IRWXG | stat.S_IRWXO)


def _parse(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_FastStrictLoader)
    except Exception:   # noqa: BLE001 (read again below for the clearer message)
        pass
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, where, "valid YAML", err.problem or err.context) from None
    except yaml.YAMLError as err:      # a character YAML does not allow (a NUL byte …)
        raise ConfigError(path, "", "valid YAML", str(err).split("\n")[0]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as err:   # a scalar it cannot make: 2001-13-45
        raise ConfigError(path, "", "valid YAML", f"a value YAML cannot read ({err})") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently)."""


class _FastStrictLoader(getattr(yaml, "CSafeLoader", _StrictLoader)):
    """The same on libyaml's parser, where PyYAML has it (its wheels do): 3 ms a config, not 30 ms, at every
    start. Its errors name less ("found character that cannot start any token"), so a refused file is read
    again by `_StrictLoader` for the message."""


def _mapping_with_unique_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue                     # unhashable: construct_mapping names it
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} a second time in one mapping",
                                                    key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


for _loader in (_StrictLoader, _FastStrictLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_unique_keys)


TOP_LEVEL = {"tasks", "supervision", "routing", "executors", "gateway", "demo", "litellm", "api_keys", "budget",
             "repair", "locale", "providers", "health", "brainstem", "im", "sandbox_openclaw", "memory",
             "workspaces"}
SECTION_KEYS = {
    "tasks": {"max_attempts", "reconcile_interval_s"},
    "supervision": {"strategy", "max_restarts", "within_s", "backoff_initial_s", "backoff_max_s", "sweep_interval_s",
                    "shutdown_timeout_s"},
    "routing": {"default_kind", "classify_with_model", "classifier", "confidence_threshold", "rules"},
    "gateway": {"host", "port", "path", "token_env", "generate_token"},
    "demo": {"interval_s", "tasks"},
    "api_keys": {"backup"},      # primary keys live with the proxy (litellm.env)
    "budget": {"daily_usd", "monthly_usd", "paid_call_reserve_usd", "warn_at", "operators"},
    "repair": {"executor_kind", "prompt", "max_per_hour", "backoff_initial_s", "verify_s", "log_lines"},
    "health": {"interval_s", "timeout_s", "timeouts_to_down", "brainstem_interval_s", "successes_to_up"},
    "brainstem": {"model_path", "max_tokens"},
}


def _build(root: _Node) -> Config:
    root.require_mapping()
    root.reject_unknown(TOP_LEVEL)
    demo_given = root.raw("demo") is not None
    section = {name: root.section(name, keys) for name, keys in SECTION_KEYS.items()}
    executors = {name: _executor(node) for name, node in root.child("executors").items()}
    if not executors:
        raise ConfigError(root.file, "executors", "at least one executor")
    backup_keys = section["api_keys"].str_map("backup")
    locale = root.choice("locale", LOCALES, "en")
    sandbox_openclaw = None
    if root.raw("sandbox_openclaw") is not None:
        sandbox_openclaw = _sandbox_openclaw(root.child("sandbox_openclaw"), executors)
    return Config(
        source=root.file,
        home=omni_home(),
        tasks=TasksConfig(
            max_attempts=section["tasks"].int("max_attempts", 3, minimum=1),
            reconcile_interval_s=section["tasks"].seconds("reconcile_interval_s", 2.0),
        ),
        supervision=_supervision(section["supervision"]),
        routing=_routing(section["routing"], executors),
        executors=executors,
        gateway=_gateway(section["gateway"]),
        demo=DemoConfig(interval_s=section["demo"].seconds("interval_s", 4.0),
                        tasks=tuple(section["demo"].str_list("tasks"))) if demo_given else None,
        litellm=None if root.raw("litellm") is None else _litellm(root.child("litellm"), backup_keys),
        budget=_budget(section["budget"]),
        health=_health(section["health"]),
        brainstem=_brainstem(section["brainstem"]),
        repair=_repair(section["repair"]),
        locale=locale,
        im=_im(root.child("im"), locale),
        providers=None if root.raw("providers") is None else {
            name: node.value for name, node in root.child("providers").items() if _port(node)},
        sandbox_openclaw=sandbox_openclaw,
        memory=None if root.raw("memory") is None else _memory(root.child("memory")),
        workspaces=None if root.raw("workspaces") is None else _workspaces(root.child("workspaces"), executors),
    )


def _port(node: _Node) -> bool:
    if not (isinstance(node.value, int) and not isinstance(node.value, bool) and 0 <= node.value <= 65535):
        raise ConfigError(node.file, node.path, "a port number (0 to 65535)", _describe(node.value, node.path))
    return True


def _litellm(node: _Node, backup_keys: dict[str, str]) -> LiteLLMConfig:
    node.require_mapping()
    node.reject_unknown({"mode", "url", "proxy_key", "config", "executable", "env", "start_deadline_s",
                         "rss_ceiling_mb", "probe_interval_s", "probe_timeout_s", "failures_to_down",
                         "successes_to_up", "call_timeout_s", "restart_command", "route_env", "tiers"})
    mode = node.choice("mode", ("managed", "external"), "external")
    defaults = LiteLLMConfig(mode="external", url="", tiers={})
    tiers = {name: _tier(name, tier, backup_keys) for name, tier in node.child("tiers").items()}
    if list(tiers) != list(TIERS):
        raise ConfigError(node.file, node.key("tiers"), "the tiers P1 (free) and P2 (paid), in that order",
                          ", ".join(tiers) or "none")
    managed = mode == "managed"
    return LiteLLMConfig(
        mode=mode,
        url=node.str("url").rstrip("/"),
        tiers=tiers,
        proxy_key=node.str("proxy_key", secret=True) if node.raw("proxy_key") else "",
        config_path=_project_path(node, "config") if managed else None,
        executable=_project_path(node, "executable", ".venv-litellm/bin/litellm") if managed else None,
        env=node.str_map("env"),
        start_deadline_s=node.seconds("start_deadline_s", defaults.start_deadline_s),
        rss_ceiling_mb=node.seconds("rss_ceiling_mb", defaults.rss_ceiling_mb),
        probe_interval_s=node.seconds("probe_interval_s", defaults.probe_interval_s),
        probe_timeout_s=node.seconds("probe_timeout_s", defaults.probe_timeout_s),
        failures_to_down=node.int("failures_to_down", defaults.failures_to_down, minimum=1),
        successes_to_up=node.int("successes_to_up", defaults.successes_to_up, minimum=1),
        call_timeout_s=node.seconds("call_timeout_s", defaults.call_timeout_s),
        restart_command=_restart_command(node),
        route_env=_route_env(node.child("route_env")),
    )


RESTART_FIELDS = ("python", "project", "config", "home")


def _restart_command(node: _Node) -> str:
    template = node.str("restart_command", "")
    values = {"python": sys.executable, "project": str(PROJECT_ROOT), "config": str(node.file.resolve()),
              "home": str(omni_home())}
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise ConfigError(node.file, node.key("restart_command"), "a command whose fields are among "
                          + ", ".join("{%s}" % f for f in RESTART_FIELDS) + " ({{ and }} for literal braces)",
                          node.shown("restart_command")) from None


def _route_env(node: _Node) -> dict[str, str]:
    """The names of the variables an executor's child gets our route in: names, never values."""
    if node.value is None:
        return {}
    node.require_mapping()
    node.reject_unknown({"base_url", "api_key"})
    return {field: node.env_name(field) for field in node.value}


def _tier(name: str, node: _Node, backup_keys: dict[str, str]) -> TierConfig:
    node.require_mapping()
    node.reject_unknown({"proxy_model", "direct_model", "direct_api_base", "backup_key", "paid",
                         "input_usd_per_mtok", "output_usd_per_mtok"})
    key_name = node.name("backup_key")
    if key_name not in backup_keys:
        raise ConfigError(node.file, f"api_keys.backup.{key_name}", f"a backup key named {key_name!r} "
                          f"(referred to by {node.key('backup_key')})", "nothing")
    return TierConfig(
        name=name,
        proxy_model=node.str("proxy_model"),
        direct_model=node.str("direct_model"),
        direct_api_base=node.str("direct_api_base").rstrip("/"),
        backup_key=backup_keys[key_name],
        paid=node.bool("paid", False),
        input_usd_per_mtok=node.amount("input_usd_per_mtok", 0.0),
        output_usd_per_mtok=node.amount("output_usd_per_mtok", 0.0),
    )


def _health(node: _Node) -> HealthConfig:
    d = HealthConfig()
    return HealthConfig(interval_s=node.seconds("interval_s", d.interval_s), timeout_s=node.seconds("timeout_s",
                                                                                                    d.timeout_s),
                        timeouts_to_down=node.int("timeouts_to_down", d.timeouts_to_down, minimum=1),
                        brainstem_interval_s=node.seconds("brainstem_interval_s", d.brainstem_interval_s),
                        successes_to_up=node.int("successes_to_up", d.successes_to_up, minimum=1))


LOCALES = ("en", "zh-Hant", "zh-Hans")


def _im(node: _Node, default_locale: str) -> ImConfig:
    """`im:` — the allowlist of senders, the replies' locale (default: the top-level one), the OpenClaw bridge."""
    node.require_mapping()
    node.reject_unknown({"allow", "locale", "openclaw", "session_key", "wait_ms", "recent_s", "catch_up_s",
                       "gateway_lost_s", "notify", "progress_interval_s", "held_check_s"})
    defaults = ImConfig()
    allow = node.str_list("allow")
    for i, sender in enumerate(allow):
        if ":" not in sender or sender.startswith(":"):
            raise ConfigError(node.file, f"{node.key('allow')}[{i}]", "a sender as <channel>:<id> (telegram:4242), "
                              "or a pattern such as cli:*", node.shown("allow", i))
    bridge = node.child("openclaw")
    locale = node.choice("locale", LOCALES, default_locale)
    notify, notify_senders = _notify(node.child("notify"), NotifySetting())
    return ImConfig(
        notify=notify, notify_senders=notify_senders,
        progress_interval_s=node.seconds("progress_interval_s", defaults.progress_interval_s),
        held_check_s=node.seconds("held_check_s", defaults.held_check_s),
        allow=tuple(allow),
        locale=locale,
        openclaw=None if bridge.value is None else _openclaw_bridge(bridge),
        session_key=node.str("session_key") if node.raw("session_key") is not None else None,
        wait_ms=node.int("wait_ms", defaults.wait_ms, minimum=1, maximum=300_000),
        recent_s=node.seconds("recent_s", defaults.recent_s),
        catch_up_s=node.seconds("catch_up_s", defaults.catch_up_s),
        gateway_lost_s=node.seconds("gateway_lost_s", defaults.gateway_lost_s),
    )


NOTIFY_KEYS = set(SETTINGS)


def _notify(node: _Node, base: NotifySetting) -> tuple[NotifySetting, dict[str, NotifySetting]]:
    """`im.notify:` — the default notification setting, and `senders:` each sender's own (over the default)."""
    if node.value is None:
        return base, {}
    node.require_mapping()
    node.reject_unknown(NOTIFY_KEYS | {"senders"})
    default = _notify_setting(node, base)
    senders = node.child("senders")
    if senders.value is None:
        return default, {}
    senders.require_mapping()
    configured = {}
    for sender, entry in senders.items():
        entry.require_mapping()
        entry.reject_unknown(NOTIFY_KEYS)
        configured[sender] = _notify_setting(entry, default)
    return default, configured


def _notify_setting(node: _Node, base: NotifySetting) -> NotifySetting:
    for name in NOTIFY_KEYS:
        if node.given(name):
            if name == "failures_in_quiet":
                node.bool(name, True)          # checked: a boolean
            try:
                base = apply_setting(base, {name: node.raw(name)})
            except BadSetting as bad:
                raise ConfigError(node.file, node.key(name), bad.expected, node.shown(name)) from None
    return base


def _openclaw_bridge(node: _Node) -> ExecutorConfig:
    """`im.openclaw:` — started (stdio: `openclaw mcp serve …`) or reached (http) like an executor's MCP server."""
    node.require_mapping()
    node.reject_unknown({"transport", "command", "args", "cwd", "env", "url", "headers", "call_timeout_s",
                         "connect_timeout_s", "respawn_initial_s", "respawn_max_s"})
    transport = node.choice("transport", ("stdio", "http"), "stdio")
    defaults = ExecutorConfig(name="", transport="stdio", tool="", arguments={})
    common = dict(
        name="openclaw_bridge", transport=transport, tool="events_wait", arguments={}, slots=1,
        call_timeout_s=node.seconds("call_timeout_s", 30.0),     # messages_send and the other short calls
        connect_timeout_s=node.seconds("connect_timeout_s", defaults.connect_timeout_s),
        respawn_initial_s=node.seconds("respawn_initial_s", defaults.respawn_initial_s),
        respawn_max_s=node.seconds("respawn_max_s", defaults.respawn_max_s),
    )
    if transport == "http":
        return ExecutorConfig(**common, url=node.str("url"), headers=node.str_map("headers"))
    command = node.str("command")
    return ExecutorConfig(**common, command=sys.executable if command == "python" else command,
                          args=tuple(node.str_list("args")), cwd=node.str("cwd", str(PROJECT_ROOT)),
                          env=node.str_map("env"))


MEMORY_FIELDS = ("query", "user_id", "sender", "task_id", "request", "result", "exchange", "messages")
MEMORY_TOOLS = ("search", "add", "forget")


def _memory(node: _Node) -> MemoryConfig:
    """`memory:` — the MemOS MCP server (started or reached like an executor's), its tools and their argument
    templates, and how much of what it recalls a task gets."""
    node.require_mapping()
    node.reject_unknown({"transport", "command", "args", "cwd", "env", "url", "headers", "connect_timeout_s",
                         "respawn_initial_s", "respawn_max_s", *MEMORY_TOOLS, "recall_chars", "recall_items",
                         "result_keys", "search_timeout_s", "add_timeout_s", "retry_s",
                         "max_tries"})
    defaults = MemoryConfig(server=ExecutorConfig(name="", transport="stdio", tool="", arguments={}),
                            search=MemoryToolConfig("", {}), add=MemoryToolConfig("", {}))
    transport = node.choice("transport", ("stdio", "http"), "stdio")
    common = dict(name="memory", transport=transport, tool="", arguments={}, slots=1,
                  connect_timeout_s=node.seconds("connect_timeout_s", 20.0),
                  respawn_initial_s=node.seconds("respawn_initial_s", 0.5),
                  respawn_max_s=node.seconds("respawn_max_s", 30.0))
    if transport == "http":
        server = ExecutorConfig(**common, url=node.str("url"), headers=node.str_map("headers"))
    else:
        command = node.str("command")
        server = ExecutorConfig(**common, command=sys.executable if command == "python" else command,
                                args=tuple(node.str_list("args")), cwd=node.str("cwd", str(PROJECT_ROOT)),
                                env=node.str_map("env"))
    keys = node.str_list("result_keys") if node.given("result_keys") else list(defaults.result_keys)
    if not keys:
        raise ConfigError(node.file, node.key("result_keys"), "at least one key under which a search's answer "
                          "holds a memory's text (memory for MemOS)", "an empty list")
    return MemoryConfig(
        server=server,
        search=_memory_tool(node.child("search")),
        add=_memory_tool(node.child("add")),
        forget=_memory_tool(node.child("forget")) if node.raw("forget") is not None else None,
        recall_chars=node.int("recall_chars", defaults.recall_chars, minimum=1),
        recall_items=node.int("recall_items", defaults.recall_items, minimum=1),
        result_keys=tuple(keys),
        search_timeout_s=node.seconds("search_timeout_s", defaults.search_timeout_s),
        add_timeout_s=node.seconds("add_timeout_s", defaults.add_timeout_s),
        retry_s=node.seconds("retry_s", defaults.retry_s),
        max_tries=node.int("max_tries", defaults.max_tries, minimum=1),
    )


def _memory_tool(node: _Node) -> MemoryToolConfig:
    """`memory.search|add|forget:` — {tool, arguments}; the arguments must name the sender, so that no memory is
    ever shared across senders."""
    if node.value is None:
        raise ConfigError(node.file, node.path, "a mapping {tool: …, arguments: {…}}", "nothing (the key is missing)")
    node.require_mapping()
    node.reject_unknown({"tool", "arguments"})
    arguments = node.child("arguments")
    arguments.require_mapping()
    _check_templates(arguments, MEMORY_FIELDS)
    if not any(field in ("user_id", "sender") for field in _template_fields(arguments.value)):
        raise ConfigError(node.file, arguments.path, "argument templates that name the sender ({user_id} or "
                          "{sender}): memory is never shared across senders", "none that does")
    return MemoryToolConfig(tool=node.name("tool"), arguments=arguments.value)


def _template_fields(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [name for item in value.values() for name in _template_fields(item)]
    if isinstance(value, list):
        return [name for item in value for name in _template_fields(item)]
    if isinstance(value, str):
        return [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    return []


def _brainstem(node: _Node) -> BrainstemConfig:
    return BrainstemConfig(model_path=_project_path(node, "model_path") if node.raw("model_path") else None,
                           max_tokens=node.int("max_tokens", BrainstemConfig().max_tokens, minimum=1))


def _budget(node: _Node) -> BudgetConfig:
    defaults = BudgetConfig()
    return BudgetConfig(daily_usd=node.amount("daily_usd", defaults.daily_usd),
                        monthly_usd=node.amount("monthly_usd", defaults.monthly_usd),
                        paid_call_reserve_usd=node.amount("paid_call_reserve_usd", defaults.paid_call_reserve_usd),
                        warn_at=_warn_at(node, defaults.warn_at), operators=_operators(node))


def _warn_at(node: _Node, default: tuple[float, ...]) -> tuple[float, ...]:
    """`budget.warn_at`: shares of the caps, each above 0 and below 1 (the cap itself refuses; it warns not)."""
    shares = node._get("warn_at", list(default), "a list of shares of the caps, each above 0 and below 1 "
                       "(e.g. [0.8])", lambda v: isinstance(v, list) and all(
                           _finite(s) and not isinstance(s, bool) and 0 < s < 1 for s in v))
    return tuple(sorted(set(float(share) for share in shares)))


def _operators(node: _Node) -> tuple[str, ...]:
    senders = node.str_list("operators")
    for i, sender in enumerate(senders):
        if ":" not in sender or sender.startswith(":") or "*" in sender:
            raise ConfigError(node.file, f"{node.key('operators')}[{i}]", "an IM sender as <channel>:<id> "
                              "(telegram:4242)", node.shown("operators", i))
    return tuple(senders)


def _repair(node: _Node) -> RepairConfig:
    defaults = RepairConfig()
    return RepairConfig(
        executor_kind=node.name("executor_kind", defaults.executor_kind),
        prompt=node.str("prompt", DEFAULT_REPAIR_PROMPT),
        max_per_hour=node.int("max_per_hour", defaults.max_per_hour, minimum=1),
        backoff_initial_s=node.seconds("backoff_initial_s", defaults.backoff_initial_s),
        verify_s=node.seconds("verify_s", defaults.verify_s),
        log_lines=node.int("log_lines", defaults.log_lines, minimum=0),
    )


DEFAULT_REPAIR_PROMPT = """[repair] The LiteLLM proxy of Omni-Orchestrator is down ({error}).
Health check: GET {health_url} should answer 200.
Restart command: {restart_command}
Diagnose from the last lines of its log below, fix what is needed, then run the restart command.
--- log tail ---
{log_tail}"""


def _project_path(node: _Node, name: str, default: str | None = None) -> str:
    try:
        path = Path(node.str(name, default)).expanduser()
    except RuntimeError:   # ~someone who has no home here
        raise ConfigError(node.file, node.key(name), "a path (a ~user in it must exist on this machine)",
                          node.shown(name)) from None
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def _supervision(node: _Node) -> SupervisionConfig:
    defaults = SupervisionConfig()
    policy = SupervisionConfig(
        strategy=node.choice("strategy", ("one_for_one", "one_for_all", "rest_for_one"), defaults.strategy),
        max_restarts=node.int("max_restarts", defaults.max_restarts, minimum=0),
        within_s=node.seconds("within_s", defaults.within_s),
        backoff_initial_s=node.seconds("backoff_initial_s", defaults.backoff_initial_s),
        backoff_max_s=node.seconds("backoff_max_s", defaults.backoff_max_s),
        sweep_interval_s=node.seconds("sweep_interval_s", defaults.sweep_interval_s),
        shutdown_timeout_s=node.seconds("shutdown_timeout_s", defaults.shutdown_timeout_s),
    )
    if policy.crash_loop_s >= policy.within_s:
        raise ConfigError(
            node.file, node.path or "supervision",
            f"settings under which a child crashing at every start escalates: the backoff before its "
            f"{policy.max_restarts + 1}th crash (supervision.backoff_initial_s doubling up to "
            "supervision.backoff_max_s, "
            f"supervision.max_restarts times) must total less than supervision.within_s; raise within_s, or lower "
            f"max_restarts or backoff_max_s",
            f"{policy.crash_loop_s:.4g}s of backoff against within_s {policy.within_s:g}s")
    return policy


def _gateway(node: _Node) -> GatewayConfig:
    defaults = GatewayConfig()
    host = node.str("host", defaults.host)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(node.file, node.key("host"), "a loopback address (127.0.0.1, localhost, ::1)",
                          node.shown("host"))
    path = node.str("path", defaults.path)
    if not path.startswith("/"):
        raise ConfigError(node.file, node.key("path"), "a URL path starting with '/'", node.shown("path"))
    return GatewayConfig(
        host=host,
        port=node.int("port", defaults.port, minimum=0, maximum=65535),
        path=path,
        token_env=node.env_name("token_env", defaults.token_env),
        generate_token=node.bool("generate_token", defaults.generate_token),
    )


SANDBOX_OPENCLAW_TOKEN_ENV = "OMNI_SANDBOX_OPENCLAW_TOKEN"
SANDBOX_OPENCLAW_START_S = 120     # the gateway's start, 13 s idle, up to 30 s on a loaded machine
SANDBOX_OPENCLAW_TURN_S = 60


def _sandbox_openclaw(node: _Node, executors: dict[str, ExecutorConfig]) -> SandboxOpenClawConfig | None:
    """The sandbox's real OpenClaw gateway when OpenClaw is installed, with `executors[executor]` replaced by
    our OpenClaw-agent executor pointed at it; None (and the stub stays) when it is not installed."""
    node.require_mapping()
    node.reject_unknown({"port", "token", "model_url", "executor"})
    settings = SandboxOpenClawConfig(port=node.int("port", 18420, minimum=1, maximum=65535),
                                     token=node.str("token", secret=True), model_url=node.str("model_url"),
                                     executor=node.name("executor"))
    stub = executors.get(settings.executor)
    if stub is None:
        raise ConfigError(node.file, node.key("executor"), "one of the executors: " + ", ".join(executors),
                          node.shown("executor"))
    from sandbox import openclaw_install
    if not openclaw_install.installed():
        return None
    where = f"127.0.0.1:{settings.port}"
    executors[settings.executor] = ExecutorConfig(
        name=stub.name, transport="stdio", tool="run_agent_turn",
        arguments={"prompt": "{description}", "task_id": "{task_id}", "timeout_s": SANDBOX_OPENCLAW_TURN_S},
        command=sys.executable, cwd=str(PROJECT_ROOT), env={SANDBOX_OPENCLAW_TOKEN_ENV: settings.token},
        args=("-m", "mcp_servers.openclaw_agent", "--url", f"ws://{where}", "--token-env", SANDBOX_OPENCLAW_TOKEN_ENV,
              "--health-url", f"http://{where}/readyz", "--connect-timeout", str(SANDBOX_OPENCLAW_START_S)),
        slots=stub.slots, call_timeout_s=SANDBOX_OPENCLAW_START_S + SANDBOX_OPENCLAW_TURN_S + 10,
        connect_timeout_s=stub.connect_timeout_s)
    return settings


def _executor(node: _Node) -> ExecutorConfig:
    node.require_mapping()
    node.reject_unknown({"transport", "command", "args", "cwd", "env", "url", "headers", "tool", "arguments",
                         "slots", "call_timeout_s", "connect_timeout_s", "respawn_initial_s", "respawn_max_s",
                         "model_route", "provides"})
    transport = node.choice("transport", ("stdio", "http"), "stdio")
    defaults = ExecutorConfig(name="", transport="stdio", tool="", arguments={})
    arguments = node.child("arguments")
    arguments.require_mapping()
    if not arguments.value:
        raise ConfigError(node.file, arguments.path, "a mapping of tool argument templates, e.g. "
                          "{prompt: '{description}'}")
    _check_templates(arguments)
    common = dict(
        name=node.path.rsplit(".", 1)[-1],
        transport=transport,
        tool=node.name("tool"),
        arguments=arguments.value,
        slots=node.int("slots", defaults.slots, minimum=1),
        call_timeout_s=node.seconds("call_timeout_s", defaults.call_timeout_s),
        connect_timeout_s=node.seconds("connect_timeout_s", defaults.connect_timeout_s),
        respawn_initial_s=node.seconds("respawn_initial_s", defaults.respawn_initial_s),
        respawn_max_s=node.seconds("respawn_max_s", defaults.respawn_max_s),
        model_route=node.bool("model_route", False),
        provides=_needs(node),
    )
    if transport == "http":
        return ExecutorConfig(**common, url=node.str("url"), headers=node.str_map("headers"))
    command = node.str("command")
    return ExecutorConfig(
        **common,
        command=sys.executable if command == "python" else command,
        args=tuple(node.str_list("args")),
        cwd=node.str("cwd", str(PROJECT_ROOT)),
        env=node.str_map("env"),
    )


TEMPLATE_FIELDS = ("description", "task_id", "kind", "sender", "home", "tier", "model", "memory")


def _check_templates(node: _Node, known: tuple[str, ...] = TEMPLATE_FIELDS) -> None:
    """Every `{field}` in an argument template must be one the Executor fills in; no key is written in one."""
    def check(value: Any, key_path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                check(item, f"{key_path}.{_shown_name(key)}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                check(item, f"{key_path}[{i}]")
        elif isinstance(value, str):
            if not node.owner_only and looks_like_key(value):
                raise ConfigError(node.file, key_path, "no literal key in a template (pass it to the server in "
                                  "its env as a ${ENV_NAME} reference, or chmod 600 this file)", "a literal key")
            try:
                fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
            except ValueError as err:
                raise ConfigError(node.file, key_path, "a template with balanced braces ({{ and }} for literal "
                                  "ones)", str(err)) from None
            for name in fields:
                if name not in known:
                    raise ConfigError(node.file, key_path, "template fields among "
                                      + ", ".join("{%s}" % f for f in known), "{%s}" % name)
    check(node.value, node.path)


def _routing(node: _Node, executors: Mapping[str, ExecutorConfig]) -> RoutingConfig:
    rules = []
    for rule in node.child("rules").list():
        rule.require_mapping()
        rule.reject_unknown({"kind", "match", "executors", "tier"})
        names = rule.str_list("executors")
        for position, name in enumerate(names):
            if name not in executors:
                raise ConfigError(rule.file, f"{rule.key('executors')}[{position}]",
                                  f"one of the configured executors ({', '.join(executors)})",
                                  rule.shown("executors", position))
        if not names:
            raise ConfigError(rule.file, rule.key("executors"), "at least one executor name")
        rules.append(RoutingRule(kind=rule.name("kind"), executors=tuple(names),
                                 patterns=tuple(rule.pattern_list("match")),
                                 tier=rule.choice("tier", TIERS, Tier.P1)))
    if not rules:
        raise ConfigError(node.file, node.key("rules"), "at least one routing rule")
    kinds = [rule.kind for rule in rules]
    default_kind = node.name("default_kind", kinds[-1])
    if default_kind not in kinds:
        raise ConfigError(node.file, node.key("default_kind"), f"one of the rule kinds ({', '.join(kinds)})",
                          node.shown("default_kind"))
    threshold = node.amount("confidence_threshold", 0.5)
    if threshold > 1:
        raise ConfigError(node.file, node.key("confidence_threshold"), "a number from 0 to 1",
                          node.shown("confidence_threshold"))
    return RoutingConfig(rules=tuple(rules), default_kind=default_kind,
                         classify_with_model=node.bool("classify_with_model", False),
                         classifier=node.bool("classifier", True), confidence_threshold=threshold,
                         provides={name: e.provides for name, e in executors.items() if e.provides})


def _needs(node: _Node) -> tuple[str, ...]:
    """`provides:` on an executor: needs the classifier knows (a typo would route nothing there)."""
    from routing.classifier import NEEDS
    names = node.str_list("provides")
    for position, name in enumerate(names):
        if name not in NEEDS:
            raise ConfigError(node.file, f"{node.key('provides')}[{position}]", "one of the needs "
                              + ", ".join(NEEDS), node.shown("provides", position))
    return tuple(names)


# --- workspaces: the repositories coding tasks run in (actors/workspace_keeper.py) ------------------------------
def _workspaces(node: _Node, executors: Mapping[str, ExecutorConfig]) -> WorkspacesConfig:
    """Names only here; whether each path is a git repository with its base is for `validate` (cli/validate.py)."""
    node.require_mapping()
    node.reject_unknown({"repos", "executors", "senders", "default", "root", "sweep_interval_s"})
    repos = {name: _repo(name, repo) for name, repo in node.child("repos").items()}
    if not repos:
        raise ConfigError(node.file, node.key("repos"), "at least one repository (name: {path: /abs/path})")
    names = node.str_list("executors")
    for position, name in enumerate(names):
        if name not in executors:
            raise ConfigError(node.file, f"{node.key('executors')}[{position}]",
                              f"one of the configured executors ({', '.join(executors)})", node.shown("executors",
                                                                                                     position))
    if not names:
        raise ConfigError(node.file, node.key("executors"), "the executors whose tasks get a worktree (e.g. [coder])")
    senders = node.str_map("senders", secret=False)
    for pattern, repo in senders.items():
        if repo not in repos:
            raise ConfigError(node.file, f"{node.key('senders')}.{pattern}", f"one of the repos ({', '.join(repos)})",
                              repr(repo))
    default = node.str("default") if node.given("default") else None
    if default is not None and default not in repos:
        raise ConfigError(node.file, node.key("default"), f"one of the repos ({', '.join(repos)})", repr(default))
    root = node.str("root") if node.given("root") else None
    if root is not None and not Path(root).expanduser().is_absolute():
        raise ConfigError(node.file, node.key("root"), "an absolute path", repr(root))
    return WorkspacesConfig(repos=repos, executors=tuple(names), senders=senders, default=default,
                            root=str(Path(root).expanduser()) if root else None,
                            sweep_interval_s=node.seconds("sweep_interval_s", 60.0))


def _repo(name: str, node: _Node) -> RepoConfig:
    node.require_mapping()
    node.reject_unknown({"path", "base", "keep_s"})
    path = node.str("path")
    if not Path(path).expanduser().is_absolute():
        raise ConfigError(node.file, node.key("path"), "the repository's absolute path", repr(path))
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(node.file, node.path, "a repository name of letters, digits, _ . -", repr(name))
    return RepoConfig(name=name, path=str(Path(path).expanduser()), base=node.str("base", "main"),
                      keep_s=node.seconds("keep_s", 7 * 86400.0))


class _Node:
    """A value at a key path in one file; its accessors validate and explain. An error quotes the value as
    the file wrote it (`${NAME}`), never what the environment put in its place."""

    def __init__(self, file: Path, path: str, value: Any, owner_only: bool):
        self.file, self.path, self.value, self.owner_only = file, path, value, owner_only

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> Any:
        return self.value.get(name) if isinstance(self.value, dict) else None

    def given(self, name: str) -> bool:
        return isinstance(self.value, dict) and name in self.value

    def shown(self, name: str, index: int | None = None) -> str:
        """The value at `name` (or its item `index`), as an error may quote it."""
        value, key_path = self.raw(name), self.key(name)
        if index is not None:
            value = value[index] if isinstance(value, list) and index < len(value) else None
            key_path = f"{key_path}[{index}]"
        return _describe(value, key_path)

    def child(self, name: str) -> _Node:
        return _Node(self.file, self.key(name), self.raw(name), self.owner_only)

    def section(self, name: str, known: set[str]) -> _Node:
        node = self.child(name)
        node.require_mapping()
        node.reject_unknown(known)
        return node

    def require_mapping(self) -> None:
        if self.value is None:
            self.value = {}
        if not isinstance(self.value, dict):
            raise ConfigError(self.file, self.path, "a mapping", _describe(self.value, self.path))

    def reject_unknown(self, known: set[str]) -> None:
        for name in self.value:
            if name not in known:
                near = difflib.get_close_matches(str(name), sorted(known), n=1)
                raise ConfigError(self.file, self.key(_shown_name(name)), f"one of the keys {', '.join(sorted(known))}",
                                  "an unknown key" + (f" (did you mean {near[0]}?)" if near else ""))

    def items(self) -> list[tuple[str, _Node]]:
        self.require_mapping()
        return [(str(name), self.child(name)) for name in self.value]

    def list(self) -> list[_Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise ConfigError(self.file, self.path, "a list", _describe(self.value, self.path))
        return [_Node(self.file, f"{self.path}[{i}]", item, self.owner_only) for i, item in enumerate(self.value)]

    def _get(self, name: str, default: Any, expected: str, accept: Callable[[Any], bool]) -> Any:
        value = self.value.get(name, default) if isinstance(self.value, dict) else default
        if value is _REQUIRED:
            raise ConfigError(self.file, self.key(name), expected, "nothing (the key is missing)")
        if not accept(value):
            raise ConfigError(self.file, self.key(name), expected, _describe(value, self.key(name)))
        return value

    def str(self, name: str, default: str | None = None, secret: bool = False) -> str:
        if default is not None and not self.given(name):
            return default
        value = self._get(name, _REQUIRED, "a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")
        return self._expand(value, self.key(name), secret)

    def name(self, name: str, default: str | None = None) -> str:
        """A name other settings refer to (a kind, a tool, a backup key): as written, never expanded."""
        if default is not None and not self.given(name):
            return default
        return self._get(name, _REQUIRED, "a non-empty name (letters, digits, _ . : / -; as written, no ${…})",
                         lambda v: isinstance(v, str) and bool(_NAME.fullmatch(v)) and not looks_like_key(v))

    def env_name(self, name: str, default: str | None = None) -> str:
        if default is not None and not self.given(name):
            return default
        return self._get(name, _REQUIRED, "the name of an environment variable (letters, digits, _)",
                         lambda v: isinstance(v, str) and bool(_ENV_NAME.fullmatch(v)))

    def int(self, name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        expected = "a whole number" + (f" >= {minimum}" if minimum is not None else "") + (
            f" <= {maximum}" if maximum is not None else "")
        return self._get(name, default, expected, lambda v: isinstance(v, int) and not isinstance(v, bool)
                         and (minimum is None or v >= minimum) and (maximum is None or v <= maximum))

    def seconds(self, name: str, default: float) -> float:
        return float(self._get(name, default, "a positive number of seconds", lambda v: _finite(v) and v > 0))

    def amount(self, name: str, default: float) -> float:
        return float(self._get(name, default, "a number >= 0", lambda v: _finite(v) and v >= 0))

    def bool(self, name: str, default: bool) -> bool:
        return self._get(name, default, "true or false", lambda v: isinstance(v, bool))

    def choice(self, name: str, options: tuple[str, ...], default: str) -> Any:
        return self._get(name, default, "one of " + ", ".join(options), lambda v: isinstance(v, str) and v in options)

    def str_list(self, name: str) -> list[str]:
        items = self._get(name, [], "a list of strings",
                          lambda v: isinstance(v, list) and all(isinstance(i, (str, int, float)) for i in v))
        return [self._expand(str(item), f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def str_map(self, name: str, secret: bool = True) -> dict[str, str]:
        items = self._get(name, {}, "a mapping of names to strings",
                          lambda v: isinstance(v, dict) and all(isinstance(i, (str, int, float)) for i in v.values()))
        return {str(k): self._expand(str(v), f"{self.key(name)}.{_shown_name(k)}", secret=secret)
                for k, v in items.items()}

    def pattern_list(self, name: str) -> list[re.Pattern[str]]:
        patterns = []
        for i, text in enumerate(self.str_list(name)):
            try:
                patterns.append(re.compile(text, re.IGNORECASE))
            except re.error as err:
                from_environment = _ENV_REFERENCE.search(str(self.raw(name)[i]))
                raise ConfigError(self.file, f"{self.key(name)}[{i}]", "a valid regular expression",
                                  self.shown(name, i) + ("" if from_environment else f" ({err})")) from None
        return patterns

    def _expand(self, text: str, key_path: str, secret: bool = False) -> str:
        """Replace `${NAME}` with the environment's value; a literal key needs an owner-only file."""
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name not in os.environ and default is not None:
                return default
            if name not in os.environ:
                raise ConfigError(self.file, key_path, f"environment variable {name} to be set",
                                  "nothing (it is unset)")
            return os.environ[name]

        if not self.owner_only:
            if looks_like_key(_literal_part(text)):
                raise ConfigError(self.file, key_path, "a ${ENV_NAME} reference where a key stands (a literal key "
                                  "is only accepted in a file readable by its owner alone: chmod 600)", "a literal key")
            if secret and _secret_slot(key_path) and not _ENV_REFERENCE.search(text):
                raise ConfigError(self.file, key_path, "a ${ENV_NAME} reference (a literal secret is only "
                                  "accepted in a file readable by its owner alone: chmod 600)", "a literal value")
        return _ENV_REFERENCE.sub(substitute, text)


_REQUIRED = object()
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 3, 6, 6
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = 40
_KINDS = {str: "string", int: "number", float: "number", bool: "boolean", list: "list", dict: "mapping"}


def _finite(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:   # an int too large for a float
        return False


def _literal_part(text: str) -> str:
    """What the file itself says, around and inside (as defaults) its `${…}` references."""
    return _ENV_REFERENCE.sub(lambda m: m.group(2) or "", text)


def _secret_slot(key_path: str) -> bool:
    """A place where only a secret stands: a variable or header named like one, or anything under api_keys."""
    return key_path.startswith("api_keys.") or is_secret_name(key_path.rsplit(".", 1)[-1])


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _shown_name(name: Any) -> str:
    return "(a name shaped like a key)" if looks_like_key(str(name)) else str(name)


def _describe(value: Any, key_path: str) -> str:
    """A value as an error quotes it: environment references as written, secrets and keys not at all."""
    if value is None:
        return "nothing"
    kind = _KINDS.get(type(value), type(value).__name__)
    parts = [part for part in re.split(r"[.\[\]]", key_path) if part]
    secret = any(part in _SECRET_KEYS for part in parts) or (parts and is_secret_name(parts[-1]))
    if isinstance(value, str) and _ENV_REFERENCE.search(value) and not (secret and _literal_part(value)):
        written = _ENV_REFERENCE.sub(lambda m: "${%s}" % m.group(1), value)
        shown = written if _ENV_REFERENCE.fullmatch(value) else repr(written)
        return f"{shown if len(shown) <= 80 else shown[:77] + '...'} (from the environment, value not shown)"
    if secret:
        return f"a {kind} (value not shown)"
    text = repr(value) if isinstance(value, str) else _SHORT_REPR.repr(value)   # YAML aliases can nest without end
    if looks_like_key(text):
        return f"a {kind} that looks like a key (value not shown)"
    return text if len(text) <= 60 else f"a {kind} of {len(text)} characters"
