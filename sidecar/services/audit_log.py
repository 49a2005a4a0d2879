"""`audit_log`: reads the audit trail (keys set, deleted and validated, logins, budget changes,
fallbacks and retries, providers switched, endpoints set, config reloads). Rows never hold a
secret: they are written without one and redacted again on the way in (infra.audit).

Must not know: stdin/stdout, SQL.
"""

from __future__ import annotations

import datetime as dt

from sidecar.errors import SidecarError
from sidecar.infra.audit import AuditTrail
from sidecar.redact import redact
from sidecar.services.context import CallContext, Handler
from sidecar.wire.audit import AuditEntry, AuditLogParams, AuditLogResult


def _since(text: str) -> str:
    """An ISO date or time as the trail writes times: UTC, milliseconds, `Z`."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SidecarError(
            "invalid_request",
            f"since: {text!r} is not an ISO 8601 date or time (e.g. 2025-06-01 or 2025-06-01T12:00:00Z).",
            field="since",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    stamp = when.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class AuditLogService:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    def handlers(self) -> dict[str, Handler]:
        return {"audit_log": self.audit_log}

    async def audit_log(self, params: AuditLogParams, ctx: CallContext) -> AuditLogResult:
        since = _since(params.since) if params.since else None
        rows = await self.trail.query(since=since, event=params.kind, limit=params.limit)
        return AuditLogResult(
            entries=[
                AuditEntry(
                    id=r.id,
                    ts=r.ts,
                    event=r.event,
                    outcome=r.outcome,
                    provider=r.provider,
                    detail=redact(r.detail) if r.detail else None,
                )
                for r in rows
            ]
        )
