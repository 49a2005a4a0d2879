"""Client keys of the local gateway: `client_key_create`, `client_key_list`, `client_key_update`,
`client_key_rotate`, `client_key_delete`, and the checks the gateway makes with them.

A key is `lsk-` + base64url of 32 random bytes, shown once at creation (and at rotation); only its
SHA-256 hash is stored, with its first characters for recognising it in a list. Every change goes
to the audit trail (never the key). `authenticate` looks a presented key up by hash in an
in-memory copy of the table, reloaded after each change.

Must not know: HTTP, the gateway's routes, how the table is stored (infra.client_keys is the seam).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import msgspec

from sidecar.core.client_access import MinuteWindow
from sidecar.errors import SidecarError, invalid_request
from sidecar.infra.audit import Audit
from sidecar.infra.client_keys import ClientKeyRecord, ClientKeyStore, NameTaken

__all__ = ["ClientKeyRecord", "ClientKeyService", "digest", "new_secret"]
from sidecar.services.context import CallContext, Handler
from sidecar.wire.base import Empty
from sidecar.wire.gateway import (
    ClientKeyCreateParams,
    ClientKeyCreateResult,
    ClientKeyDeleteResult,
    ClientKeyInfo,
    ClientKeyListResult,
    ClientKeyRef,
    ClientKeyUpdateParams,
    ClientKeyUpdateResult,
    ClientLimits,
)

PREFIX: Final = "lsk-"
SHOWN_CHARS: Final = 10  # "lsk-" and six characters of the key: enough to tell keys apart
TOUCH_EVERY_S: Final = 30.0

Totals = Callable[[], Awaitable[dict[str, tuple[int, float]]]]
"""Requests and USD per client key name, from the ledger."""


def new_secret() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _info(rec: ClientKeyRecord, totals: dict[str, tuple[int, float]] | None = None) -> ClientKeyInfo:
    requests, cost = (totals or {}).get(rec.name, (0, 0.0))
    return ClientKeyInfo(
        id=rec.id,
        name=rec.name,
        prefix=rec.prefix,
        allow=list(rec.allow),
        enabled=rec.enabled,
        created=rec.created,
        router=rec.router,
        daily_usd=rec.daily_usd,
        monthly_usd=rec.monthly_usd,
        limits=msgspec.convert(rec.limits, ClientLimits) if rec.limits else None,
        last_used=rec.last_used,
        requests=requests,
        cost_usd=round(cost, 10),
    )


def _limits(value: ClientLimits | None) -> dict[str, Any] | None:
    if value is None:
        return None
    built = msgspec.to_builtins(value)
    return built if built else None


class ClientKeyService:
    def __init__(self, store: ClientKeyStore, audit: Audit, totals: Totals | None = None) -> None:
        self.store = store
        self.audit = audit
        self._totals = totals
        self._by_hash: dict[str, ClientKeyRecord] | None = None
        self._windows: dict[str, MinuteWindow] = {}
        self._lock = anyio.Lock()
        self._used: dict[str, str] = {}
        self._last_touch = 0.0

    def handlers(self) -> dict[str, Handler]:
        return {
            "client_key_create": self.create,
            "client_key_list": self.list,
            "client_key_update": self.update,
            "client_key_rotate": self.rotate,
            "client_key_delete": self.delete,
        }

    # --- methods ----------------------------------------------------------------------------------

    async def create(self, params: ClientKeyCreateParams, ctx: CallContext) -> ClientKeyCreateResult:
        secret = new_secret()
        rec = ClientKeyRecord(
            id=uuid.uuid4().hex[:16],
            name=params.name.strip(),
            hash=digest(secret),
            prefix=secret[:SHOWN_CHARS],
            allow=tuple(params.allow or ()),
            router=params.router,
            daily_usd=params.daily_usd,
            monthly_usd=params.monthly_usd,
            limits=_limits(params.limits),
            enabled=True,
            created=_now_iso(),
        )
        try:
            await self.store.insert(rec)
        except NameTaken:
            raise invalid_request(f"A client key named {rec.name!r} exists already.", field="name") from None
        await self._changed()
        await self.audit.record("client_key_created", None, "ok", f"{rec.name} ({rec.prefix}…)")
        return ClientKeyCreateResult(key=secret, info=_info(rec))

    async def list(self, params: Empty, ctx: CallContext) -> ClientKeyListResult:
        await self._flush_touches(force=True)
        totals = await self._totals() if self._totals is not None else {}
        return ClientKeyListResult(keys=[_info(r, totals) for r in await self.store.all()])

    async def update(self, params: ClientKeyUpdateParams, ctx: CallContext) -> ClientKeyUpdateResult:
        rec = await self._find(ClientKeyRef(id=params.id, name=params.name))
        changes: dict[str, Any] = {}
        if params.rename is not None:
            changes["name"] = params.rename.strip()
        if params.enabled is not None:
            changes["enabled"] = params.enabled
        if params.allow is not None:
            changes["allow"] = tuple(params.allow)
        if params.router is not msgspec.UNSET:
            changes["router"] = params.router
        if params.daily_usd is not msgspec.UNSET:
            changes["daily_usd"] = params.daily_usd
        if params.monthly_usd is not msgspec.UNSET:
            changes["monthly_usd"] = params.monthly_usd
        if params.limits is not msgspec.UNSET:
            changes["limits"] = _limits(params.limits)
            self._windows.pop(rec.id, None)
        updated = rec.changed(**changes)
        try:
            await self.store.update(updated)
        except NameTaken:
            raise invalid_request(
                f"A client key named {updated.name!r} exists already.", field="rename"
            ) from None
        await self._changed()
        await self.audit.record(
            "client_key_updated", None, "ok", f"{updated.name}: {', '.join(sorted(changes))}"
        )
        return ClientKeyUpdateResult(info=_info(updated))

    async def rotate(self, params: ClientKeyRef, ctx: CallContext) -> ClientKeyCreateResult:
        rec = await self._find(params)
        secret = new_secret()
        updated = rec.changed(hash=digest(secret), prefix=secret[:SHOWN_CHARS])
        await self.store.update(updated)
        await self._changed()
        await self.audit.record("client_key_rotated", None, "ok", f"{rec.name} ({updated.prefix}…)")
        return ClientKeyCreateResult(key=secret, info=_info(updated))

    async def delete(self, params: ClientKeyRef, ctx: CallContext) -> ClientKeyDeleteResult:
        rec = await self._find(params)
        deleted = await self.store.delete(rec.id)
        await self._changed()
        self._windows.pop(rec.id, None)
        await self.audit.record("client_key_deleted", None, "ok", rec.name)
        return ClientKeyDeleteResult(deleted=deleted)

    # --- what the gateway asks --------------------------------------------------------------------

    async def count(self) -> int:
        return len(await self._table())

    async def authenticate(self, secret: str) -> ClientKeyRecord | None:
        """The enabled key whose hash matches, else None."""
        if not secret.startswith(PREFIX):
            return None
        table = await self._table()
        wanted = digest(secret)
        for known, rec in table.items():
            if hmac.compare_digest(known, wanted):
                if not rec.enabled:
                    return None
                self._used[rec.id] = _now_iso()
                await self._flush_touches()
                return rec
        return None

    def admit(self, rec: ClientKeyRecord) -> float | None:
        """None when the key's per-minute limits let a request through now, else seconds to wait."""
        if not rec.limits:
            return None
        window = self._windows.get(rec.id)
        if window is None:
            window = self._windows[rec.id] = MinuteWindow(
                requests_per_minute=rec.limits.get("requests_per_minute"),
                tokens_per_minute=rec.limits.get("tokens_per_minute"),
            )
        return window.admit(time.monotonic())

    def spent_tokens(self, rec: ClientKeyRecord, tokens: int) -> None:
        window = self._windows.get(rec.id)
        if window is not None:
            window.spend(time.monotonic(), tokens)

    # --- internals --------------------------------------------------------------------------------

    async def _table(self) -> dict[str, ClientKeyRecord]:
        if self._by_hash is None:
            async with self._lock:
                if self._by_hash is None:
                    self._by_hash = {r.hash: r for r in await self.store.all()}
        return self._by_hash

    async def _changed(self) -> None:
        self._by_hash = None
        await self._table()

    async def _find(self, ref: ClientKeyRef) -> ClientKeyRecord:
        if ref.id is None and ref.name is None:
            raise invalid_request("Name the client key by `id` or `name`.", field="id")
        for rec in await self.store.all():
            if (ref.id is not None and rec.id == ref.id) or (ref.id is None and rec.name == ref.name):
                return rec
        which = f"id {ref.id!r}" if ref.id is not None else f"name {ref.name!r}"
        raise SidecarError("invalid_request", f"No client key has {which}.", field="id" if ref.id else "name")

    async def _flush_touches(self, *, force: bool = False) -> None:
        # `last_used` is written at most every TOUCH_EVERY_S, not on every request.
        now = time.monotonic()
        if not self._used or (not force and now - self._last_touch < TOUCH_EVERY_S):
            return
        used, self._used = self._used, {}
        self._last_touch = now
        await self.store.touch(used)
