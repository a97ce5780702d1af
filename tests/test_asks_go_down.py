"""Asks go down the tree: an actor asks only actors started before it (actor_tree's order).

The real tree runs real traffic (tasks through the gateway, IM commands through the stub bridge, the model
route with a real LiteLLM proxy, memory through the MemOS stand-in); the Directory's ask path, which every
actor's asks take, records who asked whom, and the test fails on any ask of an actor started later (or of
oneself: an ask that can only wait).
"""
from __future__ import annotations

import asyncio
import io
import threading

from rich.console import Console

import actor_tree
from clients.gateway_client import GatewaySession
from vocabulary import ActorName

from .conftest import TOKEN, wait_until
from .test_im_commands import Chat, im_config


class Asks:
    """Every (asker, asked) pair seen by the Directory, from inside the tree (outside callers have no name)."""

    def __init__(self) -> None:
        self.pairs: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, asker: str | None, asked: str, message: object) -> None:
        if asker is not None:
            with self._lock:
                self.pairs.add((str(asker), str(asked)))


def gateway_traffic(url: str) -> list[dict]:
    async def run() -> list[dict]:
        async with GatewaySession(url, TOKEN) as gateway:
            submitted = [await gateway.call("submit_task", description=text) for text in
                         ("Summarise my unread mail", "用 Python 写一个函数", "refactor the login module")]
            done = [await gateway.call("get_task", task_id=task["task_id"], wait_s=30) for task in submitted]
            await gateway.call("system_status")
            await gateway.call("list_tasks", limit=5)
            slow = await gateway.call("submit_task", description="long report [sleep=30]")
            await gateway.call("cancel_task", task_id=slow["task_id"])
            for command in ("/status", "/tasks", "/mode", "/cost today", f"/why {done[0]['task_id']}", "/forget"):
                await gateway.call("command", text=command, sender="telegram:4242")
            return done
    return asyncio.run(run())


def test_no_actor_asks_one_started_after_it(start_tree, write_config, omni_home, models_world):
    asks = Asks()
    tree = start_tree(im_config(write_config, models=models_world, keep_memory=True), watchers=(asks,))
    order = [spec.name for spec in actor_tree.build_tree(tree.cfg, tree.journal, Console(file=io.StringIO()), TOKEN)]
    wait_until(lambda: tree.ask(ActorName.OPENCLAW_BRIDGE, _introspect())["link"] == "up", 30, "the bridge up")

    done = gateway_traffic(tree.url)
    assert {task["state"] for task in done} == {"completed"}
    chat = Chat(omni_home)
    for text in ("/status", "/tasks", "/mode", "/cost", "/help", "/forget"):
        assert chat.ask(text)
    assert "#" in chat.ask("remind me to water the plants")
    chat.news("completed")

    rank = {name: index for index, name in enumerate(order)}
    rank[ActorName.SUPERVISOR] = -1                         # the root, started before every child
    upward = sorted((asker, asked) for asker, asked in asks.pairs
                    if asker in rank and rank.get(asked, len(order)) >= rank[asker])
    assert upward == [], f"asks up the tree (asker, asked), against the order {order}"
    assert {(ActorName.ROUTER, ActorName.STATE_STORE), (ActorName.GATEWAY, ActorName.STATE_STORE),
            (ActorName.OPENCLAW_BRIDGE, ActorName.STATE_STORE), (ActorName.GATEWAY, ActorName.MEMORY),
            (ActorName.OPENCLAW_BRIDGE, ActorName.MEMORY)} <= asks.pairs   # the recording saw the traffic


def _introspect():
    from messages import Introspect
    return Introspect()
