"""Reading a YAML config into `config.schema` values, with errors that name the file, key path and
what was expected.

>>> load_config(Path("config/sandbox.yaml")).gateway.port
8765
"""
from __future__ import annotations

import copy
import os
import re
import stat
import string
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from .schema import (BrainstemConfig, BudgetConfig, Config, HealthConfig, DemoConfig, ExecutorConfig, GatewayConfig, LiteLLMConfig, RepairConfig,
                     RoutingConfig, RoutingRule, SupervisionConfig, TasksConfig, TierConfig)
from .schema import ImConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DEFAULT = PROJECT_ROOT / "config" / "sandbox.yaml"
# ${NAME}, or ${NAME:-default} for values that may be defaulted (the sandbox's fake keys)
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEYS = ("env", "headers", "api_keys")


class ConfigError(ValueError):
    """A config mistake: `file: key.path: expected …, got …`."""

    def __init__(self, file: Path | str, key_path: str, expected: str, got: str | None = None):
        self.file, self.key_path, self.expected = str(file), key_path, expected
        detail = f"{self.file}: {key_path or '(top level)'}: expected {expected}"
        super().__init__(detail if got is None else f"{detail}, got {got}")


def omni_home() -> Path:
    """The data directory: `$OMNI_HOME`, else `~/.omni`."""
    return Path(os.environ.get("OMNI_HOME") or Path.home() / ".omni").expanduser()


def resolve_config_path(given: str | None) -> Path:
    """`--config PATH`, else `$OMNI_HOME/config.yaml` when it exists, else the embedded sandbox."""
    if given:
        return Path(given).expanduser()
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
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(path, "", "a readable YAML file", err.strerror) from None
    except yaml.YAMLError as err:
        raise ConfigError(path, "", "valid YAML", str(err).replace("\n", " ")) from None
    node = _Node(path, "", raw if raw is not None else {}, _owner_only(path))
    return _build(node)


def _owner_only(path: Path) -> bool:
    return not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def _build(root: _Node) -> Config:
    root.require_mapping()
    root.reject_unknown({"tasks", "supervision", "routing", "executors", "gateway", "demo", "litellm", "api_keys",
                         "budget", "repair", "locale", "providers", "health", "brainstem", "im"})
    executors = {name: _executor(node) for name, node in root.child("executors").items()}
    if not executors:
        raise ConfigError(root.file, "executors", "at least one executor")
    routing = _routing(root.child("routing"), executors)
    demo = root.child("demo")
    return Config(
        source=root.file,
        home=omni_home(),
        tasks=TasksConfig(
            max_attempts=root.child("tasks").int("max_attempts", 3, minimum=1),
            reconcile_interval_s=root.child("tasks").seconds("reconcile_interval_s", 2.0),
        ),
        supervision=_supervision(root.child("supervision")),
        routing=routing,
        executors=executors,
        gateway=_gateway(root.child("gateway")),
        demo=None if demo.value is None else DemoConfig(
            interval_s=demo.seconds("interval_s", 4.0),
            tasks=tuple(demo.str_list("tasks")),
        ),
        litellm=None if root.child("litellm").value is None else _litellm(root),
        budget=_budget(root.child("budget")),
        health=_health(root.child("health")),
        brainstem=_brainstem(root.child("brainstem")),
        repair=_repair(root.child("repair")),
        locale=root.choice("locale", LOCALES, "en"),
        im=_im(root.child("im"), root.choice("locale", LOCALES, "en")),
        providers=None if root.child("providers").value is None else {
            name: node.value for name, node in root.child("providers").items()
            if _port(node)},
    )


def _port(node: _Node) -> bool:
    if not (isinstance(node.value, int) and not isinstance(node.value, bool) and 0 <= node.value <= 65535):
        raise ConfigError(node.file, node.path, "a port number (0 to 65535)", _describe(node.value, node.path))
    return True


