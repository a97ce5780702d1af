"""The words the whole system shares, each defined once: actor names, task states, system modes, model tiers,
and who hears what. Everyone imports them from here; none is spelled out anywhere else.

>>> ActorName.STATE_STORE == "state_store"      # a str: Directory names, log fields and JSON stay plain text
True
>>> sorted(map(str, TERMINAL_STATES))
['cancelled', 'completed', 'failed']
"""
from __future__ import annotations

from enum import StrEnum


class ActorName(StrEnum):
    """The registered name of each singleton actor: its module's name in `actors/` (executors are named by
    the config, one per `executors:` entry; the sandbox's actors by what they stand in for)."""

    SUPERVISOR = "supervisor"                # the root (runtime.supervisor), registered by whoever starts it
    STATE_STORE = "state_store"
    WORKSPACE_KEEPER = "workspace_keeper"    # coding tasks' git worktrees (config `workspaces:`)
    SANDBOX_PROVIDERS = "sandbox_providers"  # sandbox.world.SandboxProviders
    SANDBOX_OPENCLAW = "sandbox_openclaw"    # sandbox.world.SandboxOpenClaw
    PROXY_KEEPER = "proxy_keeper"
    BUDGET_WARDEN = "budget_warden"
    LITELLM_GUARD = "litellm_guard"
    SYSTEM_MODE = "system_mode"
    BRAINSTEM = "brainstem"
    HEALTH_MONITOR = "health_monitor"
    MEMORY = "memory"
    ROUTER = "router"
    GATEWAY = "gateway"
    TRANSITION_FEED = "transition_feed"
    OPENCLAW_BRIDGE = "openclaw_bridge"
    DEMO = "demo"                            # sandbox.demo_traffic.DemoTraffic


class TaskState(StrEnum):
    IDLE = "idle"                  # created (or put back), waiting to be dispatched
    DISPATCHING = "dispatching"    # executor and tier chosen, handed to the executor
    EXECUTING = "executing"        # the executor's MCP tool call is running
    WAITING = "waiting"            # WAITING_FOR_CLOUD: suspended in brainstem mode
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})


class Mode(StrEnum):
    """The system's mode (SystemMode owns it): the cloud is down → brainstem; else the proxy is down →
    degraded (direct model calls); else normal."""

    NORMAL = "normal"
    DEGRADED = "degraded"
    BRAINSTEM = "brainstem"


class Tier(StrEnum):
    """The model tiers: P1 free or cheap, P2 paid (budget permitting)."""

    P1 = "P1"
    P2 = "P2"


TIERS = (Tier.P1, Tier.P2)

# Who hears what, besides whom a message names: task changes (TaskChanged, from the StateStore) in the states
# each subscriber acts on (a tell costs a thread wake-up, and a task makes four changes), every mode change
# (ModeChanged, from SystemMode), every notice for the user (Notice, from SystemMode).
EVERY_STATE = frozenset(TaskState)
TASK_SUBSCRIBERS: dict[str, frozenset[TaskState]] = {
    ActorName.ROUTER: frozenset({TaskState.IDLE}),                            # to dispatch it
    ActorName.GATEWAY: TERMINAL_STATES | {TaskState.IDLE},                    # its waiters (idle again: /retry)
    ActorName.TRANSITION_FEED: EVERY_STATE,                                   # the console shows every move
    ActorName.SYSTEM_MODE: TERMINAL_STATES,                                   # the repair task's end
    ActorName.OPENCLAW_BRIDGE: TERMINAL_STATES,                               # the sender's news
    ActorName.MEMORY: frozenset({TaskState.COMPLETED}),                       # the exchange to remember
    ActorName.WORKSPACE_KEEPER: TERMINAL_STATES,                              # the worktree kept
}
# The task's own executor, besides: a move out of its hands (cancelled, suspended, routed again, failed).
EXECUTOR_HEARS = EVERY_STATE - {TaskState.DISPATCHING, TaskState.EXECUTING, TaskState.COMPLETED}
MODE_LISTENERS = (ActorName.ROUTER, ActorName.BRAINSTEM, ActorName.HEALTH_MONITOR, ActorName.GATEWAY,
                  ActorName.TRANSITION_FEED)
NOTICE_LISTENERS = (ActorName.TRANSITION_FEED, ActorName.OPENCLAW_BRIDGE)
