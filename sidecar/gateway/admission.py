"""Who may run what, now: the client key a request presents (401), the model it names placed
(404), the key's permission for it (403), its per-minute limits and its daily and monthly budgets
(429 with the seconds until the limit lifts).

Must not know: HTTP framing (it reads the ASGI scope's headers only), providers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping
from typing import Any

from sidecar.core.client_access import allowed
from sidecar.errors import SidecarError
from sidecar.gateway.backend import Backend
from sidecar.gateway.errors import HttpError
from sidecar.services.client_keys import ClientKeyRecord


def presented_key(scope: MutableMapping[str, Any]) -> str | None:
    """`Authorization: Bearer <key>`, else `x-api-key` (Anthropic's SDK), else None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
        elif name == b"x-api-key":
            return str(value.decode("latin-1").strip())
    return None


async def authenticate(backend: Backend, scope: MutableMapping[str, Any]) -> ClientKeyRecord:
    keys = backend.client_keys
    presented = presented_key(scope)
    if not presented:
        hint = "" if await keys.count() else " No client key exists yet: create one with client_key_create."
        raise HttpError(
            401, "invalid_api_key", "A client key is required (Authorization: Bearer lsk-...)." + hint
        )
    key = await keys.authenticate(presented)
    if key is None:
        raise HttpError(401, "invalid_api_key", "The client key is not valid, or it is disabled.")
    return key


async def place(backend: Backend, key: ClientKeyRecord, requested: str) -> tuple[str, str]:
    """The model to run (`provider:model` or `router:<name>`) and the name asked for (the key's
    router when the request says `default` or nothing)."""
    wanted = requested.strip()
    if wanted in ("", "default") and key.router:
        wanted = key.router
    try:
        return await backend.resolve(wanted), wanted
    except SidecarError as exc:
        raise HttpError(404, "model_not_found", exc.message, param="model") from None


def check_allowed(key: ClientKeyRecord, model: str, wanted: str) -> None:
    if not (allowed(key.allow, model) or allowed(key.allow, wanted)):
        raise HttpError(403, "model_not_allowed", f"This client key may not use {model}.", param="model")


async def admit(backend: Backend, key: ClientKeyRecord) -> None:
    """Raises 429 when the key's per-minute limits or its budgets stop a request now."""
    wait = await backend.client_keys.admit(key)
    if wait is not None:
        raise HttpError(
            429, "rate_limited", f"This client key's per-minute limit is spent; retry in {wait:.0f}s.", wait
        )
    if key.daily_usd is None and key.monthly_usd is None:
        return
    today, month = await backend.client_spend(key.name)
    for limit, spent, period, retry in (
        (key.daily_usd, today, "daily", seconds_to_next_day()),
        (key.monthly_usd, month, "monthly", seconds_to_next_month()),
    ):
        if limit is not None and spent >= limit:
            message = f"This client key's {period} budget of ${limit:g} is spent (${spent:.4f})."
            raise HttpError(429, "budget_exceeded", message, retry)


def seconds_to_next_day() -> float:
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


def seconds_to_next_month() -> float:
    now = dt.datetime.now(dt.UTC)
    first = (now.replace(day=28) + dt.timedelta(days=4)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    return (first - now).total_seconds()
