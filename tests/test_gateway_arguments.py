"""The gateway's tool arguments are checked strictly, over real MCP (Streamable HTTP): every bad call is
refused naming the argument, what was expected and what came; nothing is coerced; the published schemas
say the same; long values are quoted only in part; answers stay small whatever was stored."""
from __future__ import annotations

import asyncio
import json
import math
import random

import httpx2
import pytest

from clients.gateway_client import GatewayError, GatewaySession
from messages import DESCRIPTION_LIMIT, MAX_TASK_ID

from .conftest import TOKEN

VALID = {   # one good call per tool, with no lasting effect but a task or two
    "get_task": {"task_id": 1, "wait_s": 0},
    "list_tasks": {"state": "completed", "limit": 5},
    "cost_report": {"period": "week"},
    "system_status": {},
    "submit_task": {"description": "fuzz chore", "kind": "general", "sender": "cli:fuzz", "tier": "P1", "wait_s": 0},
}
OPTIONAL_TASK_ID_TOOLS = ("get_task", "cancel_task")
WRONG_VALUES = [True, False, 1.5, 1e21, 2**63, -1, 0, "", "   ", "x" * 300_000, [1], {"a": 1}, "雲端", "12", 7]
REFUSAL_NOISE = ("Error executing tool", "validation error", "pydantic", "http", "ArgModel", "Traceback")


def run(coroutine):
    return asyncio.run(coroutine)


def mutate(rng: random.Random, tool: str, arguments: dict) -> tuple[dict, str]:
    """A bad variant of a good call, and the argument its refusal must name."""
    bad = dict(arguments)
    how = rng.choice(["unknown", "wrong"] if arguments else ["unknown"])
    if how == "unknown":
        name = rng.choice(["priority", "雲端", "taskId", "limit_", "x" * 500])
        bad[name] = rng.choice(WRONG_VALUES)
        return bad, name[:20]
    name = rng.choice(list(arguments))
    value = rng.choice([v for v in WRONG_VALUES if not _fits(tool, name, v)])
    bad[name] = value
    return bad, name


def _fits(tool: str, name: str, value) -> bool:
    """Would `value` be a good value for this argument (so not a mutation at all)?"""
    if name in ("task_id", "limit"):
        return type(value) is int and 1 <= value <= (MAX_TASK_ID if name == "task_id" else 500)
    if name == "wait_s":
        return type(value) in (int, float) and math.isfinite(value) and 0 <= value <= 300
    if name in ("description", "sender"):
        return isinstance(value, str) and value.strip() != "" and len(value) <= (DESCRIPTION_LIMIT if
                                                                                    name == "description" else 200)
    return False   # state, period, kind, tier: none of WRONG_VALUES is one of their options


def test_randomised_bad_calls_are_all_refused_naming_the_argument(start_tree, write_config):
    tree = start_tree(write_config())
    rng = random.Random(8)
    accepted_bad, unclear = [], []

    async def fuzz():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            await gateway.call("submit_task", description="the task get_task reads")
            for _ in range(600):
                tool = rng.choice(list(VALID))
                arguments, named = mutate(rng, tool, VALID[tool])
                try:
                    await gateway.call(tool, **arguments)
                    accepted_bad.append((tool, arguments))
                except GatewayError as refused:
                    text = str(refused)
                    if not (text.startswith(f"{tool}: ") and named in text and len(text) < 400
                            and not any(noise in text for noise in REFUSAL_NOISE)):
                        unclear.append(text)

    run(fuzz())
    assert accepted_bad == []
    assert unclear == []


REFUSALS = [
    ("get_task", {"task_id": True},
     "get_task: 'task_id': expected a whole number from 1 to 9223372036854775807, got true (a boolean)"),
    ("cancel_task", {"task_id": 2**63},
     "cancel_task: 'task_id': expected a whole number from 1 to 9223372036854775807, got 9223372036854775808 "
     "(a whole number)"),
    ("cancel_task", {"task_id": 1e21},
     "cancel_task: 'task_id': expected a whole number from 1 to 9223372036854775807, got 1e+21 (a number)"),
    ("submit_task", {"description": "x", "priority": -1},
     "submit_task: unknown argument 'priority' (the arguments are: description, kind, sender, tier, "
     "idempotency_key, wait_s)"),
    ("list_tasks", {"雲端": 1},
     "list_tasks: unknown argument '雲端' (the arguments are: state, limit)"),
    ("get_task", {}, "get_task: 'task_id' is required: a whole number from 1 to 9223372036854775807"),
    ("command", {"text": "/status", "sender": ""},
     "command: 'sender': expected non-empty text of at most 200 characters, got \"\" (text)"),
    ]


