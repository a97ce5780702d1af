"""The supervised actors of Omni-Orchestrator, one per module (the runtime they run on: `runtime`)."""
from .brainstem import BrainstemController
from .console import TransitionFeed
from .executor import Executor
from .gateway import Gateway
from .health_monitor import HealthMonitor
from .litellm_guard import LiteLLMGuard
from .proxy_keeper import ProxyKeeper
from .router import Router
from .state_store import StateStore
from .system_mode import SystemMode

__all__ = ["BrainstemController", "HealthMonitor", "Directory",
           "Executor", "Gateway",
           "LiteLLMGuard", "ProxyKeeper", "Router", "StateStore", "SupervisedActor",
           "SystemMode", "TaskState",
           "TransitionFeed"]
