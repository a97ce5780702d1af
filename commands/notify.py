"""`/notify`: what reaches the sender, shown and changed from IM (through either route: the setting lives in
SQLite, `notify_setting`, so the OpenClaw bridge and our gateway's `command` tool share it).

    /notify                           the sender's setting
    /notify off progress,mode         those events no longer reach them (`on` again; `all`, `none`)
    /notify quiet 22:00-07:00         quiet hours on their clock (`off`): news is held until they end
    /notify failures off              failures wait for the end of quiet hours too (`on`: they come at once)
    /notify language zh-Hant          replies and news in that language (en | zh-Hant | zh-Hans)
    /notify timezone Asia/Taipei      the clock of their quiet hours
    /notify budget 90                 budget warnings only from 90 % of a cap (`off`: at every budget.warn_at)
    /notify reset                     back to what config says
"""
from __future__ import annotations

from typing import Any

import notifications as policy
from messages.notify import SaveNotifySetting
from vocabulary import ActorName

ON_OFF = {"on": True, "off": False, "開": True, "关": False, "關": False, "开": True}
ALIASES = {"lang": "language", "locale": "language", "tz": "timezone", "quiet-hours": "quiet"}


async def notify(interpreter: Any, argument: str, sender: str) -> str:
    """`interpreter`: the CommandInterpreter (its ask, its texts in the sender's language)."""
    words = argument.split()
    if not words:
        return show(interpreter, sender, await interpreter.notify_setting(sender))
    action, rest = ALIASES.get(words[0].lower(), words[0].lower()), " ".join(words[1:])
    try:
        changes = _changes(interpreter, action, rest, await interpreter.notify_setting(sender))
    except policy.BadSetting as bad:
        raise interpreter.bad_argument(rest, _expected(interpreter, bad.field)) from None
    except LookupError:
        raise interpreter.bad_argument(rest if action in ACTIONS else words[0], _expected(interpreter, action)) \
            from None
    await interpreter._ask(ActorName.STATE_STORE, SaveNotifySetting(sender, changes or {}, reset=changes is None))
    setting = await interpreter.notify_setting(sender)
    saved = interpreter._say("im_notify_reset" if changes is None else "im_notify_saved", locale=setting.locale)
    return saved + "\n" + show(interpreter, sender, setting)


ACTIONS = ("on", "off", "quiet", "failures", "language", "timezone", "budget", "reset")


def _changes(interpreter: Any, action: str, rest: str, current: policy.NotifySetting) -> dict[str, Any] | None:
    """The stored fields `action` changes (None: forget them all). Raises BadSetting, or LookupError for a
    missing or unknown argument."""
    if action not in ACTIONS or (not rest and action != "reset"):
        raise LookupError(action)
    if action == "reset":
        return None
    if action in ("on", "off"):
        events = policy.parse_events(rest)
        chosen = current.events | events if action == "on" else current.events - events
        return {"events": ",".join(event for event in policy.EVENTS if event in chosen)}
    if action == "quiet":
        return {"quiet": policy.format_quiet(policy.parse_quiet(rest))}
    if action == "failures":
        if rest.lower() not in ON_OFF:
            raise LookupError(action)
        return {"failures_in_quiet": ON_OFF[rest.lower()]}
    if action == "language":
        return {"locale": policy.parse_locale(rest)}
    if action == "budget":
        return {"budget_at": policy.parse_share(rest)}
    return {"timezone": policy.parse_timezone(rest)}


def _expected(interpreter: Any, what: str) -> str:
    match what:
        case "events" | "on" | "off":
            return interpreter._say("im_notify_expect_events", events=", ".join(policy.EVENTS))
        case "quiet":
            return interpreter._say("im_notify_expect_quiet")
        case "failures":
            return interpreter._say("im_notify_expect_on_off")
        case "locale" | "language":
            return interpreter._say("im_expect_one_of", options=", ".join(policy.LOCALES))
        case "timezone":
            return interpreter._say("im_notify_expect_timezone")
        case "budget_at" | "budget":
            return interpreter._say("im_notify_expect_share")
    return interpreter._say("im_notify_expect_action")


def show(interpreter: Any, sender: str, setting: policy.NotifySetting) -> str:
    shown, locale = policy.describe(setting), setting.locale
    on_off = {True: interpreter._say("im_notify_on", locale=locale), False: interpreter._say("im_notify_off",
                                                                                              locale=locale)}
    return interpreter._say("im_notify_show", locale=locale, sender=sender, events=shown["events"],
                            quiet=on_off[False] if setting.quiet is None else shown["quiet"],
                            timezone=setting.timezone, failures=on_off[setting.failures_in_quiet],
                            language=locale or interpreter._im.locale,
                            budget=shown["budget_at"] if setting.budget_at else on_off[False])
