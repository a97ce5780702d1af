"""The cost dashboard in a real headless Chromium, served by the real tree's gateway over a test database."""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from store.schema import CostEntry, SystemEvent, Task, TaskEvent, open_database
from messages import Introspect, RecordCost

from surfaces.live_console import gather, render_costs

from .chromium import HeadlessChromium
from .conftest import TOKEN
from .test_im_commands import GatewayChat
from .test_live_console import text_of

def midnight(days_ago: int) -> float:
    day = datetime.date.today() - datetime.timedelta(days=days_ago)
    return time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))


def seed(path: Path) -> None:
    """Four tasks over four days, their model calls and one P1→P2 moment of each kind, written before the tree
    starts on this database (the StateStore then owns it, as after any restart)."""
    now = time.time()
    today = midnight(0) + (now - midnight(0)) / 2          # earlier today, whatever the hour
    database = open_database(str(path))

    def task(at: float, state: str, executor: str, tier: str, run_s: float, total_s: float, why: str) -> Task:
        row = Task.create(description=f"seeded {state}", state=state, executor=executor, tier=tier, kind="general",
                          sender="telegram:42", source="im", created_at=at - total_s, updated_at=at, attempts=1)
        for moved_at, before, after, reason in ((at - total_s, None, "idle", "received from im"),
                                                (at - total_s + 0.5, "idle", "dispatching", why),
                                                (at - run_s, "dispatching", "executing", "MCP call started"),
                                                (at, "executing", state, f"run {state}")):
            TaskEvent.create(task=row, at=moved_at, kind="transition", from_state=before, to_state=after,
                             reason=reason)
        return row

    routine = ("kind general (the text mentions 'x'); executor general (first healthy of general); "
               "tier P1 (the free tier)")
    fast = task(today, "completed", "general", "P1", 4.0, 10.0, routine)
    slow = task(today + 1, "completed", "coder", "P2", 20.0, 30.0, "kind code (kind given by the submitter); executor "
                "coder (first healthy of coder); tier P2 (P1 is cooling down for 30s; the paid tier is within budget)")
    failed = task(midnight(1) + 3600, "failed", "coder", "P2", 2.0, 5.0, routine)
    cancelled = task(midnight(3) + 3600, "cancelled", "general", "P1", 1.0, 2.0, routine)
    for at, row, tier, usd in ((today, fast, "P1", 0), (today, fast, "P1", 0), (today, None, "P1", 0),
                               (today, slow, "P2", 0.30), (today, slow, "P2", 0.25),
                               (midnight(1) + 3600, failed, "P1", 0), (midnight(1) + 3600, None, "P1", 0),
                               (midnight(1) + 3600, failed, "P2", 0.40), (midnight(3) + 3600, cancelled, "P2", 0.10)):
        CostEntry.create(task=row, at=at, tier=tier, model="paid-tier" if usd else "free-tier", route="proxy",
                         tokens_in=10, tokens_out=5, usd=usd)
    SystemEvent.create(at=midnight(1) + 3600, kind="tier_fallback", detail="P1 → P2: P1 rate-limited, cooling down "
                       "for 30s", data=json.dumps({"task_id": failed.id}))
    database.close()


@pytest.fixture
def dashboard_tree(start_tree, write_config, omni_home):
    seed(omni_home / "omni.db")
    tree = start_tree(write_config(budget={"daily_usd": 1.0, "monthly_usd": 20.0}), wait_for_executors=False)
    return tree, tree.ask("gateway", Introspect())["dashboard_url"]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def table(browser: HeadlessChromium, canvas: str) -> dict[str, dict[str, str]]:
    """A chart's own figures, from the table inside its canvas: {day: {series: shown value}}."""
    rows = browser.evaluate(f"""[...document.querySelectorAll('#{canvas} tr')].map(
        (row) => [...row.cells].map((cell) => cell.textContent))""")
    head, *body = rows
    return {row[0]: dict(zip(head[1:], row[1:], strict=True)) for row in body}