def _litellm(root: _Node) -> LiteLLMConfig:
    node = root.child("litellm")
    node.require_mapping()
    node.reject_unknown({"mode", "url", "proxy_key", "config", "executable", "env", "start_deadline_s",
                         "rss_ceiling_mb", "probe_interval_s", "probe_timeout_s", "failures_to_down",
                         "successes_to_up", "call_timeout_s", "restart_command", "route_env", "tiers"})
    mode = node.choice("mode", ("managed", "external"), "external")
    defaults = LiteLLMConfig(mode="external", url="", tiers={})
    backup_keys = root.child("api_keys").str_map("backup")
    tiers = {name: _tier(name, tier, backup_keys) for name, tier in node.child("tiers").items()}
    if list(tiers) != ["P1", "P2"]:
        raise ConfigError(node.file, node.key("tiers"), "the tiers P1 (free) and P2 (paid), in that order",
                          ", ".join(tiers) or "none")
    managed = mode == "managed"
    url = node.str("url").rstrip("/")
    return LiteLLMConfig(
        mode=mode,
        url=url,
        tiers=tiers,
        proxy_key=node.str("proxy_key", "") if node.value.get("proxy_key") else "",
        config_path=_project_path(node.str("config")) if managed else None,
        executable=_project_path(node.str("executable", ".venv-litellm/bin/litellm")) if managed else None,
        env=node.str_map("env"),
        start_deadline_s=node.seconds("start_deadline_s", defaults.start_deadline_s),
        rss_ceiling_mb=node.seconds("rss_ceiling_mb", defaults.rss_ceiling_mb),
        probe_interval_s=node.seconds("probe_interval_s", defaults.probe_interval_s),
        probe_timeout_s=node.seconds("probe_timeout_s", defaults.probe_timeout_s),
        failures_to_down=node.int("failures_to_down", defaults.failures_to_down, minimum=1),
        successes_to_up=node.int("successes_to_up", defaults.successes_to_up, minimum=1),
        call_timeout_s=node.seconds("call_timeout_s", defaults.call_timeout_s),
        restart_command=node.str("restart_command", "").format_map(
            {"python": sys.executable, "project": str(PROJECT_ROOT), "config": str(root.file.resolve()),
             "home": str(omni_home())}),
        route_env=node.str_map("route_env", secret=False),   # variable *names*, not values
    )


def _tier(name: str, node: _Node, backup_keys: dict[str, str]) -> TierConfig:
    node.require_mapping()
    node.reject_unknown({"proxy_model", "direct_model", "direct_api_base", "backup_key", "paid",
                         "input_usd_per_mtok", "output_usd_per_mtok"})
    key_name = node.str("backup_key")
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
    return HealthConfig(interval_s=node.seconds("interval_s", d.interval_s), timeout_s=node.seconds("timeout_s", d.timeout_s),
                        timeouts_to_down=node.int("timeouts_to_down", d.timeouts_to_down, minimum=1),
                        brainstem_interval_s=node.seconds("brainstem_interval_s", d.brainstem_interval_s),
                        successes_to_up=node.int("successes_to_up", d.successes_to_up, minimum=1))


LOCALES = ("en", "zh-Hant", "zh-Hans")


def _im(node: _Node, default_locale: str) -> ImConfig:
    """`im:` — the allowlist of senders, the replies' locale (default: the top-level one), the OpenClaw bridge."""
    node.require_mapping()
    node.reject_unknown({"allow", "locale", "openclaw", "session_key", "wait_ms", "recent_s"})
    defaults = ImConfig()
    allow = node.str_list("allow")
    for i, sender in enumerate(allow):
        if ":" not in sender or sender.startswith(":"):
            raise ConfigError(node.file, f"{node.key('allow')}[{i}]", "a sender as <channel>:<id> (telegram:4242), "
                              "or a pattern such as cli:*", repr(sender))
    bridge = node.child("openclaw")
    return ImConfig(
        allow=tuple(allow),
        locale=node.choice("locale", LOCALES, default_locale),
        openclaw=None if bridge.value is None else _openclaw_bridge(bridge),
        session_key=node.str("session_key") if node.value.get("session_key") is not None else None,
        wait_ms=node.int("wait_ms", defaults.wait_ms, minimum=1, maximum=300_000),
        recent_s=node.seconds("recent_s", defaults.recent_s),
    )


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


def _brainstem(node: _Node) -> BrainstemConfig:
    path = node.value.get("model_path") if isinstance(node.value, dict) else None
    return BrainstemConfig(model_path=_project_path(node.str("model_path")) if path else None,
                           max_tokens=node.int("max_tokens", BrainstemConfig().max_tokens, minimum=1))


def _budget(node: _Node) -> BudgetConfig:
    defaults = BudgetConfig()
    return BudgetConfig(daily_usd=node.amount("daily_usd", defaults.daily_usd),
                        monthly_usd=node.amount("monthly_usd", defaults.monthly_usd),
                        paid_call_reserve_usd=node.amount("paid_call_reserve_usd", defaults.paid_call_reserve_usd))


