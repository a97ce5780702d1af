"""Mutated configs derived from the sandbox's: the loader answers each with a config or a one-line
ConfigError, and no message ever shows a value that came from the environment (or a literal key).

Deterministic: a fixed seed and a bounded count; the figures are in the assertion messages.
"""
from __future__ import annotations

import copy
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import EMBEDDED_DEFAULT, ConfigError, load_config

SEED, COUNT = 8, 300
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)   # libyaml's: the pure-Python one was a third of the time
SECRET_VARS = ("OMNI_SANDBOX_FREE_KEY", "OMNI_SANDBOX_PAID_KEY", "OMNI_BACKUP_CLIPROXY_KEY",
               "OMNI_BACKUP_OPENROUTER_KEY", "OMNI_FUZZ_TOKEN")
LITERAL_KEY = "sk-fuzzliteral-4f9c2a7b1e6d8035c4b9"
BAD_VALUES: tuple[Any, ...] = (
    "", " ", "0.0.0.0", "relative/path", "(unclosed", "[z-a]", "{descripton}", "{", "}", "${OMNI_FUZZ_UNSET}",
    "~nosuchuser-fz/x", -1, 0, 1.5, 10**30, 10**400, float("inf"), float("nan"), True, None, [], {}, ["a", 1],
    {"x": 1}, "2001-13-45", LITERAL_KEY, "telegram", ":x", "P3", "x" * 500,
)


@dataclass
class Tally:
    accepted: int = 0
    refused: int = 0
    tracebacks: list[str] = field(default_factory=list)
    echoed: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)   # not one line, or not `file: …`


def leaves_and_branches(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    found = [(path, value)]
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaves_and_branches(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += leaves_and_branches(item, path + (i,))
    return found


def put(raw: Any, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        raw = raw[step]
    raw[path[-1]] = value


def mutate_structure(rng: random.Random, raw: dict) -> dict:
    for _ in range(rng.randint(1, 3)):
        spots = [(p, v) for p, v in leaves_and_branches(raw) if p]
        path, value = rng.choice(spots)
        move = rng.choice(("reference", "reference", "reference", "bad", "bad", "drop", "unknown", "scalar"))
        if move == "reference":
            name = rng.choice(SECRET_VARS)
            put(raw, path, rng.choice(("${%s}", "x${%s}", "${%s}/v1", "(${%s}", "[${%s}", "{${%s}}", "/${%s}",
                                       "telegram:${%s}")) % name)
        elif move == "bad":
            put(raw, path, rng.choice(BAD_VALUES))
        elif move == "drop":
            parent = raw
            for step in path[:-1]:
                parent = parent[step]
            del parent[path[-1]]
        elif move == "unknown" and isinstance(value, dict):
            value[rng.choice(("tyop", "max_restart", "backof_max_s", "hots"))] = rng.choice(BAD_VALUES[:8])
        elif isinstance(value, (dict, list)):
            put(raw, path, rng.choice(("x", 1, None, ["x"], "${%s}" % rng.choice(SECRET_VARS))))
    return raw


def mutate_text(rng: random.Random, text: bytes) -> bytes:
    at = rng.randrange(len(text) + 1)
    lines = text.split(b"\n")
    line = rng.randrange(len(lines))
    match rng.choice(("latin1", "tab", "truncate", "duplicate", "garbage", "empty", "top-level")):
        case "latin1":
            return text[:at] + b"# caf\xe9\n" + text[at:]
        case "tab":
            return b"\n".join(lines[:line] + [b"\t" + lines[line]] + lines[line + 1:])
        case "truncate":
            return text[:at]
        case "duplicate":
            return b"\n".join(lines[:line + 1] + [lines[line]] + lines[line + 1:])
        case "garbage":
            return text[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))) + text[at:]
        case "empty":
            return b""
        case _:
            return rng.choice((b"- a\n- b\n", b"just a scalar\n", b"42\n", b"~\n"))


def fuzz(tmp_path: Path, count: int = COUNT, seed: int = SEED) -> Tally:
    rng = random.Random(seed)
    base = yaml.safe_load(EMBEDDED_DEFAULT.read_text(encoding="utf-8"))
    secrets = [os.environ[name] for name in SECRET_VARS]
    tally = Tally()
    for n in range(count):
        raw = mutate_structure(rng, copy.deepcopy(base))
        text = yaml.dump(raw, Dumper=DUMPER, allow_unicode=True).encode("utf-8")
        if rng.random() < 0.3:
            text = mutate_text(rng, text)
        path = tmp_path / f"fuzz-{n}.yaml"
        path.write_bytes(text)
        path.chmod(0o600 if rng.random() < 0.2 else 0o644)
        try:
            load_config(path)
            tally.accepted += 1
        except ConfigError as error:
            tally.refused += 1
            message = str(error)
            if any(secret in message for secret in secrets) or LITERAL_KEY in message:
                tally.echoed.append(message)
            if "\n" in message or not message.startswith(f"{path}: "):
                tally.unclear.append(message)
        except Exception as error:  # what a user would see as a traceback
            tally.tracebacks.append(f"{path.name}: {type(error).__name__}: {error}"[:300])
    return tally


@pytest.mark.slow   # thousands of configs: seconds by design
def test_mutated_configs_get_a_config_or_a_one_line_error_that_shows_no_secret(tmp_path, monkeypatch):
    rng = random.Random(SEED)
    for name in SECRET_VARS:
        monkeypatch.setenv(name, f"fz-{name.lower()}-{rng.getrandbits(64):016x}")
    monkeypatch.setenv("OMNI_HOME", str(tmp_path / "home"))
    tally = fuzz(tmp_path)
    figures = (f"of {COUNT}: {tally.accepted} accepted, {tally.refused} refused, {len(tally.tracebacks)} tracebacks, "
               f"{len(tally.echoed)} echoed a secret, {len(tally.unclear)} unclear")
    print(figures)
    assert not tally.tracebacks, f"{figures}; e.g. {tally.tracebacks[:3]}"
    assert not tally.echoed, f"{figures}; e.g. {tally.echoed[:3]}"
    assert not tally.unclear, f"{figures}; e.g. {tally.unclear[:3]}"
    assert tally.refused > COUNT // 2, figures
