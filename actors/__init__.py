"""The supervised actors of Omni-Orchestrator, and the small runtime they share.

    loop, directory = EventLoopThread().start(), Directory()
    tree = Supervisor.start([ChildSpec("state_store", lambda ctx: StateStore.start(ctx, path, 3, journal, ()))],
                            SupervisionConfig(), loop, directory)
    directory.ask("state_store", CreateTask("hello"))
"""
from .brainstem import BrainstemController
from .console import TransitionFeed
from .directory import ActorUnavailable, Directory
from .event_loop import EventLoopThread
from .executor import Executor
from .gateway import Gateway, read_gateway_url
from .gateway_auth import gateway_token
from .health_monitor import HealthMonitor
from .journal import Journal
from .litellm_guard import LiteLLMGuard
from .proxy_keeper import ProxyKeeper
from .router import Router
from .state_store import StateStore
from .supervised import ChildContext, SupervisedActor
from .supervisor import ChildSpec, Supervisor
from .system_mode import SystemMode
from .task_lifecycle import IllegalTransition, TaskState, UnknownTask

__all__ = ["BrainstemController", "HealthMonitor", "ActorUnavailable", "ChildContext", "ChildSpec", "Directory",
           "EventLoopThread", "Executor", "Gateway",
           "IllegalTransition", "Journal", "LiteLLMGuard", "ProxyKeeper", "Router", "StateStore", "SupervisedActor",
           "Supervisor", "SystemMode", "TaskState",
           "TransitionFeed", "UnknownTask", "gateway_token", "read_gateway_url"]
