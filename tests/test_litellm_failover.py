"""The route to models, with a real LiteLLM proxy process in front of the simulated providers."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

import pytest

from messages import Complete, GetMode, Introspect
from sandbox.providers import ProvidersAdmin

from .conftest import wait_until

HELLO = ({"role": "user", "content": "ping 你好"},)


def ask_model(tree, tier="P1", **fields):
    return tree.ask("litellm_guard", Complete(HELLO, tier=tier, **fields)).result(timeout=60)


def guard(tree):
    return tree.ask("litellm_guard", Introspect())


def admin(tree) -> ProvidersAdmin:
    """The simulated providers' admin API: the tree's own, or the session's shared ones (`live_models`)."""
    return ProvidersAdmin(json.loads((tree.cfg.home / "providers.json").read_text())["admin"])


def proxy_pid(home) -> int:
    return int((home / "litellm.pid").read_text().split()[0])


def notices(tree) -> list[str]:
    with sqlite3.connect(tree.cfg.database_path) as db:
        return [row[0] for row in db.execute("select detail from system_event where kind = 'notice' order by id")]


def journal(tree, *events: str, since: float = 0.0) -> list[dict]:
    """The journal's entries of these kinds (`$OMNI_HOME/logs/events.jsonl`), from wall-clock `since` on."""
    lines = (tree.cfg.log_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["event"] in events and e["ts"] >= since]


def repair_tasks(tree) -> list[tuple]:
    with sqlite3.connect(tree.cfg.database_path) as db:
        return db.execute("select state, executor, description from task where kind = 'repair'").fetchall()


def cost_rows(tree) -> list[tuple]:
    with sqlite3.connect(tree.cfg.database_path) as db:
        return db.execute("select tier, route, model, usd from cost_entry order by id").fetchall()


def start_with_models(start_tree, write_config, models_world, **overrides):
    tree = start_tree(write_config(models=models_world, **overrides))
    wait_until(lambda: guard(tree)["proxy_answered"] and guard(tree)["route"] == "proxy", 90,
               "the guard to see the managed proxy answer")
    return tree


# No cloud pings where a test counts cost rows: under load the proxy can start after the first ping, which
# then goes direct and records a row of its own.
NO_PINGS = {"interval_s": 3600}


def test_calls_go_through_the_proxy_and_record_their_cost(start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models, health=NO_PINGS)
    answer = ask_model(tree)
    assert (answer.route, answer.tier, answer.model, answer.usd) == ("proxy", "P1", "free-tier", 0.0)
    assert answer.text.startswith("[free] ping 你好")
    assert wait_until(lambda: cost_rows(tree), 5, "the cost row") == [("P1", "proxy", "free-tier", 0)]


