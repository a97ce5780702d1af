"""`/forget`: delete what memory holds for the sender (through the Memory actor and the MemOS server's
configured forget tool), and drop their exchanges still waiting to be added.

    await forget(interpreter, "", "telegram:4242")   # 'Forgotten: memory holds nothing of yours any more.'
"""
from __future__ import annotations

import asyncio
from typing import Any

from messages import ForgetSender, Introspect
from vocabulary import ActorName

FORGET_WAIT_S = 30.0     # past this the delete still happens (it is queued); the reply says so


async def forget(interpreter: Any, argument: str, sender: str) -> str:
    """`interpreter`: the CommandInterpreter (its ask and its locale's texts)."""
    children = await interpreter._ask(ActorName.SUPERVISOR, Introspect())
    if ActorName.MEMORY not in {child["name"] for child in children}:
        return interpreter._say("im_forget_no_memory")
    answer = await interpreter._ask(ActorName.MEMORY, ForgetSender(sender))
    try:
        outcome = await asyncio.wait_for(asyncio.wrap_future(answer), FORGET_WAIT_S)
    except TimeoutError:
        outcome = "queued"
    return interpreter._say(f"im_forget_{outcome}")
