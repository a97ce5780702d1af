"""Configuration: the shipped YAML files and the loader that validates them.

>>> from config import load_config, resolve_config_path
>>> cfg = load_config(resolve_config_path(None))   # $OMNI_HOME/config.yaml or the embedded sandbox
"""
from .loader import EMBEDDED_DEFAULT, PROJECT_ROOT, ConfigError, load_config, omni_home, resolve_config_path
from .schema import (Config, DemoConfig, ExecutorConfig, GatewayConfig, RoutingConfig, RoutingRule,
                     SupervisionConfig, TasksConfig)

__all__ = ["Config", "ConfigError", "DemoConfig", "EMBEDDED_DEFAULT", "ExecutorConfig", "GatewayConfig",
           "PROJECT_ROOT", "RoutingConfig", "RoutingRule", "SupervisionConfig", "TasksConfig", "load_config",
           "omni_home", "resolve_config_path"]
