"""Notification settings per sender and executors' progress in the chat, through both IM routes: the OpenClaw
bridge (the stub `openclaw mcp serve`, real MCP over stdio) and our gateway's `command` tool (real MCP over
Streamable HTTP), on a real SQLite file; the policy itself (notifications.py) as pure functions."""
from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import notifications as policy
from config import ConfigError, load_config
from messages import Notice
from store import open_database
from texts import say

from .conftest import wait_until
from .test_im_commands import USER, Chat, GatewayChat, created_id, im_config, start_im_tree, wait_for_state, \
    with_im_section

FAST = {"progress_interval_s": 1, "held_check_s": 0.2}


def fast_im_config(write_config, **im):
    path = im_config(write_config)
    import yaml
    raw = yaml.safe_load(path.read_text())
    raw["im"].update(FAST, **im)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def quiet_now(timezone: str) -> str:
    """Quiet hours from an hour ago to an hour ahead on that clock."""
    now = datetime.now(ZoneInfo(timezone))
    return f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=1)):%H:%M}"


# --- the policy ---------------------------------------------------------------------------------------------
def test_quiet_hours_are_read_on_the_senders_clock_across_midnight():
    at = datetime(2026, 12, 2, 15, 30, tzinfo=ZoneInfo("UTC")).timestamp()        # 23:30 in Taipei
    taipei = policy.NotifySetting(quiet=policy.parse_quiet("22:00-07:00"), timezone="Asia/Taipei",
                                  failures_in_quiet=False)
    assert policy.in_quiet_hours(taipei, at)
    assert not policy.in_quiet_hours(policy.apply(taipei, {"timezone": "Europe/London"}), at)   # 15:30 there
    assert [policy.decide(taipei, event, at) for event in policy.EVENTS] == \
        ["send", "drop", "hold", "hold", "hold", "hold", "hold"]
    assert policy.decide(policy.apply(taipei, {"failures_in_quiet": True}), "failed", at) == "send"
    assert policy.decide(policy.apply(taipei, {"events": "failed"}), "completed", at) == "drop"


def test_settings_layer_stored_over_configured_over_default_and_bad_values_say_what_is_expected():
    default = policy.NotifySetting(locale="en")
    configured = {"telegram:1": policy.apply(default, {"locale": "zh-Hant", "quiet": "23:00-06:00"})}
    mine = policy.resolve(default, configured, "telegram:1", {"events": "failed,completed"})
    assert (mine.locale, mine.quiet, sorted(mine.events)) == ("zh-Hant", (1380, 360), ["completed", "failed"])
    assert policy.resolve(default, configured, "telegram:2", {}) == default
    for field, value, expected in (("quiet", "25:00-07:00", "HH:MM-HH:MM"), ("events", "lunch", "events from"),
                                   ("timezone", "Mars/Olympus", "IANA timezone"), ("locale", "fr", "one of en")):
        with pytest.raises(policy.BadSetting, match=expected):
            policy.apply(default, {field: value})
    assert policy.progress_delay(10.0, 10.5, 1.0) == 0.5 and policy.progress_delay(None, 10.5, 1.0) == 0


@pytest.mark.parametrize("notify, key_path, expected", [
    ({"quiet": "9-5"}, "im.notify.quiet", "a range of two different times HH:MM-HH:MM"),
    ({"events": ["created", "lunch"]}, "im.notify.events", "events from created, progress"),
    ({"timezone": "Mars/Olympus"}, "im.notify.timezone", "an IANA timezone"),
    ({"senders": {"telegram:1": {"locale": "fr"}}}, "im.notify.senders.telegram:1.locale", "one of en, zh-Hant"),
    ({"sound": True}, "im.notify.sound", "one of the keys"),
])
def test_notification_config_mistakes_name_the_key_path(write_config, notify, key_path, expected):
    path = with_im_section(write_config(), {"allow": [USER], "notify": notify})
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{key_path}: expected {expected}" in str(error.value)


def test_an_earlier_database_gains_the_progress_column_and_the_new_tables_keeping_its_tasks(tmp_path):
    path = str(tmp_path / "old.db")
    database = open_database(path)
    database.execute_sql("INSERT INTO task (description, state, attempts, source, created_at, updated_at) "
                         "VALUES ('kept', 'completed', 1, 'im', 1, 1)")
    database.execute_sql('ALTER TABLE task DROP COLUMN progress')     # as the version before this one made it
    database.execute_sql('DROP TABLE im_held')
    database.execute_sql('DROP TABLE notify_setting')
    database.close()
    open_database(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT description, progress FROM task").fetchall() == [("kept", None)]
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"notify_setting", "im_held"} <= tables


