"""One model call, over one route: through the LiteLLM proxy (HTTP) or directly with a backup key. Only the
LiteLLMGuard uses these; it decides the route and the tier.

Directly, a provider that speaks OpenAI's chat completions (`openai/…`, `openrouter/…` model ids: every
shipped config) is called with plain HTTP, like the proxy: ready the moment the proxy dies, and without the
`litellm` library in memory (~150 MB, ~1.7 s to import). Any other provider goes through `litellm`, which
the guard then imports in the background at start. The cost is ours either way (`price`, from config).

Errors are sorted into what the guard acts on: the proxy is unreachable (count it, retry direct),
the tier is rate-limited (cool it down, try the next), the call timed out, or anything else.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import httpx2

from config import TierConfig

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")   # never fetch the price map at import


class ProxyUnreachable(RuntimeError):
    """No answer from the proxy process itself (refused, reset): the guard counts these as failed probes."""


class RateLimited(RuntimeError):
    def __init__(self, detail: str, retry_after_s: float, all_in_cooldown: bool = False):
        super().__init__(detail)
        self.retry_after_s, self.all_in_cooldown = retry_after_s, all_in_cooldown


class CallTimedOut(RuntimeError):
    pass


class CallFailed(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    model: str
    tokens_in: int
    tokens_out: int
    usd: float


DEFAULT_RETRY_AFTER_S = 30.0


async def call_via_proxy(client: httpx2.AsyncClient, url: str, key: str, tier: TierConfig,
                         messages: Sequence[Mapping[str, str]], max_tokens: int, timeout_s: float) -> Answer:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": tier.proxy_model, "messages": list(messages), "max_tokens": max_tokens}
    try:
        response = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=timeout_s)
    except httpx2.TimeoutException as timeout:
        raise CallTimedOut(f"no answer through the proxy within {timeout_s:g}s") from timeout
    except httpx2.TransportError as error:
        raise ProxyUnreachable(f"{type(error).__name__}: {error}") from None
    if response.status_code == 429:
        # The proxy relays the provider's wait as llm_provider-retry-after; its own cooldowns say retry-after.
        wait = response.headers.get("retry-after") or response.headers.get("llm_provider-retry-after")
        raise RateLimited(f"{tier.name} rate-limited: {_error_message(response)}", _retry_after(wait),
                          "all_deployments_in_cooldown" in response.text or "cooldown" in response.text.lower())
    if response.status_code >= 400:
        raise CallFailed(f"the proxy answered {response.status_code}: {_error_message(response)}")
    data = response.json()
    usage = data.get("usage") or {}
    cost = response.headers.get("x-litellm-response-cost")
    tokens_in, tokens_out = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return Answer(text=data["choices"][0]["message"].get("content") or "", model=tier.proxy_model,
                  tokens_in=tokens_in, tokens_out=tokens_out,
                  usd=float(cost) if cost not in (None, "", "None") else price(tier, tokens_in, tokens_out))


OPENAI_COMPATIBLE = ("openai/", "openrouter/")   # litellm's prefixes for providers with OpenAI's API


def needs_litellm(tier: TierConfig) -> bool:
    """Whether this tier's direct calls go through the `litellm` library (a provider with its own API)."""
    return not tier.direct_model.startswith(OPENAI_COMPATIBLE)


async def call_direct(client: httpx2.AsyncClient, tier: TierConfig, messages: Sequence[Mapping[str, str]],
                      max_tokens: int, timeout_s: float) -> Answer:
    if needs_litellm(tier):
        return await _call_direct_with_litellm(tier, messages, max_tokens, timeout_s)
    headers = {"Authorization": f"Bearer {tier.backup_key}"} if tier.backup_key else {}
    body = {"model": tier.direct_model.split("/", 1)[1], "messages": list(messages), "max_tokens": max_tokens}
    try:
        response = await client.post(f"{tier.direct_api_base}/chat/completions", json=body, headers=headers,
                                     timeout=timeout_s)
    except httpx2.TimeoutException:
        raise CallTimedOut(f"no answer from {tier.direct_api_base} within {timeout_s:g}s") from None
    except httpx2.TransportError as error:
        raise CallFailed(f"direct call failed: {type(error).__name__}: {error}") from None
    if response.status_code == 429:
        raise RateLimited(f"{tier.name} rate-limited (direct)", _retry_after(response.headers.get("retry-after")))
    if response.status_code >= 400:
        raise CallFailed(f"direct call failed: HTTP {response.status_code}: {_error_message(response)}")
    data = response.json()
    usage = data.get("usage") or {}
    tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return Answer(text=data["choices"][0]["message"].get("content") or "", model=tier.direct_model,
                  tokens_in=tokens_in, tokens_out=tokens_out, usd=price(tier, tokens_in, tokens_out))


async def _call_direct_with_litellm(tier: TierConfig, messages: Sequence[Mapping[str, str]], max_tokens: int,
                                    timeout_s: float) -> Answer:
    import litellm   # ~1.7 s to import: the guard warms it in the background at start when a tier needs it

    try:
        response = await litellm.acompletion(model=tier.direct_model, api_base=tier.direct_api_base,
                                             api_key=tier.backup_key, messages=list(messages), max_tokens=max_tokens,
                                             timeout=timeout_s, num_retries=0)
    except litellm.RateLimitError as limited:
        headers = getattr(getattr(limited, "response", None), "headers", {}) or {}
        raise RateLimited(f"{tier.name} rate-limited (direct)", _retry_after(headers.get("retry-after"))) from None
    except litellm.Timeout:
        raise CallTimedOut(f"no answer from {tier.direct_api_base} within {timeout_s:g}s") from None
    except Exception as error:   # litellm wraps every provider error; keep only its class and message
        raise CallFailed(f"direct call failed: {type(error).__name__}: {error}") from None
    usage = response.usage
    tokens_in, tokens_out = int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
    return Answer(text=response.choices[0].message.content or "", model=tier.direct_model, tokens_in=tokens_in,
                  tokens_out=tokens_out, usd=price(tier, tokens_in, tokens_out))


def price(tier: TierConfig, tokens_in: int, tokens_out: int) -> float:
    return (tokens_in * tier.input_usd_per_mtok + tokens_out * tier.output_usd_per_mtok) / 1_000_000


def _retry_after(value: Any) -> float:
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S


def _error_message(response: httpx2.Response) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    except ValueError:
        return response.text[:300]
