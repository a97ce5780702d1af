"""The system's status, composed in one place for everyone who reports it: the gateway's `system_status`
tool, the IM `/status` command and the REPL's `mode()`.

    await system_status(ask, executors=("coder", "general"))
    # → {'mode': 'normal', 'route': 'proxy', 'cloud': 'up', 'actors': [...], 'executors': {'coder': {...}, ...},
    #    'tasks': {'completed': 3, ...}}
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from messages import CountTasksByState, GetMode, Introspect
from vocabulary import ActorName

Ask = Callable[..., Awaitable[Any]]          # ask(actor_name, message, timeout_s=…) → the answer
EXECUTOR_WAIT_S = 2.0                        # an executor busy restarting is reported down, not waited for


async def system_status(ask: Ask, executors: tuple[str, ...] = ()) -> dict[str, Any]:
    """Mode, model route and cloud (None where no model route is configured), the Supervisor's children, the
    executors' own snapshots (`{"link": "down: …"}` for one that does not answer), task counts by state."""
    actors, counts, mode = await asyncio.gather(ask(ActorName.SUPERVISOR, Introspect()),
                                                ask(ActorName.STATE_STORE, CountTasksByState()),
                                                ask(ActorName.SYSTEM_MODE, GetMode()))
    running = {actor["name"] for actor in actors}
    route = (await ask(ActorName.LITELLM_GUARD, Introspect()))["route"] if ActorName.LITELLM_GUARD in running \
        else None
    cloud = (await ask(ActorName.HEALTH_MONITOR, Introspect()))["cloud"] if ActorName.HEALTH_MONITOR in running \
        else None
    return {"mode": mode["mode"], "route": route, "cloud": cloud, "actors": actors,
            "executors": {name: await _executor(ask, name) for name in executors}, "tasks": counts}


def system_status_now(ask: Callable[..., Any], executors: tuple[str, ...] = ()) -> dict[str, Any]:
    """The same, for a caller on a thread of its own with a blocking `ask` (the REPL)."""
    async def threaded(name: str, message: Any, timeout_s: float = 10.0) -> Any:
        return await asyncio.to_thread(ask, name, message, timeout_s)
    return asyncio.run(system_status(threaded, executors))


async def _executor(ask: Ask, name: str) -> dict[str, Any]:
    try:
        return await ask(name, Introspect(), timeout_s=EXECUTOR_WAIT_S)
    except Exception as error:            # restarting, or gone: it says so
        return {"link": f"down: {error}"}
