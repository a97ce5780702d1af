"""The supervised actors of Omni-Orchestrator, one per module, each registered under its module's name
(`vocabulary.ActorName`; executors under their config names). The runtime they run on is `runtime`; the
tree they form is `actor_tree`."""
from .brainstem import Brainstem
from .budget_warden import BudgetWarden
from .executor import Executor
from .gateway import Gateway
from .health_monitor import HealthMonitor
from .litellm_guard import LiteLLMGuard
from .proxy_keeper import ProxyKeeper
from .router import Router
from .state_store import StateStore
from .system_mode import SystemMode
from .transition_feed import TransitionFeed

__all__ = ["Brainstem", "BudgetWarden", "Executor", "Gateway", "HealthMonitor", "LiteLLMGuard", "ProxyKeeper", "Router",
           "StateStore", "SystemMode", "TransitionFeed"]