def test_proxy_sigkill_under_steady_calls_goes_direct_loses_no_call_and_is_repaired(
        start_tree, write_config, models_world, omni_home):
    tree = start_with_models(start_tree, write_config, models_world)
    outcomes: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def steady_caller():
        while not stop.is_set():
            try:
                outcomes.append(ask_model(tree).route)
            except Exception as error:   # a failed call is exactly what this test must not see
                errors.append(repr(error))
            time.sleep(0.05)

    callers = [threading.Thread(target=steady_caller) for _ in range(3)]
    for caller in callers:
        caller.start()
    try:
        wait_until(lambda: len(outcomes) > 20, 20, "calls flowing through the proxy")
        killed_at, killed_at_wall = time.monotonic(), time.time()
        os.kill(proxy_pid(omni_home), signal.SIGKILL)
        wait_until(lambda: guard(tree)["route"] == "direct", 30, "direct mode")
        failover_s = time.monotonic() - killed_at
        wait_until(lambda: outcomes[-5:] == ["direct"] * 5, 20, "calls answered directly")
    finally:
        stop.set()
        for caller in callers:
            caller.join(30)
    assert errors == []
    assert admin(tree).calls("direct") >= 5
    assert tree.ask("system_mode", GetMode())["mode"] == "degraded"
    # The switch came with the `failures_to_down`-th consecutive failure (probe or call), not later.
    entries = journal(tree, "route_evidence", "route")
    switch = next(i for i, e in enumerate(entries) if e["event"] == "route" and e["ts"] >= killed_at_wall)
    assert entries[switch]["route"] == "direct"
    evidence = entries[:switch]
    run = evidence[max(i for i, e in enumerate(evidence) if e["consecutive_failures"] == 1):]
    assert [(e["ok"], e["consecutive_failures"]) for e in run] == \
        [(False, n) for n in range(1, tree.cfg.litellm.failures_to_down + 1)], run
    assert run[-1]["ts"] >= killed_at_wall
    kinds = ["call" if e["detail"].startswith("a call could not reach") else "probe" for e in run]
    print(f"\n[measure] SIGKILL -> direct route: {failover_s:.2f} s (seen by polling), "
          f"{entries[switch]['ts'] - killed_at_wall:.3f} s in the journal, after failed {' + '.join(kinds)}")

    # The repair task runs on the coder, which runs the restart command; two good probes bring the proxy back
    # (possibly before the repair task has reported: the probes decide, whoever restarted the proxy).
    wait_until(lambda: guard(tree)["route"] == "proxy", 120, "the repaired proxy back in use")
    wait_until(lambda: tree.ask("system_mode", GetMode())["mode"] == "normal", 10, "normal mode")
    repair = wait_until(lambda: (rows := repair_tasks(tree)) and rows[0][0] in ("completed", "failed") and rows,
                        60, "the repair task to end")
    assert len(repair) == 1 and repair[0][:2] == ("completed", "coder")
    assert "/health/liveliness" in repair[0][2] and "proxy restart" in repair[0][2]
    said = notices(tree)
    assert any("LiteLLM model router is down" in text for text in said)
    assert said[-1] == "LiteLLM is back: model calls go through it again."
    assert tree.ask("system_mode", GetMode())["mode"] == "normal"
    assert ask_model(tree).route == "proxy"


def test_a_failed_repair_stays_direct_and_tells_the_user(start_tree, write_config, models_world, omni_home):
    models_world["litellm"]["restart_command"] = "/bin/false"
    tree = start_with_models(start_tree, write_config, models_world)
    os.kill(proxy_pid(omni_home), signal.SIGKILL)
    wait_until(lambda: any("repair did not bring it back" in text for text in notices(tree)), 60,
               "the failed-repair notice")
    assert guard(tree)["route"] == "direct"
    assert tree.ask("system_mode", GetMode())["mode"] == "degraded"
    assert ask_model(tree).route == "direct", "calls are still served, directly"
    with sqlite3.connect(tree.cfg.database_path) as db:
        repairs = db.execute("select state from task where kind = 'repair'").fetchall()
    assert repairs == [("failed",)], "one repair at a time, the next one only after the backoff"


def test_p1_rate_limited_falls_back_to_p2_within_budget_and_records_its_cost(start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models, health=NO_PINGS)
    admin(tree).set("free", "429", retry_after_s=30)
    answer = ask_model(tree)
    assert (answer.tier, answer.route, answer.model) == ("P2", "proxy", "paid-tier")
    assert answer.usd > 0 and "P1 rate-limited" in answer.notes[0]
    assert guard(tree)["cooling"]["P1"] > 20, "Retry-After is honoured"
    ask_model(tree)
    assert admin(tree).calls("free") == 1, "P1 is not asked again while it cools down"
    costs = wait_until(lambda: len(cost_rows(tree)) == 2 and cost_rows(tree), 5, "two cost rows")
    assert [row[0] for row in costs] == ["P2", "P2"] and all(row[3] > 0 for row in costs)
    wait_until(lambda: any("first paid model call" in text for text in notices(tree)), 5, "the paid-tier notice")
    assert sum("first paid model call" in text for text in notices(tree)) == 1


