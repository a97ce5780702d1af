"""Everything the orchestrator says to users, one module per locale; nothing user-facing is built inline.

>>> say("zh-Hant", "litellm_down", error="connection refused")
'模型路由 LiteLLM 故障（connection refused），已改用備用 Key 直連，並請 Claude Code 修復。'
"""
from __future__ import annotations

from . import en, zh_hans, zh_hant

LOCALES = {"en": en.TEXTS, "zh-Hant": zh_hant.TEXTS, "zh-Hans": zh_hans.TEXTS}


def say(locale: str, key: str, **params: object) -> str:
    texts = LOCALES.get(locale, en.TEXTS)
    return texts.get(key, en.TEXTS[key]).format(**params)
