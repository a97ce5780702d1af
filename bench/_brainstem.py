"""`python -m bench brainstem [--quick] [--keep]`: what a cloud outage costs.

1. The local model (`clients.local_model.LocalModel`, mlx_lm): cold load time, process RSS before load /
   loaded / after unload (and a second load → unload in the same process), generation of 16 tokens —
   for the tiny random Qwen2 and a bigger random one (~0.5 GB of float32 weights), each made and measured
   in a fresh subprocess (bench/_brainstem_child.py) so imports and allocator state never mix.
2. Outage timings: an in-process orchestrator tree with a real LiteLLM proxy in front of the simulated
   providers (bench/_litellm_world.py), health thresholds scaled down; N tasks `[sleep=30]` executing,
   then free/paid/direct set to `hang`: (i) → mode brainstem, (ii) → all N `waiting`; then back to `ok`:
   (iii) → mode normal, (iv) → first task `executing`, (v) → all N `executing`. Task states are read
   from the SQLite database, the mode from the `system_mode` actor. The seed's real thresholds are too
   slow to run, so their detection/recovery times are computed from the config and labelled as such.

Prints figures, never asserts.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from config import PROJECT_ROOT, overlay

from ._litellm_world import (PROXY_VENV_LITELLM, BenchHome, Tree, bench_config, fresh_ports, wait_until,
                             write_config)

GEN_TOKENS = 16
CHILD_TIMEOUT_S = 300
MODELS = (   # label, hidden, layers, intermediate (make_tiny_qwen2's defaults: 64, 2, = hidden)
    ("tiny (sandbox/tests)", 64, 2, 64),
    ("bigger random Qwen2", 1024, 8, 4096),
)
# The seed's thresholds scaled down so a round takes seconds (the seed: 15 s / 10 s / 3 / 30 s / 2).
HEALTH = {"interval_s": 0.5, "timeout_s": 1.0, "timeouts_to_down": 3, "brainstem_interval_s": 1.0,
          "successes_to_up": 2}
SEED_HEALTH = {"interval_s": 15.0, "timeout_s": 10.0, "timeouts_to_down": 3, "brainstem_interval_s": 30.0,
               "successes_to_up": 2}
TASKS = 20
SLOTS = TASKS + 4          # every task executes at once (the sandbox's executors have 8 slots)
TASK_TEXT = "bench outage job {i} [sleep=30]"
SENDER = "bench:user"
STEP_WAIT_S = 30.0         # per awaited condition; a round that exceeds it is reported as an error
CLOUD = ("free", "paid", "direct")
ALIVE = ("idle", "dispatching", "executing", "waiting")


@dataclass(frozen=True)
class BrainstemPlan:
    rounds: int


FULL = BrainstemPlan(rounds=3)
QUICK = BrainstemPlan(rounds=1)


class BrainstemHome(BenchHome):
    """BenchHome with its own temp dir prefix and log file name."""

    def __init__(self, keep: bool = False) -> None:
        super().__init__(keep)
        shutil.rmtree(self.path, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix="omni-bench-brainstem-"))

    @property
    def log_path(self) -> Path:
        return self.path / "logs" / "bench-brainstem.log"


def hardware() -> str:
    """CPU model and RAM (Linux /proc; `sysctl` on macOS)."""
    cpu, ram_gb = platform.processor() or "?", float("nan")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (OSError, ValueError):
        try:
            cpu = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5).stdout.strip() or cpu
            ram_gb = int(subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True,
                                        timeout=5).stdout) / 2**30
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return f"cpu: {cpu}, RAM {ram_gb:.1f} GiB"


# --- 1. the local model ----------------------------------------------------------------------------------------

def child(*args: Any) -> dict:
    """Run bench._brainstem_child in a fresh interpreter; its last stdout line is JSON."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "bench._brainstem_child", *map(str, args)], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"exit {done.returncode}: {tail[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class ModelFigures:
    label: str
    shape: str
    made: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    error: str = ""


def local_model(models_dir: Path, progress: Callable[[str], None]) -> tuple[list[ModelFigures], Path | None]:
    """Make and measure each model; returns the figures and the tiny model's directory (for part 2)."""
    results, tiny = [], None
    for label, hidden, layers, intermediate in MODELS:
        figures = ModelFigures(label, f"hidden {hidden}, {layers} layers, mlp {intermediate}")
        directory = models_dir / f"qwen2-h{hidden}-l{layers}-i{intermediate}"
        try:
            progress(f"  {label}: making it ({figures.shape}) ...")
            figures.made = child("make", directory, hidden, layers, intermediate)
            progress(f"  {label}: measuring it in a fresh process ...")
            figures.measured = child("measure", directory, GEN_TOKENS)
        except Exception as error:   # noqa: BLE001 (a failed measurement is reported, the bench goes on)
            figures.error = f"{type(error).__name__}: {error}"[:400]
        results.append(figures)
        if tiny is None and not figures.error:
            tiny = directory
        elif directory != tiny:
            shutil.rmtree(directory, ignore_errors=True)   # the big one: don't leave ~0.5 GB behind, even with --keep
    return results, tiny


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _size(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def local_model_report(results: list[ModelFigures]) -> str:
    def cell(fig: ModelFigures, fn: Callable[[dict, dict], str]) -> str:
        if fig.error:
            return "ERROR"
        try:
            return fn(fig.made, fig.measured)
        except (KeyError, TypeError, ZeroDivisionError):
            return "-"

    rows: list[tuple[str, Callable[[dict, dict], str]]] = [
        ("shape", lambda a, m: ""),
        ("weights (float32), files on disk", lambda a, m: f"{_count(a['params'])} params, {_size(a['bytes'])}"),
        ("made by make_tiny_qwen2 (s)", lambda a, m: f"{a['seconds']:.2f}"),
        ("RSS before load (MiB)", lambda a, m: f"{m['rss_before_mb']:.0f}"),
        ("cold load, incl. importing mlx_lm (s)", lambda a, m: f"{m['load_cold_s']:.3f}"),
        ("RSS loaded (MiB)", lambda a,
         m: f"{m['rss_loaded_mb']:.0f}  (+{m['rss_loaded_mb'] - m['rss_before_mb']:.0f})"),
        (f"generate {GEN_TOKENS} tokens, LocalModel.generate (s)", lambda a, m: f"{m['gen_s']:.3f}"),
        ("  again via stream_generate (s)", lambda a, m: f"{m['gen_again_s']:.3f}"),
        ("    prompt: tokens @ tok/s", lambda a, m: f"{m['prompt_tokens']} @ {m['prompt_tps']:.1f}"),
        ("    generated: tokens @ tok/s", lambda a, m: f"{m['gen_tokens']} @ {m['gen_tps']:.1f}"),
        ("RSS after generating (MiB)", lambda a, m: f"{m['rss_generated_mb']:.0f}"),
        ("unload (s)", lambda a, m: f"{m['unload_s']:.3f}"),
        ("RSS after unload (MiB)", lambda a, m: f"{m['rss_unloaded_mb']:.0f}  "
                                                f"({m['rss_unloaded_mb'] - m['rss_loaded_mb']:+.0f})"),
        ("load again, same process (s)", lambda a, m: f"{m['load_again_s']:.3f}"),
        ("RSS loaded again (MiB)", lambda a, m: f"{m['rss_loaded_again_mb']:.0f}"),
        ("RSS after 2nd unload (MiB)", lambda a, m: f"{m['rss_unloaded_again_mb']:.0f}"),
    ]
    width = 44
    columns = [max(30, len(fig.shape) + 2) for fig in results]
    lines = [f"{'':<{width}}" + "".join(f"{fig.label:<{w}}" for fig, w in zip(results, columns, strict=True)),
             "-" * (width + sum(columns))]
    for name, fn in rows:
        values = [fig.shape if name == "shape" and not fig.error else cell(fig, fn) for fig in results]
        lines.append(f"{name:<{width}}" + "".join(f"{v:<{w}}" for v, w in zip(values, columns, strict=True)))
    for fig in results:
        if fig.error:
            lines.append(f"{fig.label}: ERROR {fig.error}")
    mlx = next((fig.measured.get("mlx") for fig in results if fig.measured.get("mlx")), None)
    if mlx:
        lines.append(f"({mlx}; RSS = VmRSS of the child process; generation is greedy, random weights)")
    return "\n".join(lines)


# --- 2. outage timings -----------------------------------------------------------------------------------------

@dataclass
class OutageRound:
    set_hang_s: float = 0.0              # the 3 admin calls themselves
    brainstem_s: float | None = None     # (i)  outage start → mode brainstem
    all_waiting_s: float | None = None   # (ii) outage start → all N waiting
    model_load_s: float | None = None    # the brainstem's cold load of the tiny model, in the tree
    held_s: float = 0.0                  # then the outage lasts this much longer (random) before the cloud is back
    normal_s: float | None = None        # (iii) cloud back → mode normal
    first_executing_s: float | None = None   # (iv)
    all_executing_s: float | None = None     # (v)
    error: str = ""


@dataclass
class Outage:
    rounds: list[OutageRound] = field(default_factory=list)
    tree_start_s: float = 0.0
    submitted: int = 0
    escalations: list[str] = field(default_factory=list)
    health: dict = field(default_factory=dict)


def _states(tree: Tree) -> dict[int, str]:
    with sqlite3.connect(tree.cfg.database_path, timeout=5) as db:
        return dict(db.execute("select id, state from task"))


def _mode(tree: Tree) -> str:
    from messages import GetMode
    return tree.ask("system_mode", GetMode())["mode"]


def _introspect(tree: Tree, name: str) -> dict:
    from messages import Introspect
    return tree.ask(name, Introspect())


def _set_cloud(tree: Tree, mode: str) -> None:
    from sandbox.providers import ProvidersAdmin
    admin = ProvidersAdmin(_introspect(tree, "sandbox_providers")["admin"])
    for name in CLOUD:
        admin.set(name, mode)


def _submit(tree: Tree, token: str, first: int, count: int) -> list[int]:
    from clients.gateway_client import GatewaySession
    url = _introspect(tree, "gateway")["url"]

    async def scenario() -> list[int]:
        async with GatewaySession(url, token) as gateway:
            return [(await gateway.call("submit_task", description=TASK_TEXT.format(i=i), sender=SENDER))["task_id"]
                    for i in range(first, first + count)]
    return asyncio.run(scenario())


def _watch(tree: Tree, since: float, checks: dict[str, Callable[[str, dict[int, str]], bool]]) -> dict[str, float]:
    """Poll mode and task states until every check has held once; seconds from `since` to its first hold."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + STEP_WAIT_S
    while len(seen) < len(checks):
        mode, states = _mode(tree), _states(tree)
        now = time.monotonic()
        for name, check in checks.items():
            if name not in seen and check(mode, states):
                seen[name] = now - since
        if now > deadline:
            missing = ", ".join(name for name in checks if name not in seen)
            raise TimeoutError(f"not within {STEP_WAIT_S:g}s: {missing} (mode {mode})")
        time.sleep(0.005)
    return seen


def outage_round(tree: Tree, ids: list[int]) -> OutageRound:
    result = OutageRound()
    time.sleep(random.uniform(0, HEALTH["interval_s"]))   # the outage falls at a random point of the ping cycle
    started = time.monotonic()
    _set_cloud(tree, "hang")
    result.set_hang_s = time.monotonic() - started
    down = _watch(tree, started, {
        "brainstem": lambda mode, states: mode == "brainstem",
        "all_waiting": lambda mode, states: all(states.get(i) == "waiting" for i in ids)})
    result.brainstem_s, result.all_waiting_s = down["brainstem"], down["all_waiting"]
    brainstem = wait_until(lambda: (b := _introspect(tree, "brainstem"))["model"] != "loading" and b, STEP_WAIT_S,
                           "the brainstem's local model to settle")
    result.model_load_s = brainstem.get("load_s") if brainstem["model"] == "loaded" else None
    if brainstem["model"] != "loaded":
        result.error = f"local model: {brainstem['model']}"
    result.held_s = random.uniform(0, HEALTH["timeout_s"] + HEALTH["brainstem_interval_s"])
    time.sleep(result.held_s)   # the cloud comes back at a random point of the brainstem ping cycle
    back = time.monotonic()
    _set_cloud(tree, "ok")
    up = _watch(tree, back, {
        "normal": lambda mode, states: mode == "normal",
        "first": lambda mode, states: any(states.get(i) == "executing" for i in ids),
        "all": lambda mode, states: all(states.get(i) == "executing" for i in ids)})
    result.normal_s, result.first_executing_s, result.all_executing_s = up["normal"], up["first"], up["all"]
    return result


def _ready_for_a_round(tree: Tree, home: BrainstemHome, ids: list[int], report: Outage) -> list[int]:
    """Normal mode, the model unloaded, and N of our tasks executing (replacing any that finished)."""
    wait_until(lambda: _mode(tree) == "normal" and _introspect(tree, "brainstem")["model"] == "unloaded"
               and _introspect(tree, "health_monitor")["cloud"] == "up", STEP_WAIT_S, "normal mode, model unloaded")
    states = _states(tree)
    ids = [i for i in ids if states.get(i) in ALIVE]
    if len(ids) < TASKS:
        more = TASKS - len(ids)
        ids += _submit(tree, home.token, report.submitted, more)
        report.submitted += more
    wait_until(lambda: all(_states(tree).get(i) == "executing" for i in ids), STEP_WAIT_S,
               f"{len(ids)} tasks executing")
    return ids


def outage(plan: BrainstemPlan, home: BrainstemHome, tiny: Path | None, progress: Callable[[str], None]) -> Outage:
    report = Outage(health=dict(HEALTH))
    overrides = {"health": HEALTH,
                 "brainstem": {"model_path": str(tiny) if tiny else None, "max_tokens": GEN_TOKENS},
                 "executors": {"general": {"slots": SLOTS}, "coder": {"slots": SLOTS}}}
    cfg = write_config(overlay(bench_config(fresh_ports()), overrides), home.path / "bench-config.yaml")
    tree = Tree(cfg, home.token)
    try:
        started = time.perf_counter()
        tree.start()
        tree.wait_ready()
        report.tree_start_s = time.perf_counter() - started
        ids: list[int] = []
        for number in range(1, plan.rounds + 1):
            try:
                ids = _ready_for_a_round(tree, home, ids, report)
                one = outage_round(tree, ids)
            except Exception as error:   # noqa: BLE001 (report what happened, stop)
                one = OutageRound(error=f"{type(error).__name__}: {error}"[:300])
            report.rounds.append(one)
            progress(f"  round {number}/{plan.rounds}: " + _round_line(one))
            if one.error and one.all_executing_s is None:
                break
    finally:
        report.escalations = list(tree.escalations)
        tree.stop()
    return report


def _round_line(one: OutageRound) -> str:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}s"
    line = (f"brainstem {s(one.brainstem_s)}, all waiting {s(one.all_waiting_s)}, model load {s(one.model_load_s)}; "
            f"held {one.held_s:.2f}s more; back: normal {s(one.normal_s)}, first executing {s(one.first_executing_s)}, "
            f"all executing {s(one.all_executing_s)}")
    return line + (f"  ERROR {one.error}" if one.error else "")


def _spread(values: list[float]) -> str:
    if not values:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return f"{min(values):>8.3f} {statistics.median(values):>8.3f} {max(values):>8.3f}"


def expected(health: dict) -> dict[str, tuple[float, float]]:
    """Detection and recovery windows implied by the thresholds, pings only (arithmetic, not measured).

    Up: a ping every `interval_s` after the previous answer, so the first hanging ping starts 0..I after the
    outage; k of them time out (T each) with I between → CloudDown after k·T + (k-1)·I .. k·T + k·I.
    Down: a ping T (hanging) + B (pause) per cycle; the cloud comes back anywhere in it, so the first ping
    that can answer starts 0..T+B later (one already in flight still times out), and s answers B apart →
    CloudUp after (s-1)·B .. (s-1)·B + T + B (answers taken as instant).
    """
    i, t, k = health["interval_s"], health["timeout_s"], health["timeouts_to_down"]
    b, s = health["brainstem_interval_s"], health["successes_to_up"]
    return {"down": (k * t + (k - 1) * i, k * t + k * i), "up": ((s - 1) * b, (s - 1) * b + t + b)}


def _config_line(health: dict) -> str:
    return (f"ping every {health['interval_s']:g} s, timeout {health['timeout_s']:g} s, "
            f"{health['timeouts_to_down']} timeouts → brainstem; there a ping every "
            f"{health['brainstem_interval_s']:g} s, {health['successes_to_up']} answers → normal")


def outage_report(report: Outage) -> str:
    rounds = [r for r in report.rounds if r.all_executing_s is not None]
    scaled, seed = expected(report.health), expected(SEED_HEALTH)

    def window(pair: tuple[float, float]) -> str:
        return f"{pair[0]:g} .. {pair[1]:g} s"

    lines = [
        f"outage: {len(rounds)} round(s) measured, {TASKS} tasks `[sleep=30]` executing each time; "
        f"free/paid/direct set to `hang`, then back to `ok`",
        f"{'seconds':<52} {'min':>8} {'median':>8} {'max':>8}",
        "-" * 80,
        f"{'(i)   outage start -> mode brainstem':<52} {_spread([r.brainstem_s for r in rounds])}",
        f"{'(ii)  outage start -> all tasks waiting':<52} {_spread([r.all_waiting_s for r in rounds])}",
        f"{'      (ii) - (i): suspending {} tasks'.format(TASKS):<52} "
        f"{_spread([r.all_waiting_s - r.brainstem_s for r in rounds])}",
        f"{'      brainstem loading the tiny model (in tree)':<52} "
        f"{_spread([r.model_load_s for r in rounds if r.model_load_s is not None])}",
        f"{'(iii) cloud back -> mode normal':<52} {_spread([r.normal_s for r in rounds])}",
        f"{'(iv)  cloud back -> first task executing again':<52} {_spread([r.first_executing_s for r in rounds])}",
        f"{'(v)   cloud back -> all tasks executing again':<52} {_spread([r.all_executing_s for r in rounds])}",
        f"{'      (v) - (iii): resuming {} tasks'.format(TASKS):<52} "
        f"{_spread([r.all_executing_s - r.normal_s for r in rounds])}",
    ]
    for number, one in enumerate(report.rounds, 1):
        if one.error:
            lines.append(f"round {number}: ERROR {one.error}")
    lines.append(f"tasks submitted in all: {report.submitted}")
    if report.escalations:
        lines.append(f"supervisor escalations: {report.escalations}")
    lines += [
        "",
        "COMPUTED from the config (arithmetic, pings only, not measured):",
        f"  this run's config: detection (i) {window(scaled['down'])}, recovery (iii) {window(scaled['up'])}",
        f"  the seed's config ({_config_line(SEED_HEALTH)}):",
        f"    detection, outage start -> brainstem   {window(seed['down'])}  (midpoint {sum(seed['down']) / 2:g} s)",
        f"    recovery, cloud back -> normal         {window(seed['up'])}  (midpoint {sum(seed['up']) / 2:g} s)",
        "    plus, from the measurements above, the suspend / resume of the tasks themselves; a live call that",
        "    times out also counts toward the 3 timeouts, so real traffic can only make detection sooner.",
    ]
    return "\n".join(lines)


# --- the whole thing -------------------------------------------------------------------------------------------

def run(quick: bool, keep: bool) -> int:
    plan = QUICK if quick else FULL
    if not PROXY_VENV_LITELLM.exists():
        print(f"the LiteLLM proxy's venv is missing ({PROXY_VENV_LITELLM}): run `make setup`")
        return 1
    started = time.perf_counter()
    print(hardware(), flush=True)
    print("note: the brainstem's real model is Qwen2.5-7B-Instruct 4-bit (MLX, ~4 GB of weights) on an Apple-"
          "silicon Mac, where mlx runs on the GPU: load time, memory and tokens/s there are different from these "
          "CPU figures with random float32 weights.", flush=True)
    with BrainstemHome(keep=keep) as home:
        if keep:
            print(f"home {home.path}", flush=True)
        print(f"\nlocal model: cold load, RSS, {GEN_TOKENS}-token generation, unload; each model in a fresh "
              f"subprocess ...", flush=True)
        results, tiny = local_model(home.path / "models", lambda line: print(line, flush=True))
        print()
        print(local_model_report(results))
        print()
        print(f"outage: in-process tree + managed LiteLLM proxy + simulated providers, {plan.rounds} round(s)",
              flush=True)
        print(f"  health config used: {_config_line(HEALTH)}", flush=True)
        print(f"  brainstem model: {'the tiny one above' if tiny else 'none (fixed texts)'}; executors' slots "
              f"{SLOTS}; seed's config: {_config_line(SEED_HEALTH)}", flush=True)
        report = outage(plan, home, tiny, lambda line: print(line, flush=True))
        print(f"(tree + managed proxy ready in {report.tree_start_s:.1f}s)")
        print()
        print(outage_report(report))
        troubles = home.troubles()
        print(f"\nlog: {len(troubles)} WARNING/ERROR lines in this process's log"
              + (f"; last: {troubles[-1][:160]}" if troubles else ""))
    print(f"\n({'quick' if quick else 'full'} brainstem run, {time.perf_counter() - started:.1f}s in all)")
    return 0
