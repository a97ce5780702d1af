"""Secrets never shown: the one rule for what looks like a secret, by name and by shape, and the one way to
hide it. Used wherever text from outside or about secrets may reach a user, a log or an error: the proxy's
log tail (repair prompts), the guard's refusals, the REPL's answers, the config loader's errors.

>>> redact_text('auth: Bearer abc.def key=sk-test-123456789 id 0123456789abcdef0123456789abcdef')
'auth: Bearer *** key=sk-*** id ***'
>>> is_secret_name("OPENAI_API_KEY"), is_secret_name("apiKey"), is_secret_name("tokens_in")
(True, True, False)
>>> redact({"api_key": "x", "note": "Bearer abc"})
{'api_key': '***', 'note': 'Bearer ***'}
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

HIDDEN = "***"
SECRET_WORDS = frozenset({"key", "keys", "apikey", "token", "secret", "secrets", "password", "passwd", "authorization",
                          "credential", "credentials", "bearer", "cookie", "cookies"})
_SECRET_ENDINGS = ("apikey", "token", "secret", "password", "passwd")   # accesstoken, clientsecret …

# Shapes of keys a provider issues, as the config loader refuses them as literals.
KEY_SHAPES = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}|\b(?:ghp|gho|ghs|ghu|ghr|github_pat|glpat|xox[abpr])"
                        r"[-_][A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}|\bAIza[0-9A-Za-z_-]{30,}|[A-Za-z0-9]{32,}")
_IN_TEXT = [
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{4,}"), r"\1-***"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',]+"), r"\1 ***"),
    (re.compile(r"(?i)\b(api[_-]?key|token|secret|password|authorization)([\"']?\s*[:=]\s*[\"']?)"
                r"(?!bearer\s)[^\s\"',}]+"), r"\1\2***"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+(\.[\w-]+)?"), HIDDEN),   # JWTs
]
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_+\-]{32,}={0,2}")   # hex ids, base64 keys (no '/': paths stay readable)


def is_secret_name(name: str) -> bool:
    """`api_key`, `OPENAI_API_KEY`, `x-api-key`, `apiKey`, `gateway_token`, `Authorization` are; `tokens_in` is not."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
    return any(word in SECRET_WORDS or word.endswith(_SECRET_ENDINGS) or word.startswith("passw") for word in words)


def looks_like_key(text: str) -> bool:
    """Text that holds something shaped like an issued key (`sk-…`, `ghp_…`, `AKIA…`, 32 random characters)."""
    return any(_key_shaped(match.group()) for match in KEY_SHAPES.finditer(text))


def hide_keys(text: str, shown_as: str = HIDDEN) -> str:
    """`text` with everything shaped like an issued key replaced by `shown_as`."""
    return KEY_SHAPES.sub(lambda m: shown_as if _key_shaped(m.group()) else m.group(), text)


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """`text` with the `known` secrets, API keys, bearer tokens and long random-looking tokens replaced by ***."""
    for secret in known:
        if secret:
            text = text.replace(secret, HIDDEN)
    for pattern, replacement in _IN_TEXT:
        text = pattern.sub(replacement, text)
    return _LONG_TOKEN.sub(lambda m: HIDDEN if _random_looking(m.group()) else m.group(), text)


def redact(value: Any) -> Any:
    """A copy of `value` where every value under a secret-looking name, and every secret in a text, is ***."""
    if isinstance(value, Mapping):
        return {k: HIDDEN if is_secret_name(str(k)) else redact(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f.name for f in dataclasses.fields(value) if f.init]
        return dataclasses.replace(value, **{name: HIDDEN if is_secret_name(name) else redact(getattr(value, name))
                                             for name in fields})
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, (tuple, set, frozenset)):
        return tuple(redact(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def _key_shaped(token: str) -> bool:
    return not (token.isalpha() or token.isdigit())   # a long word or a long number is no key


def _random_looking(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)
