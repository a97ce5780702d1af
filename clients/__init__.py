"""Clients of the systems around the core: MCP servers (`McpLink`; `BridgeLink` for the OpenClaw bridge), model
providers and the LiteLLM proxy (`call_direct`, `call_via_proxy`, `LivenessProbe`), the proxy's process
(`start_proxy` …), our own gateway (`GatewaySession`), the local model (`LocalModel`), and the spend caps paid
model calls reserve against (`Budget`), and the memory server's calls and outbox (`MemoryOutbox` …).

None of them is an actor: actors run them as coroutines on the shared loop (or, for the proxy's process and
the local model, on threads of their own) and get the outcomes back as messages.
"""
from .bridge_link import BridgeCallFailed, BridgeLink
from .budget import Budget, BudgetExceeded, PERIOD_STARTS, day_start, month_start
from .gateway_client import GatewayError, GatewaySession
from .git_worktrees import (GitFailed, add_worktree, base_head, check_repository, git, prune, remove_worktree,
                            save_changes)
from .litellm_proxy import (ProxyStartFailed, adopt_or_start_proxy, log_tail, proxy_paths, proxy_status,
                            restart_proxy, start_proxy, stop_proxy)
from .local_model import LocalModel, LocalModelUnavailable
from .mcp_link import CallOutcome, LinkFailed, LinkLost, McpLink, session_lost
from .memory import (MemoryOutbox, answer_error, context_block, fields_for, recalled_texts, render_memory_arguments,
                     user_id)
from .model_calls import (Answer, CallFailed, CallTimedOut, ProxyUnreachable, RateLimited, call_direct,
                          call_via_proxy, needs_litellm)
from .liveness import LivenessProbe

__all__ = ["Answer", "BridgeCallFailed", "BridgeLink", "Budget", "BudgetExceeded", "CallFailed",
           "CallOutcome", "CallTimedOut", "GatewayError", "GatewaySession", "LinkFailed", "LinkLost",
           "LocalModel", "LocalModelUnavailable", "McpLink", "PERIOD_STARTS", "ProxyStartFailed",
           "ProxyUnreachable", "RateLimited", "adopt_or_start_proxy", "call_direct", "call_via_proxy",
           "day_start", "log_tail", "month_start", "needs_litellm", "LivenessProbe", "proxy_paths",
           "proxy_status", "restart_proxy", "session_lost", "start_proxy", "stop_proxy",
           "MemoryOutbox", "answer_error", "context_block", "fields_for", "recalled_texts", "render_memory_arguments",
           "user_id",
           "GitFailed", "add_worktree", "base_head", "check_repository", "git", "prune", "remove_worktree",
           "save_changes"]
