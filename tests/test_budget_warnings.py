"""Budget warnings: at a configured share of the daily and monthly caps, the sender whose task spent it and the
operator are told once per period, across restarts; real tree, real LiteLLM proxy, simulated paid provider,
IM through the stub bridge."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from config import ConfigError, load_config
from messages import Introspect
from texts import LOCALES

from .conftest import wait_until
from .test_im_commands import USER, Chat, bridge, created_id
from .test_litellm_failover import NO_PINGS, ask_model, start_with_models

OPERATOR = "telegram:7001"
DAILY, MONTHLY = "預算提醒：今日付費模型花費已達每日上限的 50%", "預算提醒：本月付費模型花費已達每月上限的 50%"


def im_section() -> dict:
    bridge_process = {"command": "python", "args": ["-m", "sandbox.openclaw_stub", "--admin-port", "0"],
                      "env": {"OMNI_HOME": os.environ["OMNI_HOME"]}, "respawn_initial_s": 0.05, "respawn_max_s": 0.5}
    return {"allow": [USER, OPERATOR, "cli:*"], "locale": "en", "wait_ms": 2000, "openclaw": bridge_process}


def start(start_tree, write_config, live_models, cap_usd: float):
    """The tree with IM, notices in zh-Hant, both caps at `cap_usd` and a warning at half of them."""
    tree = start_with_models(start_tree, write_config, live_models, locale="zh-Hant", im=im_section(),
                             health=NO_PINGS, brainstem={"model_path": None},
                             budget={"daily_usd": cap_usd, "monthly_usd": cap_usd, "paid_call_reserve_usd": 1e-9,
                                     "warn_at": [0.5], "operators": [OPERATOR]})
    wait_until(lambda: bridge(tree)["link"] == "up", 30, "the OpenClaw bridge's link up")
    return tree


def warnings_in_store(tree) -> list[tuple[str, dict]]:
    tree.ask("budget_warden", Introspect())   # it has weighed the last paid call (the guard told it first) …
    tree.ask("state_store", Introspect())     # … and the store has written what the warden told it then
    with sqlite3.connect(tree.cfg.database_path) as db:
        rows = db.execute("select detail, data from system_event where kind = 'notice' order by id").fetchall()
    return [(text, json.loads(data)) for text, data in rows if json.loads(data)["key"].startswith("budget_warning")]


def stop(tree) -> None:
    tree.supervisor.stop(block=True, timeout=30)


def test_the_sender_and_the_operator_are_told_once_per_period_even_across_restarts(start_tree, write_config,
                                                                                 live_models, omni_home):
    tree = start(start_tree, write_config, live_models, cap_usd=1.0)
    operator, user = Chat(omni_home, to=OPERATOR), Chat(omni_home)
    operator.ask("/status")                    # OpenClaw knows a conversation with the operator from here on
    task_id = created_id(user.ask("Draft the launch plan"))
    one_call = ask_model(tree, tier="P2", task_id=task_id).usd
    assert one_call > 0 and warnings_in_store(tree) == [], "far below half of $1"
    stop(tree)

    cap = 3.5 * one_call                       # one call booked: 29 %; the next one brings both caps to 57 %
    tree = start(start_tree, write_config, live_models, cap_usd=cap)
    user, operator = Chat(omni_home), Chat(omni_home, to=OPERATOR)   # a new tree, a new stub bridge process
    ask_model(tree, tier="P2", task_id=task_id)
    told = warnings_in_store(tree)
    assert [text.split("（")[0] for text, _ in told] == [DAILY, MONTHLY]
    assert all(data["to"] == [USER, OPERATOR] and data["task_id"] == task_id for _, data in told)
    for chat in (user, operator):
        assert chat.news(DAILY) and chat.news(MONTHLY)
    console = [e for e in tree.ask("transition_feed", Introspect())["events"] if e["event"] == "notice"]
    assert [e["key"] for e in console] == ["budget_warning_daily", "budget_warning_monthly"]
    journal = [json.loads(line) for line in (tree.cfg.log_dir / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "system" and e.get("detail", "").startswith(DAILY) for e in journal) == 1
    with sqlite3.connect(tree.cfg.database_path) as db:
        history = [r[0] for r in db.execute("select reason from task_event where task_id = ? and kind = 'decision'",
                                            (task_id,))]
    assert any(reason.startswith(DAILY) for reason in history), "`/why` shows it to a sender without IM too"
    stop(tree)

    tree = start(start_tree, write_config, live_models, cap_usd=cap)
    ask_model(tree, tier="P2", task_id=task_id)          # 86 % now: the 50 % warnings were told already
    assert len(warnings_in_store(tree)) == 2, "a restart does not repeat a warning"
    with sqlite3.connect(tree.cfg.database_path) as db:   # the IM outbox, kept across the restarts
        sent = db.execute("select session_key from im_outbound where text like '預算提醒%'").fetchall()
    assert len(sent) == 4, "two warnings, each once to the sender and once to the operator"


@pytest.mark.parametrize("warn_at, expected", [
    ([1.5], "budget.warn_at: expected a list of shares of the caps, each above 0 and below 1"),
    ("0.8", "budget.warn_at: expected a list of shares"),
    ([0], "budget.warn_at: expected a list of shares"),
])
def test_warning_shares_outside_zero_to_one_name_the_key(write_config, warn_at, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_config(write_config(budget={"warn_at": warn_at}))


def test_an_operator_must_be_one_im_sender(write_config):
    with pytest.raises(ConfigError, match=r"budget\.operators\[0\]: expected an IM sender"):
        load_config(write_config(budget={"operators": ["telegram:*"]}))


def test_every_locale_words_both_warnings():
    for locale, texts in LOCALES.items():
        for key in ("budget_warning_daily", "budget_warning_monthly"):
            assert "{share}%" in texts[key] and "{spent}" in texts[key] and "{cap}" in texts[key], (locale, key)