def _repair(node: _Node) -> RepairConfig:
    defaults = RepairConfig()
    kind = node.str("executor_kind", defaults.executor_kind)
    return RepairConfig(
        executor_kind=kind,
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


def _project_path(text: str) -> str:
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def _supervision(node: _Node) -> SupervisionConfig:
    defaults = SupervisionConfig()
    return SupervisionConfig(
        strategy=node.choice("strategy", ("one_for_one", "one_for_all", "rest_for_one"), defaults.strategy),
        max_restarts=node.int("max_restarts", defaults.max_restarts, minimum=0),
        within_s=node.seconds("within_s", defaults.within_s),
        backoff_initial_s=node.seconds("backoff_initial_s", defaults.backoff_initial_s),
        backoff_max_s=node.seconds("backoff_max_s", defaults.backoff_max_s),
        sweep_interval_s=node.seconds("sweep_interval_s", defaults.sweep_interval_s),
        shutdown_timeout_s=node.seconds("shutdown_timeout_s", defaults.shutdown_timeout_s),
    )


def _gateway(node: _Node) -> GatewayConfig:
    defaults = GatewayConfig()
    host = node.str("host", defaults.host)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(node.file, node.key("host"), "a loopback address (127.0.0.1, localhost, ::1)",
                          repr(host))
    path = node.str("path", defaults.path)
    if not path.startswith("/"):
        raise ConfigError(node.file, node.key("path"), "a URL path starting with '/'", repr(path))
    return GatewayConfig(
        host=host,
        port=node.int("port", defaults.port, minimum=0, maximum=65535),
        path=path,
        token_env=node.str("token_env", defaults.token_env),
        generate_token=node.bool("generate_token", defaults.generate_token),
    )


def _executor(node: _Node) -> ExecutorConfig:
    node.require_mapping()
    node.reject_unknown({"transport", "command", "args", "cwd", "env", "url", "headers", "tool", "arguments",
                         "slots", "call_timeout_s", "connect_timeout_s", "respawn_initial_s", "respawn_max_s",
                         "model_route"})
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
        tool=node.str("tool"),
        arguments=arguments.value,
        slots=node.int("slots", defaults.slots, minimum=1),
        call_timeout_s=node.seconds("call_timeout_s", defaults.call_timeout_s),
        connect_timeout_s=node.seconds("connect_timeout_s", defaults.connect_timeout_s),
        respawn_initial_s=node.seconds("respawn_initial_s", defaults.respawn_initial_s),
        respawn_max_s=node.seconds("respawn_max_s", defaults.respawn_max_s),
        model_route=node.bool("model_route", False),
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


TEMPLATE_FIELDS = ("description", "task_id", "kind", "sender", "home", "tier", "model")


def _check_templates(node: _Node) -> None:
    """Every `{field}` in an argument template must be one the Executor fills in."""
    def check(value: Any, key_path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                check(item, f"{key_path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                check(item, f"{key_path}[{i}]")
        elif isinstance(value, str):
            try:
                fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
            except ValueError as err:
                raise ConfigError(node.file, key_path, "a template with balanced braces ({{ and }} for literal "
                                  "ones)", str(err)) from None
            for name in fields:
                if name not in TEMPLATE_FIELDS:
                    raise ConfigError(node.file, key_path, "template fields among "
                                      + ", ".join("{%s}" % f for f in TEMPLATE_FIELDS), "{%s}" % name)
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
                                  f"one of the configured executors ({', '.join(executors)})", repr(name))
        if not names:
            raise ConfigError(rule.file, rule.key("executors"), "at least one executor name")
        rules.append(RoutingRule(kind=rule.str("kind"), executors=tuple(names),
                                 patterns=tuple(rule.pattern_list("match")),
                                 tier=rule.choice("tier", ("P1", "P2"), "P1")))
    if not rules:
        raise ConfigError(node.file, node.key("rules"), "at least one routing rule")
    kinds = [rule.kind for rule in rules]
    default_kind = node.str("default_kind", kinds[-1])
    if default_kind not in kinds:
        raise ConfigError(node.file, node.key("default_kind"), f"one of the rule kinds ({', '.join(kinds)})",
                          repr(default_kind))
    return RoutingConfig(rules=tuple(rules), default_kind=default_kind,
                         classify_with_model=node.bool("classify_with_model", False))


class _Node:
    """A value at a key path in one file; its accessors validate and explain."""

    def __init__(self, file: Path, path: str, value: Any, owner_only: bool):
        self.file, self.path, self.value, self._owner_only = file, path, value, owner_only

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def child(self, name: str) -> _Node:
        value = self.value.get(name) if isinstance(self.value, dict) else None
        return _Node(self.file, self.key(name), value, self._owner_only)

    def require_mapping(self) -> None:
        if self.value is None:
            self.value = {}
        if not isinstance(self.value, dict):
            raise ConfigError(self.file, self.path, "a mapping", type(self.value).__name__)

    def reject_unknown(self, known: set[str]) -> None:
        for name in self.value:
            if name not in known:
                raise ConfigError(self.file, self.key(str(name)), f"one of the keys {', '.join(sorted(known))}",
                                  "an unknown key")

    def items(self) -> list[tuple[str, _Node]]:
        self.require_mapping()
        return [(str(name), self.child(name)) for name in self.value]

    def list(self) -> list[_Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise ConfigError(self.file, self.path, "a list", type(self.value).__name__)
        return [_Node(self.file, f"{self.path}[{i}]", item, self._owner_only) for i, item in enumerate(self.value)]

    def _get(self, name: str, default: Any, expected: str, accept: Callable[[Any], bool]) -> Any:
        value = self.value.get(name, default) if isinstance(self.value, dict) else default
        if value is _REQUIRED:
            raise ConfigError(self.file, self.key(name), expected, "nothing (the key is missing)")
        if not accept(value):
            raise ConfigError(self.file, self.key(name), expected, _describe(value, self.key(name)))
        return value

    def str(self, name: str, default: Any = None) -> str:
        default = _REQUIRED if default is None else default
        value = self._get(name, default, "a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")
        return self._expand(value, self.key(name))

    def int(self, name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        expected = "a whole number" + (f" >= {minimum}" if minimum is not None else "") + (
            f" <= {maximum}" if maximum is not None else "")
        return self._get(name, default, expected, lambda v: isinstance(v, int) and not isinstance(v, bool)
                         and (minimum is None or v >= minimum) and (maximum is None or v <= maximum))

    def seconds(self, name: str, default: float) -> float:
        return float(self._get(name, default, "a positive number of seconds",
                               lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0))

    def amount(self, name: str, default: float) -> float:
        return float(self._get(name, default, "a number >= 0",
                               lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0))

    def bool(self, name: str, default: bool) -> bool:
        return self._get(name, default, "true or false", lambda v: isinstance(v, bool))

    def choice(self, name: str, options: tuple[str, ...], default: str) -> Any:
        return self._get(name, default, "one of " + ", ".join(options), lambda v: v in options)

    def str_list(self, name: str) -> list[str]:
        items = self._get(name, [], "a list of strings",
                          lambda v: isinstance(v, list) and all(isinstance(i, (str, int, float)) for i in v))
        return [self._expand(str(item), f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def str_map(self, name: str, secret: bool = True) -> dict[str, str]:
        items = self._get(name, {}, "a mapping of names to strings",
                          lambda v: isinstance(v, dict) and all(isinstance(i, (str, int, float)) for i in v.values()))
        return {str(k): self._expand(str(v), f"{self.key(name)}.{k}", secret=secret) for k, v in items.items()}

    def pattern_list(self, name: str) -> list[re.Pattern[str]]:
        patterns = []
        for i, text in enumerate(self.str_list(name)):
            try:
                patterns.append(re.compile(text, re.IGNORECASE))
            except re.error as err:
                raise ConfigError(self.file, f"{self.key(name)}[{i}]", "a valid regular expression", str(err))
        return patterns

    def _expand(self, text: str, key_path: str, secret: bool = False) -> str:
        """Replace `${NAME}` with the environment's value; a literal secret needs an owner-only file."""
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name not in os.environ and default is not None:
                return default
            if name not in os.environ:
                raise ConfigError(self.file, key_path, f"environment variable {name} to be set", "nothing (it is unset)")
            return os.environ[name]

        if secret and not _ENV_REFERENCE.search(text) and _looks_secret(key_path) and not self._owner_only:
            raise ConfigError(self.file, key_path, "a ${ENV_NAME} reference (a literal secret is only "
                              "accepted in a file readable by its owner alone: chmod 600)", "a literal value")
        return _ENV_REFERENCE.sub(substitute, text)


_REQUIRED = object()


def _looks_secret(key_path: str) -> bool:
    return bool(re.search(r"(key|token|secret|password|authorization)", key_path, re.IGNORECASE))


def _describe(value: Any, key_path: str) -> str:
    if value is None:
        return "nothing"
    if any(part in _SECRET_KEYS for part in key_path.split(".")):
        return f"a {type(value).__name__} (value not shown)"
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} ({len(text)} characters)"