# --- through the routes -----------------------------------------------------------------------------------
def test_progress_reaches_the_chat_paced_and_the_latest_shows_in_task(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, fast_im_config(write_config))
    chat = Chat(omni_home)
    task_id = created_id(chat.ask("#code tidy the parser [sleep=3]"))
    wait_for_state(tree, task_id, {"completed"}, 30)
    chat.news(f"Task #{task_id} completed")
    progress = [m["text"] for m in chat.admin.outbound() if m["to"] == USER
                and re.fullmatch(rf"Task #{task_id}: [\d.]+/3 step \d+/10", m["text"])]
    with tree.db() as db:
        reports = db.execute("SELECT count(*) FROM task_event WHERE task_id = ? AND kind = 'progress'",
                             (task_id,)).fetchone()[0]
        latest = db.execute("SELECT progress FROM task WHERE id = ?", (task_id,)).fetchone()[0]
    assert reports == 10 and latest == "3/3 step 10/10"
    # ten reports in about 3 s, at most one a second in the chat (the first at once): fewer, never all
    print(f"\nprogress: {reports} reports in ~3 s, {len(progress)} in the chat (interval 1 s)")
    assert 1 <= len(progress) < reports, progress
    assert f"Progress: {latest}" in GatewayChat(tree.url).ask(f"/task {task_id}")


def test_progress_is_said_in_the_senders_language(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, fast_im_config(write_config))
    chat = Chat(omni_home)
    assert chat.ask("/notify language zh-Hans").startswith(say("zh-Hans", "im_notify_saved"))
    reply = chat.ask("#code 整理解析器 [sleep=1.5]")
    task_id = int(re.search(r"#(\d+)", reply).group(1))
    assert reply == say("zh-Hans", "im_task_created", task_id=task_id)
    chat.news(f"任务 #{task_id}：")
    wait_for_state(tree, task_id, {"completed"}, 30)


def test_bad_notify_arguments_are_named_in_each_language(write_config, start_tree):
    tree = start_im_tree(start_tree, fast_im_config(write_config))
    gateway = GatewayChat(tree.url)
    usage = "/notify [on|off EVENTS · quiet HH:MM-HH:MM|off · failures on|off · language L · timezone TZ · reset]"
    for locale in ("en", "zh-Hant", "zh-Hans"):
        gateway.ask(f"/notify language {locale}")
        cases = [("quiet 25:00-07:00", "25:00-07:00", "im_notify_expect_quiet", {}),
                 ("off lunch", "lunch", "im_notify_expect_events", {"events": ", ".join(policy.EVENTS)}),
                 ("timezone Mars/Olympus", "Mars/Olympus", "im_notify_expect_timezone", {}),
                 ("failures maybe", "maybe", "im_notify_expect_on_off", {}),
                 ("volume 11", "volume", "im_notify_expect_action", {})]
        for argument, bad, key, params in cases:
            assert gateway.ask(f"/notify {argument}") == say(
                locale, "im_bad_argument", command="/notify", argument=bad, expected=say(locale, key, **params),
                usage=usage)
        assert gateway.ask("/notify quiet") == say(locale, "im_missing_argument", command="/notify",
                                                   expected=say(locale, "im_notify_expect_quiet"), usage=usage)
    assert gateway.ask("/notify language fr") == say(
        "zh-Hans", "im_bad_argument", command="/notify", argument="fr",
        expected=say("zh-Hans", "im_expect_one_of", options="en, zh-Hant, zh-Hans"), usage=usage)


