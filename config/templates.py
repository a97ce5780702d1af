"""Filling an argument template from config: every string's `{field}`s, through nested mappings and lists.

>>> fill_template({"prompt": "{description}", "opts": ["-C", "{home}"]}, {"description": "fix it", "home": "/h"})
{'prompt': 'fix it', 'opts': ['-C', '/h']}
>>> fill_template({"messages": "{messages}"}, {"messages": "[…]"}, whole={"{messages}": [{"role": "user"}]})
{'messages': [{'role': 'user'}]}
"""
from __future__ import annotations

from typing import Any, Mapping


def fill_template(template: Any, fields: Mapping[str, Any], whole: Mapping[str, Any] | None = None) -> Any:
    """`template` with `fields` filled in; a string that is exactly a key of `whole` becomes its value (a list,
    say, where format would give its text). The loader has checked the field names (config/loader.py)."""
    whole = whole or {}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return whole[value] if value in whole else value.format_map(fields)
        if isinstance(value, Mapping):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value
    return fill(template)
