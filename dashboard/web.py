"""The dashboard's HTTP side, mounted on the gateway's own server (loopback) in front of its MCP app.

Everything under `/dashboard` needs the gateway's token, in one of two forms:
- `Authorization: Bearer <token>`, as MCP clients send it;
- a session cookie, for a browser: `/dashboard?token=<token>` answers 303 to the same URL without the token
  and sets `omni_dashboard` (HttpOnly, SameSite=Strict, Path=/dashboard), so the token leaves the address bar
  and the history. The cookie is an HMAC of the token, not the token: it opens the dashboard, not the MCP API.
Anything else gets 401 and no figures. Every other path goes on to the gateway's app unchanged.

>>> app = DashboardApp(BearerAuth(mcp_app, token), token, DashboardSource(db_path, caps, ("P2",)))
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from .figures import PERIODS, Caps, NoDatabase, read_figures

log = logging.getLogger(__name__)

PATH = "/dashboard"
COOKIE = "omni_dashboard"
MAX_DAYS = 366
HERE = Path(__file__).parent
FILES = {f"{PATH}/chart.umd.min.js": HERE / "static" / "chart.umd.min.js",   # Chart.js 4.6.1, vendored (MIT)
         f"{PATH}/page.js": HERE / "page.js", f"{PATH}/page.css": HERE / "page.css"}
CHART_JS_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"   # npm chart.js@4.6.1
HEADERS = {"cache-control": "no-store", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
           "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}


@dataclass(frozen=True, slots=True)
class DashboardSource:
    database_path: Path
    caps: Caps
    paid_tiers: tuple[str, ...] = ()
    refresh_s: float = 5.0          # how often the open page polls for new figures


class DashboardApp:
    def __init__(self, app: Any, token: str, source: DashboardSource):
        self._app = app
        self._bearer = f"Bearer {token}".encode()
        self._token = token.encode()
        self._session = hmac.new(token.encode(), b"omni-dashboard-session", hashlib.sha256).hexdigest()
        self._source = source

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PATH or path.startswith(PATH + "/")):
            await self._app(scope, receive, send)
            return
        response = await self._answer(Request(scope, receive))
        response.headers.update(HEADERS)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return JSONResponse({"error": f"{request.method} is not served under {PATH}"}, 405)
        given = request.query_params.get("token")
        if given is not None:
            return self._log_in(request, given)
        if not self._authorised(request):
            return _refused()
        path = request.url.path
        if path in (PATH, PATH + "/"):
            return HTMLResponse((HERE / "page.html").read_text(encoding="utf-8"))
        if path == f"{PATH}/figures.json":
            return await self._figures(request)
        if path in FILES:
            return FileResponse(FILES[path])
        return JSONResponse({"error": f"nothing at {path}; the dashboard is {PATH}"}, 404)

    def _log_in(self, request: Request, given: str) -> Response:
        """A login URL: a right token becomes the session cookie, and the token leaves the address."""
        if not hmac.compare_digest(given.encode(), self._token):
            return _refused()
        rest = [(key, value) for key, value in request.query_params.multi_items() if key != "token"]
        response = RedirectResponse(request.url.path + ("?" + urlencode(rest) if rest else ""), 303)
        response.set_cookie(COOKIE, self._session, httponly=True, samesite="strict", path=PATH)
        return response

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "").encode()
        cookie = request.cookies.get(COOKIE, "").encode()
        return hmac.compare_digest(header, self._bearer) or hmac.compare_digest(cookie, self._session.encode())

    async def _figures(self, request: Request) -> Response:
        raw = request.query_params.get("days", str(PERIODS[0]))
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_DAYS):
            return JSONResponse({"error": f"'days': expected a whole number of days from 1 to {MAX_DAYS} "
                                          f"(the page offers {', '.join(map(str, PERIODS))}), got {raw!r}"}, 400)
        source = self._source
        try:   # a thread: the scan must not hold up the gateway's loop, which serves MCP calls too
            figures = await asyncio.to_thread(read_figures, source.database_path, source.caps, source.paid_tiers,
                                              int(raw))
        except NoDatabase as missing:
            return JSONResponse({"error": str(missing)}, 503)
        figures["refresh_s"] = source.refresh_s
        return Response(json.dumps(figures, ensure_ascii=False), media_type="application/json")


def _refused() -> Response:
    return HTMLResponse("<!doctype html><title>401 · Omni-Orchestrator</title><h1>401: the gateway's token is "
                        "needed</h1><p>Open <code>/dashboard?token=…</code> with the gateway's bearer token "
                        "(<code>$OMNI_GATEWAY_TOKEN</code>, or <code>$OMNI_HOME/gateway.token</code> in the sandbox), "
                        "or send it as <code>Authorization: Bearer …</code>.</p>", 401,
                        headers={"www-authenticate": 'Bearer realm="omni"'})


def dashboard_url(gateway_url: str) -> str:
    """The page's address beside the gateway's MCP endpoint (same host and port)."""
    scheme, rest = gateway_url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}{PATH}"
