"""The gateway tools' arguments: one table that is both the JSON schema we publish and the check we run.

The SDK's own argument model is lenient (extra arguments ignored, `true` taken for 1, pydantic's text and
links in refusals), so every call is checked here first, strictly. A refusal names the argument, what was
expected and what came, and quotes a bad value only in part:

>>> spec = {"task_id": Integer(1, MAX_ID, required=True)}
>>> problem_with(spec, {"task_id": True})
"'task_id': expected a whole number from 1 to 9223372036854775807, got true (a boolean)"
>>> problem_with(spec, {"task_id": 3, "priority": -1})
"unknown argument 'priority' (the arguments are: task_id)"
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from messages import MAX_TASK_ID as MAX_ID  # noqa: F401 (the module docstring's example uses it)

PREVIEW_CHARS = 40                     # of a bad value quoted back


@dataclass(frozen=True, slots=True)
class Text:
    max_chars: int
    required: bool = False
    blank_ok: bool = False

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 0 if self.blank_ok else 1, "maxLength": self.max_chars}

    def expected(self) -> str:
        return f"{'text' if self.blank_ok else 'non-empty text'} of at most {self.max_chars:,} characters"

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, str) and len(value) <= self.max_chars
                and (self.blank_ok or value.strip() != ""))


@dataclass(frozen=True, slots=True)
class Choice:
    options: tuple[str, ...]
    required: bool = False

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.options)}

    def expected(self) -> str:
        return "one of " + ", ".join(self.options)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.options


@dataclass(frozen=True, slots=True)
class Integer:
    minimum: int
    maximum: int
    required: bool = False

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}

    def expected(self) -> str:
        return f"a whole number from {self.minimum} to {self.maximum}"

    def accepts(self, value: Any) -> bool:
        return type(value) is int and self.minimum <= value <= self.maximum


@dataclass(frozen=True, slots=True)
class Number:
    minimum: float
    maximum: float
    required: bool = False

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum}

    def expected(self) -> str:
        return f"a number from {self.minimum:g} to {self.maximum:g}"

    def accepts(self, value: Any) -> bool:
        return (type(value) in (int, float) and math.isfinite(value)
                and self.minimum <= value <= self.maximum)


Spec = Mapping[str, Text | Choice | Integer | Number]


def schema_of(spec: Spec) -> dict[str, Any]:
    """The published inputSchema: exactly what `problem_with` accepts (optional arguments may be null)."""
    properties = {name: kind.schema() if kind.required else {"anyOf": [kind.schema(), {"type": "null"}]}
                  for name, kind in spec.items()}
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": [name for name, kind in spec.items() if kind.required]}


def problem_with(spec: Spec, arguments: Mapping[str, Any]) -> str | None:
    """What is wrong with `arguments`, in one sentence; None when nothing is."""
    for name in arguments:
        if name not in spec:
            known = ", ".join(spec) or "none"
            return f"unknown argument {_preview(name)!s} (the arguments are: {known})"
    for name, kind in spec.items():
        value = arguments.get(name)
        if value is None:
            if kind.required:
                return f"'{name}' is required: {kind.expected()}"
        elif not kind.accepts(value):
            return f"'{name}': expected {kind.expected()}, got {describe(value)}"
    return None


def describe(value: Any) -> str:
    """A value as a refusal quotes it: its start, and what it is.

    >>> describe("x" * 100_000)
    '"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx… (text of 100,000 characters)'
    """
    if isinstance(value, str):
        return f"{_preview(value, quote=True)} (text of {len(value):,} characters)" if len(value) > PREVIEW_CHARS \
            else f"{_preview(value, quote=True)} (text)"
    what = {bool: "a boolean", int: "a whole number", float: "a number", list: "a list", dict: "an object"}
    return f"{_preview(value)} ({what.get(type(value), type(value).__name__)})"


def _preview(value: Any, quote: bool = False) -> str:
    if isinstance(value, str) and not quote:
        text = "'" + value.replace("'", "\\'") + "'"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


class CheckedTool(Tool):
    """A tool whose arguments are checked against its spec before the SDK sees them, and whose refusals
    read `tool: what was wrong` once (the SDK would say `Error executing tool X: X: …`)."""

    spec: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @classmethod
    def of(cls, fn: Any, spec: Spec) -> CheckedTool:
        tool = cls.from_function(fn)
        tool.spec, tool.parameters = dict(spec), schema_of(spec)
        return tool

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        if problem := problem_with(self.spec, arguments):
            raise ToolError(f"{self.name}: {problem}")
        try:
            return await super().run(arguments, context, convert_result)
        except UnexpectedToolError:
            raise
        except ToolError as refused:
            if isinstance(refused.__cause__, ToolError):
                raise ToolError(f"{self.name}: {refused.__cause__}") from None
            raise


async def require_object_arguments(ctx: Any, call_next: Any) -> Any:
    """Server middleware: a `tools/call` whose `arguments` is not an object is refused saying so (the SDK
    answers only "Invalid request parameters")."""
    params = ctx.params if isinstance(ctx.params, Mapping) else {}
    if ctx.method == "tools/call":
        if not isinstance(params.get("name"), str):
            raise MCPError(code=INVALID_PARAMS, message="tools/call: 'name' must be the tool's name as text, got "
                           + describe(params.get("name")))
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, Mapping):
            raise MCPError(code=INVALID_PARAMS, message=f"tools/call {params['name'][:PREVIEW_CHARS]}: 'arguments' "
                           f"must be an object of named arguments, got {describe(arguments)}")
    return await call_next(ctx)