def test_the_page_loads_with_the_token_shows_the_figures_and_refreshes_live(dashboard_tree, tmp_path):
    tree, url = dashboard_tree
    today, yesterday = (str(datetime.date.today() - datetime.timedelta(days=n)) for n in (0, 1))
    with HeadlessChromium(tmp_path / "chromium") as browser:
        browser.open(f"{url}?token={TOKEN}&days=7")
        assert browser.evaluate("location.search") == "?days=7", "the token leaves the address bar"
        assert browser.evaluate("document.cookie") == "", "the session cookie is HttpOnly"
        browser.wait_for("document.body.dataset.refreshes >= 1", 20, "the first figures")
        assert browser.text("#card-today") == "$0.5500 of $1.00"
        assert browser.text("#card-month").endswith("of $20.00")
        assert browser.text("#card-calls") == "5 free · 4 paid"
        assert browser.text("#card-moments") == "2"
        assert browser.text("#card-tasks") == "2 completed · 1 failed · 1 cancelled"
        tiers = table(browser, "chart-tier")
        assert len(tiers) == 7 and tiers[today]["P2"] == "$0.5500" and tiers[yesterday]["P2"] == "$0.4000"
        assert tiers[today]["daily cap"] == "$1.0000" and tiers[today]["warn at 80%"] == "$0.8000"
        executors = table(browser, "chart-executor")
        assert executors[today]["coder"] == "$0.5500" and executors[yesterday]["coder"] == "$0.4000"
        assert executors[today]["(no task)"] == "$0.0000"
        calls = table(browser, "chart-calls")
        assert (calls[today]["free"], calls[today]["paid"]) == ("3", "2")
        assert table(browser, "chart-tasks")[yesterday]["failed"] == "1"
        latency = table(browser, "chart-latency")[today]
        assert (latency["p50 created → completed"], latency["p50 last run"]) == ("20.0 s", "12.0 s")
        moments = browser.evaluate("[...document.querySelectorAll('#moments tbody tr')].map((r) => r.innerText)")
        assert len(moments) == 2
        assert "P1 is cooling down for 30s; the paid tier is within budget" in moments[0]
        assert "P1 rate-limited" in moments[1]
        drawn = browser.evaluate("Chart.getChart('chart-tier').data.datasets.map((d) => d.label)")
        assert drawn[:2] == ["P1", "P2"], "the plot itself holds the figures, not only the table"
        shot = browser.screenshot(tmp_path / "dashboard.png")

        tree.directory.tell("state_store", RecordCost(None, "P2", "paid-tier", "proxy", 100, 50, 0.2, "test"))
        browser.wait_for("document.querySelector('#card-today').textContent === '$0.7500 of $1.00'", 15,
                         "the page to show the new paid call without a reload")
        assert browser.text("#card-calls") == "5 free · 5 paid"

        browser.open(f"{url}?days=30")
        browser.wait_for("document.body.dataset.refreshes >= 1", 20, "the 30-day figures")
        assert len(table(browser, "chart-tier")) == 30
        assert browser.text("#periods a.chosen") == "30 days"
    assert shot.stat().st_size > 20_000
    if keep := os.environ.get("OMNI_SCREENSHOTS"):   # a folder to keep it in (docs/dashboard.png was made so)
        shutil.copyfile(shot, Path(keep) / "dashboard.png")
    print(f"\nscreenshot: {shot}")


def test_without_the_token_the_page_and_its_figures_are_refused(dashboard_tree, tmp_path):
    tree, url = dashboard_tree
    with HeadlessChromium(tmp_path / "chromium") as browser:
        browser.open(url)
        assert browser.evaluate("document.title").startswith("401")
        assert browser.evaluate("document.querySelector('#card-today')") is None
        assert browser.evaluate("fetch('/dashboard/figures.json').then((r) => r.status)") == 401
        browser.open(f"{url}?token=wrong-{TOKEN}")
        assert browser.evaluate("document.title").startswith("401")
        assert "$0.55" not in browser.evaluate("document.body.innerText")
    for path in ("", "/figures.json", "/page.js"):
        status, body = get(url + path)
        assert status == 401 and "0.55" not in body
    status, body = get(url + "/figures.json?days=7", TOKEN)
    assert status == 200 and json.loads(body)["budget"]["spent_today_usd"] == pytest.approx(0.55)
    status, body = get(url + "/figures.json?days=week", TOKEN)
    assert status == 400 and "'days': expected a whole number of days from 1 to 366" in body
    mcp_status, _ = get(tree.url)
    assert mcp_status == 401, "the MCP endpoint still demands the bearer header"


def test_cost_and_the_console_print_the_dashboard_url_never_the_token(dashboard_tree):
    tree, url = dashboard_tree
    reply = GatewayChat(tree.url, sender="cli:me").ask("/cost")
    assert reply.endswith(f"Plots: {url} (log in once with ?token= and the gateway token).")
    assert TOKEN not in reply
    panel = text_of(render_costs(gather(tree.directory)))
    assert f"plots: {url}?token=…" in panel.replace("\n", "") and TOKEN not in panel


def test_the_vendored_chart_js_is_the_pinned_release():
    from dashboard.web import CHART_JS_SHA256, FILES
    assert hashlib.sha256(FILES["/dashboard/chart.umd.min.js"].read_bytes()).hexdigest() == CHART_JS_SHA256
