"""Notification policy: which event reaches whom, when (quiet hours), how often (progress), in which language.

Pure functions over plain data; the OpenClaw bridge and the command interpreter apply them, the StateStore
keeps what a sender changed (`notify_setting`) and what waits for the end of their quiet hours (`im_held`).

A sender's setting is layered: what they set by `/notify` (stored) over their entry in config
(`im.notify.senders`) over the config's default (`im.notify`).

    setting = resolve(im.notify, im.notify_senders, "telegram:4242", stored={"quiet": "22:00-07:00"})
    decide(setting, "completed", time.time())      # 'send' | 'hold' | 'drop'

Rules (one place for them):
- An event switched off is dropped.
- In quiet hours (the sender's timezone), news is held and delivered when they end: except a failure when the
  sender opted into failures during quiet hours (`failures_in_quiet`), and progress, which is dropped (by the
  end of quiet hours the task's own outcome, held, is the news that matters).
- `created` is the answer to the sender's own message: only its switch counts, never quiet hours.
- A budget warning below the sender's own share (`budget_at`, % of the cap) is dropped: the shares at which
  warnings fire at all are `budget.warn_at`; a sender may hear only of the later ones.
- Progress goes at most once per `im.progress_interval_s` per task; a report arriving sooner waits, replaced
  by any later one (the latest wins).
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone  # noqa: F401 (timezone: the doctests')
from typing import Any, Literal, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EVENTS = ("created", "progress", "completed", "failed", "mode", "paid", "budget")
# What a sender may set, by these names in config (im.notify), in /notify's row (notify_setting) and in `apply`.
SETTINGS = ("events", "quiet", "failures_in_quiet", "locale", "timezone", "budget_at")
LOCALES = ("en", "zh-Hant", "zh-Hans")
Verdict = Literal["send", "hold", "drop"]
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
# Notices by key: anything not named here is about the system's mode (LiteLLM, the cloud, the brainstem).
NOTICE_EVENTS = {"paid_tier_started": "paid", "budget_warning_daily": "budget", "budget_warning_monthly": "budget"}


@dataclass(frozen=True, slots=True)
class NotifySetting:
    """What reaches one sender. `quiet`: (start, end) in minutes after midnight in `timezone`, None: never quiet."""

    events: frozenset[str] = frozenset(EVENTS)
    quiet: tuple[int, int] | None = None
    failures_in_quiet: bool = True
    locale: str | None = None           # None: im.locale
    timezone: str = "UTC"
    budget_at: int = 0                  # budget warnings below this share of a cap (%) do not reach them

    def wants(self, event: str) -> bool:
        return event in self.events


class BadSetting(ValueError):
    """A setting's value is wrong; `expected` names what it must be (English, for config errors and logs)."""

    def __init__(self, field: str, value: Any, expected: str):
        super().__init__(f"{field}: {value!r} is not {expected}")
        self.field, self.value, self.expected = field, value, expected


# --- parsing (config and /notify share these) ---------------------------------------------------------------
def parse_quiet(text: str) -> tuple[int, int] | None:
    """`22:00-07:00` → minutes (start, end); `off` → None. Raises BadSetting.

    >>> parse_quiet("22:00-07:30"), parse_quiet("off"), parse_quiet("９:００－１７:００")
    ((1320, 450), None, (540, 1020))
    """
    folded = unicodedata.normalize("NFKC", str(text)).strip().replace("－", "-").replace("–", "-")
    if folded.lower() in ("off", "none", "no"):
        return None
    parts = [part.strip() for part in folded.split("-")]
    clocks = [_CLOCK.fullmatch(part) for part in parts]
    if len(parts) != 2 or not all(clocks) or parts[0] == parts[1]:
        raise BadSetting("quiet", text, "a range of two different times HH:MM-HH:MM (22:00-07:00), or off")
    start, end = (int(c.group(1)) * 60 + int(c.group(2)) for c in clocks)
    return start, end


def format_quiet(quiet: tuple[int, int] | None) -> str:
    """
    >>> format_quiet((1320, 450)), format_quiet(None)
    ('22:00-07:30', 'off')
    """
    if quiet is None:
        return "off"
    return "-".join(f"{minutes // 60:02d}:{minutes % 60:02d}" for minutes in quiet)


def parse_events(names: Any) -> frozenset[str]:
    """Event names (a list, or text separated by commas or spaces; `all`, `none`). Raises BadSetting.

    >>> sorted(parse_events("failed, completed")), parse_events("none"), len(parse_events(["all"]))
    (['completed', 'failed'], frozenset(), 7)
    """
    words = re.split(r"[\s,，、]+", names) if isinstance(names, str) else [str(name) for name in names]
    words = [word.strip().lower() for word in words if word.strip()]
    if words == ["none"]:
        return frozenset()
    if "all" in words:
        return frozenset(EVENTS)
    unknown = [word for word in words if word not in EVENTS]
    if unknown or not words:
        raise BadSetting("events", unknown[0] if unknown else names, f"events from {', '.join(EVENTS)} (or all)")
    return frozenset(words)


def parse_timezone(name: str) -> str:
    """An IANA timezone name, checked. Raises BadSetting.

    >>> parse_timezone("Asia/Taipei")
    'Asia/Taipei'
    """
    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise BadSetting("timezone", name, "an IANA timezone such as Asia/Taipei or UTC") from None
    return str(name)


