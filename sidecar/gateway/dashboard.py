"""The dashboard at `GET /`: a page (static files served by the gateway, no CDN) that draws tokens,
cost and requests over time per client key and provider, provider health and recent requests,
from `GET /dashboard/data`.

Who may see it: a browser session opened with a one-time login link (`gateway_status` hands the
host a fresh one each call; it works once, within `LOGIN_TTL_S`), or with a client key posted to
`/login`; scripts may send the client key as a bearer token to `/dashboard/data`. Sessions are an
HttpOnly, SameSite=Strict cookie held in memory.

Must not know: providers, how metrics are kept.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sidecar.wire.base import Empty
from sidecar.wire.gateway import MetricsParams

LOGIN_TTL_S: Final = 600.0
SESSION_TTL_S: Final = 12 * 3600.0
COOKIE: Final = "lsk_dashboard"
RECENT: Final = 50
_STATIC_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
_CSP: Final = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
)
_LOGIN_PAGE: Final = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>llm-sidecar gateway</title></head><body style="font:14px system-ui;margin:40px">
<h1 style="font-size:18px">llm-sidecar gateway</h1>
<p>Open the login link your app shows, or enter a client key.</p>
<form method="post" action="/login"><input name="key" type="password" placeholder="lsk-..." size="50">
<button>Open the dashboard</button></form></body></html>"""


class Dashboard:
    def __init__(self, gateway: Any) -> None:
        self.gw = gateway
        self.logins: dict[str, float] = {}
        self.sessions: dict[str, float] = {}
        self.recent: deque[Any] = deque(maxlen=RECENT)

    # --- who may look -----------------------------------------------------------------------------

    def issue_login(self) -> str:
        now = time.monotonic()
        self.logins = {t: at for t, at in self.logins.items() if now - at < LOGIN_TTL_S}
        token = secrets.token_urlsafe(24)
        self.logins[token] = now
        return token

    def _session_ok(self, request: Request) -> bool:
        token = request.cookies.get(COOKIE)
        if not token:
            return False
        started = self.sessions.get(token)
        return started is not None and time.monotonic() - started < SESSION_TTL_S

    def _open_session(self, to: str = "/") -> Response:
        token = secrets.token_urlsafe(32)
        self.sessions[token] = time.monotonic()
        response = RedirectResponse(to, status_code=303)
        response.set_cookie(COOKIE, token, max_age=int(SESSION_TTL_S), httponly=True, samesite="strict")
        return response

    async def _key_ok(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return False
        return await self.gw.backend.client_keys.authenticate(auth[7:].strip()) is not None

    # --- routes -----------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        login = request.query_params.get("login")
        if login is not None:
            issued = self.logins.pop(login, None)
            if issued is not None and time.monotonic() - issued < LOGIN_TTL_S:
                return self._open_session()
            return HTMLResponse(_LOGIN_PAGE, status_code=401, headers={"content-security-policy": _CSP})
        if not self._session_ok(request):
            return HTMLResponse(_LOGIN_PAGE, status_code=401, headers={"content-security-policy": _CSP})
        return Response(
            _static("dashboard.html"), media_type="text/html", headers={"content-security-policy": _CSP}
        )

    async def login(self, request: Request) -> Response:
        # A urlencoded form of one field; parsed here (starlette's form parser needs python-multipart).
        raw = await request.body()
        if len(raw) > 4096:
            return Response(status_code=413)
        key = (parse_qs(raw.decode("latin-1")).get("key") or [""])[0]
        if key and await self.gw.backend.client_keys.authenticate(key) is not None:
            return self._open_session()
        return HTMLResponse(_LOGIN_PAGE, status_code=401, headers={"content-security-policy": _CSP})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _static_names():
            return Response(status_code=404)
        suffix = name[name.rfind(".") :]
        return Response(
            _static(name),
            media_type=_STATIC_TYPES.get(suffix, "application/octet-stream"),
            headers={"cache-control": "max-age=3600"},
        )

    async def data(self, request: Request) -> Response:
        if not (self._session_ok(request) or await self._key_ok(request)):
            return JSONResponse({"error": {"message": "Log in first.", "type": "authentication_error"}}, 401)
        wanted = request.query_params.get("range", "24h")
        span = wanted if wanted in ("1h", "24h", "7d", "30d") else "24h"
        metrics = self.gw.backend.handlers["metrics"]

        async def series(metric: str, group_by: str | None = None) -> Any:
            params = msgspec.convert({"range": span, "metric": metric, "group_by": group_by}, MetricsParams)
            return await metrics(params, _Quiet())

        requests = await series("requests")
        tokens = await series("tokens")
        cost = await series("cost")
        success = await series("success_rate")
        by_provider = await series("requests", "provider")
        success_by_provider = await series("success_rate", "provider")
        providers_listed = await self.gw.backend.handlers["list_providers"](Empty(), _Quiet())
        counts = {s.key: sum(v or 0 for _, v in s.points) for s in by_provider.series}
        weights = {s.key: s.points for s in by_provider.series}
        rates = {s.key: _weighted(s.points, weights.get(s.key, [])) for s in success_by_provider.series}
        providers = [
            {
                "id": p.id,
                "circuit": p.circuit or "closed",
                "requests": counts.get(p.id, 0),
                "success_rate": rates.get(p.id),
            }
            for p in providers_listed.providers
        ]
        total_requests = _sum(requests)
        body = {
            "range": span,
            "totals": {
                "requests": total_requests,
                "tokens": _sum(tokens),
                "cost_usd": round(_sum(cost), 10),
                "success_rate": _weighted(success.series[0].points, requests.series[0].points)
                if success.series and requests.series
                else None,
            },
            "requests": _builtins(requests),
            "tokens_by_client": _builtins(await series("tokens", "client")),
            "cost_by_provider": _builtins(await series("cost", "provider")),
            "requests_by_provider": _builtins(by_provider),
            "providers": providers,
            "recent": msgspec.to_builtins(list(reversed(self.recent))),
        }
        return JSONResponse(body, headers={"cache-control": "no-store"})


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _sum(result: Any) -> float:
    return float(sum(v or 0 for s in result.series for _, v in s.points))


def _weighted(rates: list[Any], counts: list[Any]) -> float | None:
    """The success rate over a range: each step's rate weighted by its requests."""
    by_step = {t: v or 0 for t, v in counts}
    num = den = 0.0
    for t, rate in rates:
        if rate is not None:
            num += rate * by_step.get(t, 0)
            den += by_step.get(t, 0)
    return round(num / den, 6) if den else None


def _static_names() -> frozenset[str]:
    return frozenset(p.name for p in resources.files("sidecar.gateway").joinpath("static").iterdir())


def _static(name: str) -> bytes:
    return resources.files("sidecar.gateway").joinpath("static").joinpath(name).read_bytes()


class _Quiet:
    request_id = "dashboard"

    async def notify(self, method: str, params: Any) -> None:
        return None
