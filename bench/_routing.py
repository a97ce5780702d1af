"""`python -m bench routing`: the local classifier on the held-out set (routing/data/test.jsonl): accuracy per
kind and per language, coding vs general, the confusion matrix, p50/p99 latency of a verdict; and the
model fallback's round trip, through the sandbox's simulated P1 provider (a real HTTP server on loopback).
Prints; asserts nothing."""
from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

from config import ConfigError, load_config
from config.loader import EMBEDDED_DEFAULT, resolve_config_path
from routing.classifier import KINDS, TEST, load_classifier, read_rows
from sandbox.providers import start_providers, stop_providers

from ._litellm_world import free_port

QUESTION = "Classify the user's task as exactly one of: coding, general, heavy, gpu. Answer with that one word."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def configured_threshold() -> tuple[float, str]:
    """routing.confidence_threshold of the config `make run` would read ($OMNI_HOME/config.yaml, else the
    embedded sandbox), and where it came from: the bench measures the threshold the Router uses."""
    path = resolve_config_path(None)
    try:
        return load_config(path).routing.confidence_threshold, str(path)
    except ConfigError as err:
        print(f"bench routing: {err}; using {EMBEDDED_DEFAULT}")
        return load_config(EMBEDDED_DEFAULT).routing.confidence_threshold, str(EMBEDDED_DEFAULT)


def run(quick: bool = False, keep: bool = False) -> int:
    rows = read_rows(TEST)
    threshold, source = configured_threshold()
    started = time.perf_counter()
    model = load_classifier()
    print(f"classifier: loaded in {(time.perf_counter() - started) * 1000:.0f} ms; held-out set: {len(rows)} texts")
    model.classify("warm up")
    timings, predicted, confident = [], [], []
    for row in rows:
        t0 = time.perf_counter()
        verdict = model.classify(row["text"])          # with its evidence, as the Router asks for it
        timings.append((time.perf_counter() - t0) * 1000)
        predicted.append(verdict.kind)
        confident.append(verdict.confidence >= threshold)
    print_accuracy(rows, predicted)
    print_confusion(rows, predicted)
    sure = [p == r["kind"] for p, r, c in zip(predicted, rows, confident, strict=False) if c]
    print(f"\nat routing.confidence_threshold {threshold:g} ({source}): {sum(confident)}/{len(rows)} decided locally, "
          f"{sum(sure) / max(1, len(sure)):.1%} "
          f"of those right; {len(rows) - sum(confident)} would ask the P1 model")
    print(f"\nlatency of a verdict with evidence (n={len(timings)}): p50 {statistics.median(timings):.2f} ms, "
          f"p99 {percentile(timings, 0.99):.2f} ms   target p50 <= 5 ms "
          f"{'met' if statistics.median(timings) <= 5 else 'NOT met'}")
    model_fallback(rows[::max(1, len(rows) // 20)] if quick else rows)   # quick: a spread over kinds and languages
    return 0


def print_accuracy(rows: list[dict], predicted: list[str]) -> None:
    cells: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row, kind in zip(rows, predicted, strict=False):
        cells[(row["kind"], row["lang"])].append(kind == row["kind"])
        cells[(row["kind"], "all")].append(kind == row["kind"])
        cells[("all", row["lang"])].append(kind == row["kind"])
        cells[("all", "all")].append(kind == row["kind"])
    langs = ("en", "zh-Hant", "zh-Hans", "all")
    print(f"\n{'accuracy':<10}" + "".join(f"{lang:>16}" for lang in langs))
    for kind in (*KINDS, "all"):
        print(f"{kind:<10}" + "".join(f"{_share(cells[(kind, lang)]):>16}" for lang in langs))
    pairs = [(r, p) for r, p in zip(rows, predicted, strict=False) if r["kind"] in ("coding", "general")]
    by_lang: dict[str, list[bool]] = defaultdict(list)
    for row, kind in pairs:
        right = (kind == "coding") == (row["kind"] == "coding")
        by_lang[row["lang"]].append(right)
        by_lang["all"].append(right)
    print("coding vs general: " + ", ".join(f"{lang} {_share(by_lang[lang])}" for lang in langs)
          + "   (targets: >= 95 % coding vs general; >= 90 % each kind in every language)")


def print_confusion(rows: list[dict], predicted: list[str]) -> None:
    counts = Counter((row["kind"], kind) for row, kind in zip(rows, predicted, strict=False))
    print(f"\nconfusion (rows: labelled, columns: predicted)\n{'':<10}" + "".join(f"{k:>9}" for k in KINDS))
    for truth in KINDS:
        print(f"{truth:<10}" + "".join(f"{counts[(truth, kind)]:>9}" for kind in KINDS))


def model_fallback(rows: list[dict]) -> None:
    """The P1 round trip the Router makes below the threshold: the simulated provider's chat completions."""
    port, admin_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as home:
        process, _ = start_providers({"free": port}, admin_port, Path(home) / "providers.json")
        try:
            timings, right = [], 0
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=30) as client:
                for row in rows:
                    t0 = time.perf_counter()
                    answer = client.post("/chat/completions", json={"model": "free-tier", "max_tokens": 8, "messages": [
                        {"role": "system", "content": QUESTION}, {"role": "user", "content": row["text"]}]}).json()
                    timings.append((time.perf_counter() - t0) * 1000)
                    right += answer["choices"][0]["message"]["content"].strip() == row["kind"]
        finally:
            stop_providers(process)
    print(f"model fallback through the simulated P1 provider (n={len(timings)}): "
          f"p50 {statistics.median(timings):.2f} ms, "
          f"p99 {percentile(timings, 0.99):.2f} ms; its keyword guess is right on {right / len(rows):.1%} "
          "(a real P1 model is seconds away, and absent in cooldowns and brainstem mode)")


def _share(values: list[bool]) -> str:
    return f"{sum(values) / len(values):.1%} ({sum(values)}/{len(values)})" if values else "-"