def test_the_daily_cap_refuses_paid_calls_and_still_serves_free_ones(start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models,
                             budget={"daily_usd": 0.00005, "paid_call_reserve_usd": 0.00001})
    while True:
        try:
            ask_model(tree, tier="P2")
        except Exception as refused:
            assert "the daily budget for paid models ($0.00) is used up" in str(refused)
            break
    assert ask_model(tree, tier="P1").tier == "P1"
    spent = guard(tree)["budget"]["spent_today_usd"]
    assert spent <= 0.00005 + 0.0001


def test_all_tiers_cooling_down_is_not_a_dead_proxy(start_tree, write_config, live_models):
    tree = start_with_models(start_tree, write_config, live_models)
    limited_at = time.time()
    for name in ("free", "paid"):
        admin(tree).set(name, "429", retry_after_s=20)
    with pytest.raises(Exception, match="cooling down"):
        ask_model(tree)
    with pytest.raises(Exception, match="cooling down"):
        ask_model(tree)
    weighed = guard(tree)["probe_results"]
    # Three probes pass while every tier cools down: none may call the proxy dead.
    wait_until(lambda: guard(tree)["probe_results"] >= weighed + 3, 30, "three probes after the 429s")
    assert journal(tree, "route", "mode", since=limited_at) == []
    assert guard(tree)["route"] == "proxy"
    assert tree.ask("system_mode", GetMode())["mode"] == "normal"


def test_backup_keys_never_appear_in_logs_or_errors(start_tree, write_config, models_world, omni_home, monkeypatch):
    secrets = {"OMNI_BACKUP_CLIPROXY_KEY": "sk-backup-cliproxy-0123456789abcdef",
               "OMNI_BACKUP_OPENROUTER_KEY": "sk-backup-openrouter-0123456789abcdef"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    tree = start_with_models(start_tree, write_config, models_world)
    os.kill(proxy_pid(omni_home), signal.SIGKILL)
    wait_until(lambda: guard(tree)["route"] == "direct", 10, "direct mode")
    assert ask_model(tree).route == "direct"
    admin(tree).set("direct", "500")
    with pytest.raises(Exception) as failure:
        ask_model(tree, allow_fallback=True)
    texts = [str(failure.value), repr(failure.value), str(guard(tree))]
    for path in omni_home.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode(errors="replace"))
    for value in secrets.values():
        assert all(value not in text for text in texts)


def test_a_managed_proxy_past_its_memory_ceiling_is_restarted(start_tree, write_config, models_world, omni_home):
    # Every proxy is past 1 MB; memory is checked every 5 probe intervals (7.5 s here), which leaves a restarted
    # proxy several seconds of answering before the next check restarts it again.
    models_world["litellm"].update(rss_ceiling_mb=1, probe_interval_s=1.5)
    tree = start_with_models(start_tree, write_config, models_world)
    pid_file = omni_home / "litellm.pid"
    first = proxy_pid(omni_home)
    wait_until(lambda: pid_file.exists() and proxy_pid(omni_home) != first
               and tree.ask("proxy_keeper", Introspect())["answers"], 60, "a restarted proxy answering")
    with sqlite3.connect(tree.cfg.database_path) as db:
        details = [row[0] for row in db.execute("select detail from system_event where kind = 'proxy'")]
    assert any("> ceiling 1 MB: restarting it" in detail for detail in details)
    assert ask_model(tree).tier == "P1", "calls are served across the restart (directly while it restarts)"
    with sqlite3.connect(tree.cfg.database_path) as db:
        assert db.execute("select count(*) from task where kind = 'repair'").fetchone() == (0,), \
            "a planned restart is not an outage: no repair task"
    assert tree.ask("system_mode", GetMode())["mode"] == "normal"