def test_a_setting_made_through_one_route_holds_on_the_other(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, fast_im_config(write_config))
    chat, gateway = Chat(omni_home), GatewayChat(tree.url)
    shown = gateway.ask("/notify off completed")
    assert "Events: created, progress, failed, mode, paid, budget" in shown
    assert "Events: created, progress, failed, mode, paid, budget" in chat.ask("/notify")
    quiet_done = created_id(chat.ask("Summarise my unread mail"))
    failing = created_id(chat.ask("Summarise my unread mail [fail]"))
    wait_for_state(tree, quiet_done, {"completed"})
    chat.news(f"Task #{failing} failed")                 # failures still on
    assert not any(f"Task #{quiet_done} completed" in m["text"] for m in chat.admin.outbound())
    # created switched off through the bridge: the gateway's receipt respects it too (an empty reply)
    assert "Saved." in chat.ask("/notify off created")
    assert gateway.ask("Another errand") == ""
    with tree.db() as db:
        assert db.execute("SELECT count(*) FROM task WHERE description = 'Another errand'").fetchone() == (1,)
    assert "Back to the configured setting." in gateway.ask("/notify reset")
    with tree.db() as db:
        assert db.execute("SELECT count(*) FROM notify_setting").fetchone() == (0,)


def test_news_in_quiet_hours_is_held_and_delivered_after(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, fast_im_config(write_config))
    chat = Chat(omni_home)
    chat.ask("/notify timezone Asia/Taipei")
    chat.ask("/notify failures off")
    assert "Quiet hours: " + quiet_now("Asia/Taipei") in chat.ask(f"/notify quiet {quiet_now('Asia/Taipei')}")
    task_id = created_id(chat.ask("Summarise my unread mail"))     # the receipt answers at once: it was asked
    wait_for_state(tree, task_id, {"completed"})
    wait_until(lambda: tree.db().execute("SELECT count(*) FROM im_held").fetchone() == (1,), 10, "the news held")
    assert not any(f"Task #{task_id} completed" in m["text"] for m in chat.admin.outbound())
    chat.ask("/notify quiet off")                                  # quiet hours over: released at the next check
    chat.news(f"Task #{task_id} completed")
    with tree.db() as db:
        assert db.execute("SELECT count(*) FROM im_held WHERE released_at IS NULL").fetchone() == (0,)


def test_notices_follow_each_senders_events_and_language(write_config, start_tree, omni_home):
    other = "telegram:777"
    path = fast_im_config(write_config)
    import yaml
    raw = yaml.safe_load(path.read_text())
    raw["im"]["allow"].append(other)
    raw["im"]["notify"] = {"senders": {other: {"locale": "zh-Hant"}}}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    tree = start_im_tree(start_tree, path)
    mine, theirs = Chat(omni_home), Chat(omni_home, to=other)
    mine.ask("/notify off mode")
    assert theirs.ask("/notify").startswith(f"{other} 的通知設定")
    tree.directory.tell("system_mode", Notice("litellm_down", say("en", "litellm_down", error="refused"),
                                              params=(("error", "refused"),)))
    theirs.news(say("zh-Hant", "litellm_down", error="refused"))
    tree.directory.tell("system_mode", Notice("paid_tier_started", say("en", "paid_tier_started", reason="x"),
                                              params=(("reason", "x"),)))
    mine.news(say("en", "paid_tier_started", reason="x"))            # paid-tier use: still on for them
    assert not any(m["to"] == USER and m["text"] == say("en", "litellm_down", error="refused")
                   for m in mine.admin.outbound())

    assert "90%" in theirs.ask("/notify budget 90")                   # budget warnings only from 90 % of a cap
    for share in ("80", "95"):
        params = {"share": share, "spent": "0.80", "cap": "1.00"}
        tree.directory.tell("openclaw_bridge", Notice("budget_warning_daily", say("en", "budget_warning_daily",
                                                                                  **params),
                                                      (USER, other), params=tuple(params.items())))
        mine.news(say("en", "budget_warning_daily", **params))     # every share still reaches the other sender
    theirs.news(say("zh-Hant", "budget_warning_daily", share="95", spent="0.80", cap="1.00"))
    below = say("zh-Hant", "budget_warning_daily", share="80", spent="0.80", cap="1.00")
    assert not any(m["to"] == other and below in m["text"] for m in theirs.admin.outbound())


def test_the_console_shows_a_running_tasks_latest_progress():
    from surfaces.live_console import render_tasks
    from .test_live_console import text_of
    task = {"task_id": 3, "state": "executing", "kind": "coding", "executor": "coder", "tier": "P1",
            "created_at": 0.0, "description": "Fix it", "progress": "3/10 step 3/10"}
    assert "Fix it · 3/10 step 3/10" in text_of(render_tasks({"now": 5.0, "tasks": [task]}), width=140)
    assert "step" not in text_of(render_tasks({"now": 5.0, "tasks": [{**task, "state": "completed"}]}), width=140)
