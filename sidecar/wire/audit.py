"""Wire types of `audit_log`.

Must not know: where the audit trail is stored, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from sidecar.wire.base import Params, Wire


class AuditLogParams(Params):
    """`since`: an ISO 8601 date or time (UTC unless it says otherwise); `kind`: one event name
    (`key_set`, `key_deleted`, `key_validated`, `oauth_completed`, `oauth_failed`, `budget_set`,
    `budget_cleared`, `fallback`, `retry`, `provider_enabled`, `provider_disabled`, `endpoint_set`,
    `endpoint_deleted`, `config_reloaded`, ...); newest first, at most `limit`."""

    since: str | None = None
    kind: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class AuditEntry(Wire):
    id: int
    ts: str
    event: str
    outcome: str
    provider: str | None = None
    detail: str | None = None


class AuditLogResult(Wire):
    entries: list[AuditEntry]