def parse_share(text: Any) -> int:
    """A share of a cap in percent, 0 to 100 (`90`, `90%`, `９０％`; `off` is 0: every warning). Raises BadSetting.

    >>> parse_share("90%"), parse_share("９０％"), parse_share(75), parse_share("off")
    (90, 90, 75, 0)
    """
    folded = unicodedata.normalize("NFKC", str(text)).strip().rstrip("%").strip()
    if folded.lower() in ("off", "none", "no", "false"):
        return 0
    if not folded.isdigit() or not 0 <= int(folded) <= 100:
        raise BadSetting("budget_at", text, "a share of the cap in percent, 0 to 100 (e.g. 90), or off")
    return int(folded)


def parse_locale(name: str) -> str:
    """
    >>> parse_locale("zh-hant")
    'zh-Hant'
    """
    for locale in LOCALES:
        if locale.lower() == str(name).strip().lower():
            return locale
    raise BadSetting("locale", name, f"one of {', '.join(LOCALES)}")


# --- layering -------------------------------------------------------------------------------------------------
def apply(base: NotifySetting, changes: Mapping[str, Any]) -> NotifySetting:
    """`base` with stored or configured changes (each as text or list, as `/notify` and config give them).

    >>> apply(NotifySetting(), {"events": "failed", "quiet": "23:00-06:00", "timezone": "Asia/Taipei"}).quiet
    (1380, 360)
    """
    parsers = {"events": parse_events, "quiet": lambda value: None if value is False else parse_quiet(value),
               "failures_in_quiet": bool, "locale": parse_locale, "timezone": parse_timezone,
               "budget_at": parse_share}     # (quiet: YAML reads a bare `off` as false)
    fields = {name: parsers[name](value) for name, value in changes.items() if value is not None and name in parsers}
    return dataclasses.replace(base, **fields)


def resolve(default: NotifySetting, configured: Mapping[str, NotifySetting], sender: str,
            stored: Mapping[str, Any] | None = None) -> NotifySetting:
    """The sender's setting: stored changes over their config entry over the default.

    >>> resolve(NotifySetting(locale="zh-Hant"), {}, "telegram:1", {"locale": "en"}).locale
    'en'
    """
    base = configured.get(sender, default)
    try:
        return apply(base, stored or {})
    except BadSetting:         # stored by an older version and no longer valid: the configured one stands
        return base


def describe(setting: NotifySetting) -> dict[str, str]:
    """The setting as `/notify` shows it (event names in EVENTS' order)."""
    return {"events": ", ".join(event for event in EVENTS if event in setting.events) or "none",
            "quiet": format_quiet(setting.quiet), "failures_in_quiet": "on" if setting.failures_in_quiet else "off",
            "locale": setting.locale or "", "timezone": setting.timezone,
            "budget_at": f"{setting.budget_at}%" if setting.budget_at else "off"}


# --- the policy -----------------------------------------------------------------------------------------------
def event_of_notice(key: str) -> str:
    """
    >>> event_of_notice("paid_tier_started"), event_of_notice("litellm_down")
    ('paid', 'mode')
    """
    return NOTICE_EVENTS.get(key, "mode")


def in_quiet_hours(setting: NotifySetting, at: float) -> bool:
    """Is `at` (epoch seconds) inside the sender's quiet hours, on their clock? A range may cross midnight.

    >>> late = datetime(2026, 12, 2, 15, 30, tzinfo=timezone.utc).timestamp()   # 23:30 in Taipei
    >>> quiet = NotifySetting(quiet=(22 * 60, 7 * 60), timezone="Asia/Taipei")
    >>> in_quiet_hours(quiet, late), in_quiet_hours(dataclasses.replace(quiet, timezone="UTC"), late)
    (True, False)
    """
    if setting.quiet is None:
        return False
    local = datetime.fromtimestamp(at, ZoneInfo(setting.timezone))
    minute, (start, end) = local.hour * 60 + local.minute, setting.quiet
    return start <= minute < end if start < end else minute >= start or minute < end


def decide(setting: NotifySetting, event: str, at: float, share: float | None = None) -> Verdict:
    """Send now, hold until quiet hours end, or drop. `share`: a budget warning's share of its cap (0.8).

    >>> quiet = NotifySetting(quiet=(0, 24 * 60 - 1), failures_in_quiet=True)   # quiet nearly all day (UTC)
    >>> at = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc).timestamp()
    >>> [decide(quiet, event, at) for event in ("completed", "failed", "progress", "created")]
    ['hold', 'send', 'drop', 'send']
    >>> decide(NotifySetting(events=frozenset({"failed"})), "completed", at)
    'drop'
    >>> [decide(NotifySetting(budget_at=90), "budget", at, share) for share in (0.8, 0.9)]
    ['drop', 'send']
    """
    if not setting.wants(event) or (event == "budget" and share is not None and share * 100 < setting.budget_at):
        return "drop"
    if event == "created" or not in_quiet_hours(setting, at):
        return "send"
    if event == "failed" and setting.failures_in_quiet:
        return "send"
    return "drop" if event == "progress" else "hold"


def progress_delay(last_sent_at: float | None, now: float, interval_s: float) -> float:
    """Seconds until a progress report may go (0: now): at most one per `interval_s` per task.

    >>> progress_delay(None, 100.0, 30.0), progress_delay(90.0, 100.0, 30.0), progress_delay(60.0, 100.0, 30.0)
    (0.0, 20.0, 0.0)
    """
    if last_sent_at is None:
        return 0.0
    return max(0.0, last_sent_at + interval_s - now)


def progress_text(done: float, total: float | None, message: str | None) -> str:
    """How a progress report reads (the task's `progress` column, the news): `3/10 reading files`.

    >>> progress_text(3, 10, "reading files"), progress_text(0.5, None, None)
    ('3/10 reading files', '0.5')
    """
    share = f"/{total:g}" if total else ""
    return f"{done:g}{share} {message or ''}".strip()
