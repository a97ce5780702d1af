"""A conversation OpenClaw shares between senders (its default `session.dmScope: main`) would deliver a reply to
whoever wrote last: messages there are refused and logged, never answered, and no news goes there. Through
the stub bridge (real MCP over stdio), whose session keys are whatever the admin call names."""
from __future__ import annotations

import json
import sqlite3

from messages import Introspect

from .conftest import wait_until
from .test_im_commands import USER, Chat, bridge, im_config, start_im_tree

SHARED = "agent:main:main"


def test_a_shared_conversation_is_refused_and_logged_and_never_answered(write_config, start_tree, omni_home):
    tree = start_im_tree(start_tree, im_config(write_config))
    chat = Chat(omni_home)
    chat.admin.inbound("telegram", USER, "Summarise my inbox", session_key=SHARED)
    assert chat.ask("/mode").startswith("Mode: normal")      # handled in order: the shared one came first
    wait_until(lambda: bridge(tree)["refused_shared"] == 1, 10, "the refusal counted")
    assert [m for m in chat.admin.outbound() if m["session_key"] == SHARED] == []
    with sqlite3.connect(tree.cfg.database_path) as db:
        assert db.execute("select count(*) from task").fetchone() == (0,)
        refusals = db.execute("select data from system_event where kind = 'im_shared_session'").fetchall()
    assert [json.loads(data) for (data,) in refusals] == [{"sender": USER, "session_key": SHARED}]
    assert "per-channel-peer" in tree.ask("openclaw_bridge", Introspect())["problem"]