def test_each_refusal_says_once_what_was_wrong(start_tree, write_config):
    tree = start_tree(write_config())

    async def refusals():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            answers = []
            for tool, arguments, _ in REFUSALS:
                with pytest.raises(GatewayError) as refused:
                    await gateway.call(tool, **arguments)
                answers.append(str(refused.value))
            return answers

    assert run(refusals()) == [refusal for _, _, refusal in REFUSALS]


def test_a_huge_value_is_quoted_only_in_part_and_a_huge_description_is_refused(start_tree, write_config):
    tree = start_tree(write_config())

    async def call():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            with pytest.raises(GatewayError) as refused:
                await gateway.call("submit_task", description="長" * 1_000_000)
            return str(refused.value)

    text = run(call())
    assert text.startswith("submit_task: 'description': expected non-empty text of at most 20,000 characters, "
                           'got "長長長')
    assert text.endswith("… (text of 1,000,000 characters)") and len(text) < 200
    with tree.db() as db:
        assert db.execute("select count(*) from task").fetchone() == (0,)


def test_the_published_schemas_forbid_unknown_arguments_and_give_the_ranges(start_tree, write_config):
    tree = start_tree(write_config())

    async def schemas():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            return {tool.name: tool.input_schema for tool in (await gateway.session.list_tools()).tools}

    published = run(schemas())
    assert sorted(published) == sorted(["submit_task", "get_task", "list_tasks", "cancel_task", "system_status",
                                        "cost_report", "command"])
    assert all(schema["additionalProperties"] is False for schema in published.values())
    assert published["get_task"]["properties"]["task_id"] == {"type": "integer", "minimum": 1,
                                                              "maximum": MAX_TASK_ID}
    assert published["get_task"]["required"] == ["task_id"]
    description = published["submit_task"]["properties"]["description"]
    assert description == {"type": "string", "minLength": 1, "maxLength": DESCRIPTION_LIMIT}
    assert published["list_tasks"]["properties"]["limit"]["anyOf"][0] == {"type": "integer", "minimum": 1,
                                                                         "maximum": 500}


class RawClient:
    """Hand-written JSON-RPC over Streamable HTTP: it sends what an MCP client library never would."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx2.Client(timeout=10, headers={
            "Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json"})
        opened = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
        self.http.headers["mcp-session-id"] = opened.headers["mcp-session-id"]
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, message: dict) -> httpx2.Response:
        return self.http.post(self.url, content=json.dumps(message, allow_nan=True))   # Infinity stays Infinity

    def call(self, name: str, arguments) -> dict:
        answer = self.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                            "params": {"name": name, "arguments": arguments}})
        lines = [line.removeprefix("data:").strip() for line in answer.text.splitlines() if line.startswith("data:")]
        return json.loads(lines[-1] if lines else answer.text)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def raw(start_tree, write_config):
    client = RawClient(start_tree(write_config()).url)
    yield client
    client.close()


def test_arguments_that_are_not_an_object_and_non_finite_numbers_are_refused_saying_so(raw):
    error = raw.call("get_task", [1, 2])["error"]
    assert error["code"] == -32602
    assert error["message"] == ("tools/call get_task: 'arguments' must be an object of named arguments, "
                                "got [1, 2] (a list)")
    refused = [raw.call(tool, arguments)["result"] for tool, arguments in [
        ("list_tasks", {"雲端": math.inf}), ("get_task", {"task_id": 1, "wait_s": math.inf}),
        ("get_task", {"task_id": 1, "wait_s": math.nan})]]
    assert all(result["isError"] for result in refused)
    assert [result["content"][0]["text"] for result in refused] == [
        "list_tasks: unknown argument '雲端' (the arguments are: state, limit)",
        "get_task: 'wait_s': expected a number from 0 to 300, got Infinity (a number)",
        "get_task: 'wait_s': expected a number from 0 to 300, got NaN (a number)"]


def test_list_tasks_shows_the_start_of_long_texts_and_get_task_has_them_whole(start_tree, write_config):
    tree = start_tree(write_config())
    long_text = "整理本週的會議紀錄，" * 1500      # 15,000 characters: within the limit

    async def scenario():
        async with GatewaySession(tree.url, TOKEN) as gateway:
            ids = [(await gateway.call("submit_task", description=long_text))["task_id"] for _ in range(20)]
            listed = await gateway.call("list_tasks", limit=500)
            whole = await gateway.call("get_task", task_id=ids[0])
            return listed, whole

    listed, whole = run(scenario())
    assert len(listed["tasks"]) == 20 and all(task["truncated"] for task in listed["tasks"])
    assert all(len(task["description"]) == 300 and task["description"].endswith("…") for task in listed["tasks"])
    assert len(json.dumps(listed, ensure_ascii=False)) < 20 * 1_000
    assert whole["description"] == long_text and "truncated" not in whole
