"""`complete` and `stream`: resolve the model, run the request through its provider, relay events,
price the result, and tell the hooks (budgets, ledger) before and after.

One code path serves both methods: providers yield the same events either way, and only `stream`
relays them. Each attempt's upstream call lives inside the request's cancel scope, so cancelling
the request closes the upstream connection.

Must not know: stdin/stdout, MCP, how the ledger stores rows, providers' wire formats.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import msgspec

from sidecar import logs
from sidecar.config import Config
from sidecar.core.assemble import RELAYED, Assembler, ProviderEvent
from sidecar.core.models import ModelRef, parse_model
from sidecar.errors import SidecarError
from sidecar.providers.http import Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.services.pricing import Pricing
from sidecar.wire.base import Usage
from sidecar.wire.chat import Attempt, ChatResult, CompleteParams, StreamEventParams

_log = logs.get_logger("chat")


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


class ChatHooks(Protocol):
    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        """May refuse the request (budget_exceeded) before anything is sent upstream."""

    async def after(self, outcome: Outcome) -> None:
        """Called exactly once per request, whatever happened (shielded from cancellation)."""


class ChatService:
    def __init__(self, providers: ProviderRegistry, pricing: Pricing, config: Config) -> None:
        self.providers = providers
        self.pricing = pricing
        self.config = config
        self.hooks: list[ChatHooks] = []

    def handlers(self) -> dict[str, Handler]:
        return {"complete": self.complete, "stream": self.stream}

    async def complete(self, params: CompleteParams, ctx: CallContext) -> ChatResult:
        return await self.run(params, ctx, stream=False)

    async def stream(self, params: CompleteParams, ctx: CallContext) -> ChatResult:
        return await self.run(params, ctx, stream=True)

    def resolve(self, model: str) -> ModelRef:
        return parse_model(model, self.providers.specs)

    def timeouts(self, params: CompleteParams) -> Timeouts:
        t = self.config.timeouts
        idle = params.timeout_s or t.idle_s
        return Timeouts(connect_s=min(t.connect_s, idle), read_s=idle)

    async def run(self, params: CompleteParams, ctx: CallContext, *, stream: bool) -> ChatResult:
        ref = self.resolve(params.model)
        for hook in self.hooks:
            await hook.before(ref, params)
        started = time.monotonic()
        outcome = Outcome(
            method="stream" if stream else "complete",
            provider=ref.provider,
            model=ref.model,
            status="error",
            tag=params.tag,
            run_id=params.run_id,
        )
        assembler = Assembler()
        try:
            result = await self._attempt(ref, params, ctx, stream, assembler)
            outcome.status = "ok"
            return result
        except SidecarError as exc:
            outcome.error_kind = exc.kind
            raise
        except anyio.get_cancelled_exc_class():
            outcome.status = "cancelled"
            outcome.error_kind = "cancelled"
            raise
        finally:
            outcome.latency_ms = (time.monotonic() - started) * 1000
            if outcome.usage is None and assembler.usage is not None:
                outcome.usage = assembler.usage
                outcome.cost_usd, outcome.pricing_date = self.price(ref, assembler.usage)
            if self.hooks:
                with anyio.CancelScope(shield=True):
                    for hook in self.hooks:
                        try:
                            await hook.after(outcome)
                        except Exception:
                            _log.exception("chat hook failed")

    async def _attempt(
        self, ref: ModelRef, params: CompleteParams, ctx: CallContext, stream: bool, assembler: Assembler
    ) -> ChatResult:
        provider = self.providers.get(ref.provider)
        timeouts = self.timeouts(params)
        events = (provider.stream if stream else provider.complete)(ref.model, params, timeouts)
        started = time.monotonic()
        async with contextlib.aclosing(events):
            await self._pump(events, assembler, ctx if stream else None)
        result = assembler.result(provider=ref.provider, model=ref.model)
        cost_usd, pricing_date = self.price(ref, result.usage)
        return msgspec.structs.replace(
            result,
            cost_usd=cost_usd,
            pricing_date=pricing_date,
            latency_ms=round((time.monotonic() - started) * 1000, 3),
            attempts=[Attempt(provider=ref.provider, model=ref.model, ok=True)],
        )

    @staticmethod
    async def _pump(
        events: AsyncGenerator[ProviderEvent, None], assembler: Assembler, ctx: CallContext | None
    ) -> None:
        if ctx is None:
            async for event in events:
                assembler.add(event)
            return
        request_id = ctx.request_id
        notify = ctx.notify
        for_host: Any = RELAYED
        async for event in events:
            assembler.add(event)
            if isinstance(event, for_host):
                await notify("stream/event", StreamEventParams(request_id=request_id, event=event))

    def price(self, ref: ModelRef, usage: Usage) -> tuple[float | None, str | None]:
        return self.pricing.cost(ref, usage)
