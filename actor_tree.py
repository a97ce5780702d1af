"""The actor tree: which children the root Supervisor starts, in which order, from a config.

Order is the contract: an actor may *ask* only actors started before it (they are up when it starts, and
an ask up the tree could wait on an actor that is itself waiting on us); an answer it needs from a later
actor comes back as a message. `tests/test_asks_go_down.py` holds every ask of a running tree to it.

    specs = build_tree(cfg, journal, console, token)
    tree = Supervisor.start(specs, cfg.supervision, loop, directory)
"""
from __future__ import annotations

from rich.console import Console

from actors import (Brainstem, BudgetWarden, Executor, Gateway, HealthMonitor, LiteLLMGuard, ProxyKeeper, Router,
                    StateStore, SystemMode, TransitionFeed)
from config import Config
from dashboard import dashboard_source
from runtime import ChildSpec, Journal
from vocabulary import TASK_SUBSCRIBERS, ActorName as A


def build_tree(cfg: Config, journal: Journal, console: Console, token: str) -> list[ChildSpec]:
    """The children, in start order: the store first (everyone asks it), then the model route, the
    executors, the router, and the gateway (new work) last."""
    models = cfg.litellm is not None
    specs = [ChildSpec(A.STATE_STORE, lambda ctx: StateStore.start(ctx, cfg.database_path, cfg.tasks.max_attempts,
                                                                   journal, TASK_SUBSCRIBERS))]
    if cfg.workspaces is not None:   # before the executors, which claim their tasks' worktrees of it
        from actors.workspace_keeper import WorkspaceKeeper
        specs.append(ChildSpec(A.WORKSPACE_KEEPER, lambda ctx: WorkspaceKeeper.start(ctx, cfg.workspaces, cfg.home,
                                                                                     journal)))
    if cfg.providers is not None:
        from sandbox.world import SandboxProviders
        specs.append(ChildSpec(A.SANDBOX_PROVIDERS, lambda ctx: SandboxProviders.start(ctx, cfg.providers, cfg.home,
                                                                                       cfg.brainstem.model_path)))
    if cfg.sandbox_openclaw is not None:
        from sandbox.world import SandboxOpenClaw
        specs.append(ChildSpec(A.SANDBOX_OPENCLAW, lambda ctx: SandboxOpenClaw.start(ctx, cfg.sandbox_openclaw,
                                                                                     cfg.home)))
    if models and cfg.litellm.mode == "managed":
        specs.append(ChildSpec(A.PROXY_KEEPER, lambda ctx: ProxyKeeper.start(ctx, cfg.litellm, cfg.home, journal)))
    if models:   # before the guard, which tells it of every paid call
        specs.append(ChildSpec(A.BUDGET_WARDEN, lambda ctx: BudgetWarden.start(ctx, cfg.budget, cfg.locale)))
        route_users = tuple(name for name, spec in cfg.executors.items() if spec.model_route)
        specs.append(ChildSpec(A.LITELLM_GUARD, lambda ctx: LiteLLMGuard.start(ctx, cfg.litellm, cfg.budget, journal,
                                                                               cfg.locale, route_users)))
    specs += [
        ChildSpec(A.SYSTEM_MODE, lambda ctx: SystemMode.start(ctx, cfg.repair, cfg.litellm, cfg.locale, journal,
                                                              cfg.home)),
        ChildSpec(A.BRAINSTEM, lambda ctx: Brainstem.start(ctx, cfg.brainstem, cfg.locale, journal)),
    ]
    if models:
        specs.append(ChildSpec(A.HEALTH_MONITOR, lambda ctx: HealthMonitor.start(ctx, cfg.health, journal)))
    if cfg.memory is not None:   # before the executors, which tell it, and the command routes, which ask it
        from actors.memory import Memory
        specs.append(ChildSpec(A.MEMORY, lambda ctx: Memory.start(ctx, cfg.memory, cfg.home, journal)))
    tier_models = {name: tier.proxy_model for name, tier in cfg.litellm.tiers.items()} if models else {}
    coding = cfg.workspaces.executors if cfg.workspaces is not None else ()
    specs += [ChildSpec(name, lambda ctx, spec=spec: Executor.start(ctx, spec, cfg.tasks.max_attempts, journal,
                                                                     cfg.home, tier_models, cfg.memory,
                                                                     spec.name in coding))
              for name, spec in cfg.executors.items()]
    specs += [
        ChildSpec(A.ROUTER, lambda ctx: Router.start(ctx, cfg.routing, cfg.tasks.reconcile_interval_s, models)),
        ChildSpec(A.GATEWAY, lambda ctx: Gateway.start(ctx, cfg.gateway, token,
                                                       tuple(rule.kind for rule in cfg.routing.rules),
                                                       tuple(cfg.executors), cfg.home, models, cfg.im,
                                                       dashboard_source(cfg))),
        ChildSpec(A.TRANSITION_FEED, lambda ctx: TransitionFeed.start(ctx, console)),
    ]
    if cfg.im.openclaw is not None:      # IM commands through OpenClaw's MCP bridge
        from actors.openclaw_bridge import OpenClawBridge
        specs.append(ChildSpec(A.OPENCLAW_BRIDGE, lambda ctx: OpenClawBridge.start(
            ctx, cfg.im, tuple(cfg.executors), models, journal, cfg.home)))
    if cfg.demo is not None:
        from sandbox.demo_traffic import DemoTraffic
        specs.append(ChildSpec(A.DEMO, lambda ctx: DemoTraffic.start(ctx, cfg.demo, token), restart="transient"))
    return specs
