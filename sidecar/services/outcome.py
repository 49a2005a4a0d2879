"""What one model request came to (`Outcome`), and the hooks the chat and embedding services tell
of it: before sending (a budget may refuse) and once it is over (the ledger, budgets, metrics).

Its own module so that what keeps the books depends on this record, not on the chat service.

Must not know: providers, the protocol, how a hook stores what it is told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.core.models import ModelRef
from sidecar.errors import SidecarError
from sidecar.wire.base import ZERO_USAGE, Usage
from sidecar.wire.chat import Attempt, CompleteParams


@dataclass(slots=True)
class Outcome:
    """What happened to one request, for the hooks: every field a ledger row needs."""

    method: str
    provider: str
    model: str
    status: str  # "ok", "error", "cancelled"
    usage: Usage | None = None
    cost_usd: float | None = None
    pricing_date: str | None = None
    latency_ms: float = 0.0
    error_kind: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    tag: str | None = None
    run_id: str | None = None
    usage_estimated: bool = False
    reason: str | None = None  # why a request was refused before sending
    cache_hit: bool = False  # answered from the response cache
    saved_usd: float | None = None  # what the cached answer cost when it was made
    router: str | None = None  # the router a `router:<name>` request was expanded from


class ChatHooks(Protocol):
    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        """May refuse the request (budget_exceeded) before anything is sent upstream."""

    async def after(self, outcome: Outcome) -> None:
        """Called exactly once per request, whatever happened (shielded from cancellation); under
        the gateway, once the answer is sent (`ChatService.after_reply`)."""


async def run_before_hooks(
    hooks: Sequence[ChatHooks], ref: ModelRef, params: CompleteParams, outcome: Outcome
) -> None:
    """Every hook's check before sending; a refusal (a budget, a limit) is recorded in `outcome`
    with its reason and no usage, then raised."""
    try:
        for hook in hooks:
            await hook.before(ref, params)
    except SidecarError as exc:
        outcome.status, outcome.reason = "refused", exc.message
        outcome.usage, outcome.cost_usd = ZERO_USAGE, 0.0
        raise
