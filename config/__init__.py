"""Configuration: the shipped YAML files and the loader that validates them.

>>> from config import load_config, resolve_config_path
>>> cfg = load_config(resolve_config_path(None))   # $OMNI_HOME/config.yaml or the embedded sandbox
"""
from .loader import (EMBEDDED_DEFAULT, PROJECT_ROOT, ConfigError, load_config, omni_home, overlay,
                     resolve_config_path)
from .schema import (BrainstemConfig, BudgetConfig, HealthConfig, Config, DemoConfig, ExecutorConfig, GatewayConfig,
                     LiteLLMConfig, RepairConfig,
                     RoutingConfig, RoutingRule, SupervisionConfig, TasksConfig, TierConfig)
from .templates import fill_template

__all__ = ["BrainstemConfig", "HealthConfig", "BudgetConfig", "Config", "ConfigError", "DemoConfig",
           "EMBEDDED_DEFAULT", "ExecutorConfig",
           "GatewayConfig", "LiteLLMConfig", "PROJECT_ROOT", "RepairConfig", "RoutingConfig", "RoutingRule",
           "SupervisionConfig", "TasksConfig", "TierConfig", "fill_template", "load_config", "omni_home", "overlay",
           "resolve_config_path"]
