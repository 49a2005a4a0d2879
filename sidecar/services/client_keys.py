"""Client keys of the local gateway: `client_key_create`, `client_key_list`, `client_key_update`,
`client_key_rotate`, `client_key_delete`, and the checks the gateway makes with them.

A key is `lsk-` + base64url of 32 random bytes, shown once at creation (and at rotation); only its
SHA-256 hash is stored, with its first characters for recognising it in a list. Every change goes
to the audit trail (never the key). `authenticate` looks a presented key up by hash in an
in-memory copy of the table, reloaded after each change and, while keys are in use, re-read in the
background every `TABLE_TTL_S` (`core.kept`), so that a request does not wait for the database.

Must not know: HTTP, the gateway's routes, how the table is stored (infra.client_keys is the seam).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime as dt
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from sidecar import logs
from sidecar.core.counters import Window
from sidecar.core.kept import Kept
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

if TYPE_CHECKING:
    from sidecar.infra.coordination import Coordinator

PREFIX: Final = "lsk-"
TABLE_TTL_S: Final = 2.0
"""The oldest the keys read from storage may be when used (another replica's change is seen within
this time; this process's own at once); they are read again ahead of that while in use."""
MISS_REREAD_S: Final = 0.25
"""A presented key not in the table re-reads it, at most this often (a key just made elsewhere)."""
WINDOW_S: Final = 60.0

_log = logs.get_logger("client_keys")
SHOWN_CHARS: Final = 10  # "lsk-" and six characters of the key: enough to tell keys apart
TOUCH_EVERY_S: Final = 30.0
KNOWN_MAX: Final = 1024  # secrets remembered per table read: the keys in use, not a flood of guesses


class ClientUsage(Protocol):
    """The ledger's record of each key's usage, which is kept by the key's name."""

    async def client_totals(self) -> dict[str, tuple[int, float]]:
        """Requests and USD per client key name."""
        ...

    async def rename_client(self, old: str, new: str) -> int:
        """Carry a renamed key's usage over to its new name; answers how many rows moved."""
        ...


def deleted_name(rec: ClientKeyRecord) -> str:
    """What the ledger calls a deleted key's usage: its name, marked, with its id."""
    return f"{rec.name} (deleted, {rec.id})"


def new_secret() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _windows(rec: ClientKeyRecord) -> list[tuple[Window, float]]:
    """The key's per-minute windows with what a request is charged on admission: one request;
    no tokens yet (they are charged when known), but a key in token debt waits."""
    limits = rec.limits or {}
    out: list[tuple[Window, float]] = []
    rpm, tpm = limits.get("requests_per_minute"), limits.get("tokens_per_minute")
    if rpm:
        out.append((Window(f"client:{rec.id}:requests", float(rpm), WINDOW_S), 1.0))
    if tpm:
        out.append((Window(f"client:{rec.id}:tokens", float(tpm), WINDOW_S), 0.0))
    return out


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _now_iso() -> str:
    return _iso(time.time())


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
    def __init__(
        self,
        store: ClientKeyStore,
        audit: Audit,
        usage: ClientUsage | None = None,
        coordinator: Coordinator | None = None,
        renamed: Sequence[Callable[[str, str], None]] = (),
    ) -> None:
        if coordinator is None:
            from sidecar.infra.coordination import LocalCoordinator

            coordinator = LocalCoordinator()
        self.coordinator = coordinator
        self.store = store
        self.audit = audit
        self._usage = usage
        self._renamed = renamed  # records in memory kept by a key's name (metrics): they follow
        # Re-read now and then, ahead of the requests: another replica (or process) may have
        # created, changed or deleted a key. While the database is away the last table serves.
        self._table_kept: Kept[dict[str, ClientKeyRecord]] = Kept(
            self._read_table, ttl_s=TABLE_TTL_S, last_on=(SidecarError,), name="client keys"
        )
        self._used: dict[str, float] = {}  # key id -> when it was last used (time.time())
        # The secrets presented that matched an enabled key of `_known_in` (the table as read):
        # a request that presents one again is not hashed and looked up again.
        self._known: dict[str, ClientKeyRecord] = {}
        self._known_in: dict[str, ClientKeyRecord] | None = None
        self._by_name: dict[str, ClientKeyRecord] = {}  # the table as read, by name
        self._by_name_of: dict[str, ClientKeyRecord] | None = None
        self._last_touch = 0.0
        self._touching: asyncio.Task[None] | None = None

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
        totals = await self._usage.client_totals() if self._usage is not None else {}
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
        updated = rec.changed(**changes)
        try:
            await self.store.update(updated)
        except NameTaken:
            raise invalid_request(
                f"A client key named {updated.name!r} exists already.", field="rename"
            ) from None
        if updated.name != rec.name:
            # Its usage to date and its budgets' spend go with it: the same key, a new name.
            await self._moved(rec.name, updated.name)
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
        if deleted:
            # Its usage stays in the ledger under a name no key has, so a key made later with
            # this name starts from nothing (its budgets too).
            await self._moved(rec.name, deleted_name(rec))
        await self._changed()
        await self.audit.record("client_key_deleted", None, "ok", rec.name)
        return ClientKeyDeleteResult(deleted=deleted)

    async def _moved(self, old: str, new: str) -> None:
        """What is kept by the key's name (the ledger's rows, the metrics in memory) goes to `new`."""
        if self._usage is not None:
            await self._usage.rename_client(old, new)
        for follow in self._renamed:
            follow(old, new)

    # --- what the gateway asks --------------------------------------------------------------------

    async def count(self) -> int:
        return len(await self._table())

    async def authenticate(self, secret: str) -> ClientKeyRecord | None:
        """The enabled key whose hash matches, else None."""
        if not secret.startswith(PREFIX):
            return None
        table = await self._table()
        if table is not self._known_in:  # re-read or changed: what it said of a secret may not hold
            self._known, self._known_in = {}, table
        rec = self._known.get(secret)
        if rec is None:
            rec = await self._look_up(secret)
            if rec is None or not rec.enabled:
                return None
            if len(self._known) < KNOWN_MAX and self._known_in is self._table_kept.value:
                self._known[secret] = rec
        self._used[rec.id] = time.time()
        if self._touching is None and time.monotonic() - self._last_touch >= TOUCH_EVERY_S:
            # Written off the request's path, in a context of its own (not the request's).
            self._touching = asyncio.get_running_loop().create_task(
                self._touch_in_background(), context=contextvars.Context()
            )
        return rec

    async def _look_up(self, secret: str) -> ClientKeyRecord | None:
        # Looked up by its SHA-256: timing can tell a caller about the hash of its own guess at
        # most, never about a stored secret, and a lookup stays one step however many keys exist.
        # (`_known`, keyed by secrets that matched, compares a guess with one of them only when
        # their 64-bit string hashes, randomised per process, are equal.)
        wanted = digest(secret)
        for fresh_within_s in (TABLE_TTL_S, MISS_REREAD_S):  # a key unknown here: made elsewhere?
            rec = (await self._table(fresh_within_s=fresh_within_s)).get(wanted)
            if rec is not None:
                return rec
        return None

    async def admit(self, rec: ClientKeyRecord) -> float | None:
        """None when the key's per-minute limits let a request through now, else seconds to wait.
        The windows are the coordinator's (shared by every replica with Redis): requests are
        charged one each, tokens afterwards (`spent_tokens`), a key in token debt waits."""
        charges = _windows(rec)
        if not charges:
            return None
        admission = await self.coordinator.acquire(charges)
        return None if admission.allowed else max(admission.retry_after_s, 0.001)

    async def spent_tokens(self, rec: ClientKeyRecord, tokens: int) -> None:
        charges = [(w, float(tokens)) for w, _ in _windows(rec) if w.key.endswith(":tokens")]
        if charges and tokens > 0:
            await self.coordinator.adjust(charges)

    async def limits_for(self, name: str) -> tuple[float | None, float | None]:
        """The (daily, monthly) USD limits of the key called `name` (as last read)."""
        table = await self._table()
        if self._by_name_of is not table:
            self._by_name = {r.name: r for r in table.values()}
            self._by_name_of = table
        rec = self._by_name.get(name)
        return (rec.daily_usd, rec.monthly_usd) if rec is not None else (None, None)

    # --- internals --------------------------------------------------------------------------------

    async def _table(self, *, fresh_within_s: float = TABLE_TTL_S) -> dict[str, ClientKeyRecord]:
        return await self._table_kept.get(fresh_within_s=fresh_within_s)

    async def _read_table(self) -> dict[str, ClientKeyRecord]:
        return {r.hash: r for r in await self.store.all()}

    async def _changed(self) -> None:
        self._table_kept.forget()
        await self._table()

    async def aclose(self) -> None:
        """Stop re-reading the table in the background, and write the `last_used` not written yet
        (the storage is about to close)."""
        await self._table_kept.aclose()
        if self._touching is not None:
            await asyncio.wait([self._touching])
        await self._flush_touches(force=True)

    async def _find(self, ref: ClientKeyRef) -> ClientKeyRecord:
        if ref.id is None and ref.name is None:
            raise invalid_request("Name the client key by `id` or `name`.", field="id")
        for rec in await self.store.all():
            if (ref.id is not None and rec.id == ref.id) or (ref.id is None and rec.name == ref.name):
                return rec
        which = f"id {ref.id!r}" if ref.id is not None else f"name {ref.name!r}"
        raise SidecarError("invalid_request", f"No client key has {which}.", field="id" if ref.id else "name")

    async def _touch_in_background(self) -> None:
        try:
            await self._flush_touches()
        except Exception:
            _log.exception("writing when client keys were last used failed")
        finally:
            self._touching = None

    async def _flush_touches(self, *, force: bool = False) -> None:
        # `last_used` is written at most every TOUCH_EVERY_S, not on every request.
        now = time.monotonic()
        if not self._used or (not force and now - self._last_touch < TOUCH_EVERY_S):
            return
        used, self._used = self._used, {}
        self._last_touch = now
        try:
            await self.store.touch({key_id: _iso(at) for key_id, at in used.items()})
        except SidecarError:  # the database away: `last_used` waits for the next write
            self._used = {**used, **self._used}
