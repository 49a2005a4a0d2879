"""`complete` and `stream`: resolve the model, run the request through its provider, relay events,
price the result, and tell the hooks (budgets, ledger) before and after.

One code path serves both methods: both stream from the upstream and assemble the same events,
and only `stream` relays them. Streaming `complete` too means cancelling it closes a connection
the upstream notices at once (llama.cpp only notices a disconnect in a stream; it went on
generating thousands of tokens for a cancelled non-streamed call), and the first-byte and idle
limits bound both methods alike. A face may ask otherwise (`services.context.asked_whole`): the
gateway sends a request its client did not stream as a non-streamed call, as the client would
have sent it to the provider itself, where the provider takes one (`Provider.takes_whole_call`).
Each attempt's upstream call lives inside the request's cancel scope, so cancelling the request
closes the upstream connection. The call itself is
`services.upstream_call`: a model the upstream refuses to stream (OpenAI's o3 and gpt-5 for an
organization that is not verified) is asked again at once without streaming, and for an hour
after that straight away (`core.refusals`), `stream` then relaying the whole answer when it is
complete; a sampling parameter the model refuses (`temperature` or `top_p` for OpenAI's
reasoning models) is left out the same way.

Resilience: a request tries its model, then each fallback (the request's `fallback`, else
config.toml's), skipping a provider whose circuit is open, waiting for client-side limits, and
retrying transient failures with backoff (`core.retry`), all within the total time limit. Once a
token has reached the host nothing is retried: the error is reported. Every try is listed in the
result's `attempts`; `stream` announces each new try with an `attempt` event.

Must not know: stdin/stdout, MCP, how the ledger stores rows, providers' wire formats.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

import anyio
import msgspec

from sidecar import logs
from sidecar.config import Config
from sidecar.core import defaults, response_cache, retry, tokens
from sidecar.core.assemble import Assembler
from sidecar.core.limiter import Limiter, Permit
from sidecar.core.models import ModelRef, parse_model
from sidecar.core.router import router_name
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers.base import Provider, ProviderSpec
from sidecar.providers.errors import display
from sidecar.providers.http import Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services import loop
from sidecar.services.context import CallContext, Handler, after_reply, asked_whole
from sidecar.services.limits import Resilience
from sidecar.services.outcome import ChatHooks, Outcome, run_before_hooks
from sidecar.services.pricing import Pricing
from sidecar.services.response_cache import Hit, ResponseCache
from sidecar.services.upstream_call import UpstreamCaller, estimate_usage
from sidecar.wire.base import ZERO_USAGE, Usage
from sidecar.wire.chat import (
    Attempt,
    AttemptEvent,
    ChatResult,
    CompleteParams,
    StreamEventParams,
)

_log = logs.get_logger("chat")
_RESOLVED_MAX: Final = 1024  # model strings remembered (any string a host sends could be one)


class _Skip(Exception):
    """The provider was not tried (circuit open, client-side limit): move on to the next model."""

    def __init__(self, error: SidecarError) -> None:
        super().__init__(error.message)
        self.error = error


class _Tries:
    """The bookkeeping of one request across its attempts."""

    __slots__ = ("assembler", "attempts", "on_start", "pending", "ref", "sent", "usage_estimated")

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.assembler: Assembler | None = None
        self.attempts: list[Attempt] = []
        self.pending = False
        self.usage_estimated = False
        self.on_start: Callable[[], None] | None = None  # called when the answer starts flowing
        self.sent = False  # a try reached a provider (not only the sidecar's own limits and switches)

    def record(self, ref: ModelRef, error: SidecarError | None = None, *, kind: str | None = None) -> None:
        self.pending = False
        if error is None and kind is None:
            self.attempts.append(Attempt(provider=ref.provider, model=ref.model, ok=True))
        else:
            self.attempts.append(
                Attempt(
                    provider=ref.provider,
                    model=ref.model,
                    ok=False,
                    error=error.kind if error is not None else kind,
                    message=error.message if error is not None else None,
                )
            )


class ChatService:
    def __init__(
        self,
        providers: ProviderRegistry,
        pricing: Pricing,
        config: Config,
        resilience: Resilience | None = None,
    ) -> None:
        self.providers = providers
        self.pricing = pricing
        self.config = config
        self.resilience = resilience or Resilience(config)
        self.hooks: list[ChatHooks] = []
        # Turns a `router:<name>` request into its first candidate plus the rest as fallback.
        self.expand: Callable[[CompleteParams], Awaitable[CompleteParams]] | None = None
        # The response cache (opt-in per request or endpoint); set by the app.
        self.cache: ResponseCache | None = None
        # Adds a way on to an error (close model ids, an alternative); set by the app.
        self.suggest: Callable[[SidecarError, ModelRef], Awaitable[None]] | None = None
        # The hooks' `after` may wait until the answer is sent (`context.after_reply`): true when
        # what they settle is this process's own (no Redis), so nothing outside it can look at
        # the budgets in between; set by the app.
        self.after_reply = False
        self._timeouts_config: Config | None = None
        self._resolved_specs: Mapping[str, ProviderSpec] | None = None
        self._resolved: dict[str, ModelRef] = {}
        self._timeouts_cache: dict[tuple[float | None, bool], Timeouts] = {}
        self.upstream = UpstreamCaller(self.timeouts)

    def handlers(self) -> dict[str, Handler]:
        return {"complete": self.complete, "stream": self.stream}

    async def complete(self, params: CompleteParams, ctx: CallContext) -> ChatResult:
        return await self.run(params, ctx, stream=False)

    async def stream(self, params: CompleteParams, ctx: CallContext) -> ChatResult:
        return await self.run(params, ctx, stream=True)

    def resolve(self, model: str) -> ModelRef:
        # What a model string names depends only on the providers' specs, which a reload replaces
        # with a new dict (emptying this cache); hosts send the same few names again and again.
        specs = self.providers.specs
        if self._resolved_specs is not specs or len(self._resolved) >= _RESOLVED_MAX:
            self._resolved_specs = specs
            self._resolved = {}
        ref = self._resolved.get(model)
        if ref is None:
            ref = self._resolved[model] = self._resolve(model, specs)
        return ref

    @staticmethod
    def _resolve(model: str, specs: Mapping[str, ProviderSpec]) -> ModelRef:
        alone = defaults.provider_alone(model, specs)
        if alone is not None:
            model = defaults.default_model_for(alone, specs[alone].default_model)
        return parse_model(model, specs)

    def with_defaults(self, params: CompleteParams) -> CompleteParams:
        d = self.config.defaults
        return defaults.apply(params, model=d.model, temperature=d.temperature, max_tokens=d.max_tokens)

    def chain(self, ref: ModelRef, params: CompleteParams) -> list[ModelRef]:
        """The model asked for, then its fallbacks (the request's list, else config.toml's), once each."""
        explicit = params.fallback is not None
        chain = [ref]
        for i, model in enumerate(params.fallback if params.fallback is not None else self.config.fallback):
            try:
                other = self.resolve(model)
            except SidecarError as exc:
                where = f"fallback[{i}]" if explicit else "the fallback list in config.toml"
                message = f"In {where}: {exc.message}"
                raise SidecarError("invalid_request", message, field=f"fallback[{i}]") from None
            if other not in chain:
                chain.append(other)
        return chain

    def timeouts(self, params: CompleteParams, stream: bool = True) -> Timeouts:
        """`timeout_s` bounds every wait without progress (first byte and idle gaps). A non-streaming
        upstream call (`stream=False`, the providers' own `complete`) sends nothing until the answer
        is whole, so by default only the total limit bounds its first byte."""
        # Depends only on the configuration and `timeout_s`: built once per pair, not per request
        # (a reloaded configuration is a new object, which empties the cache).
        config = self.config
        if self._timeouts_config is not config:
            self._timeouts_config = config
            self._timeouts_cache = {}
        key = (params.timeout_s, stream)
        cached = self._timeouts_cache.get(key)
        if cached is None:
            cached = self._timeouts_cache[key] = self._build_timeouts(params.timeout_s, stream)
        return cached

    def _build_timeouts(self, timeout_s: float | None, stream: bool) -> Timeouts:
        t = self.config.timeouts
        if timeout_s:
            first = idle = timeout_s
        else:
            first, idle = (t.first_byte_s if stream else t.total_s), t.idle_s
        return Timeouts(
            connect_s=min(t.connect_s, first),
            read_s=first,
            idle_s=idle,
            max_body_bytes=int(self.config.http.max_body_mb * 1024 * 1024),
        )

    async def run(self, params: CompleteParams, ctx: CallContext, *, stream: bool) -> ChatResult:
        params = self.with_defaults(params)
        router = router_name(params.model)
        if self.expand is not None:
            params = await self.expand(params)
        ref = self.resolve(params.model)
        cache = self.cache
        # Most requests are not cached (no TTL asked for or configured): asked once, not per step.
        if cache is None or cache.ttl_for(ref, params) is None:
            return await self._run(ref, params, ctx, stream, router)
        if self.providers.enabled(ref.provider):
            hit = await cache.lookup(ref, params)
            if hit is not None:
                return await self._replay(hit, ref, params, ctx, stream, router)
        result = await self._run(ref, params, ctx, stream, router)
        if (result.provider, result.model) == (ref.provider, ref.model):
            await cache.store_result(ref, params, result)  # not a fallback's answer
        return result

    async def _replay(
        self,
        hit: Hit,
        ref: ModelRef,
        params: CompleteParams,
        ctx: CallContext,
        stream: bool,
        router: str | None,
    ) -> ChatResult:
        """Answer from the response cache: the same events a live stream sends, nothing upstream."""
        started = time.monotonic()
        if stream:
            for event in response_cache.replay_events(hit.result):
                await ctx.notify("stream/event", StreamEventParams(request_id=ctx.request_id, event=event))
        latency_ms = (time.monotonic() - started) * 1000
        outcome = Outcome(
            method="stream" if stream else "complete",
            provider=ref.provider,
            model=ref.model,
            status="ok",
            usage=ZERO_USAGE,
            cost_usd=0.0,
            pricing_date=hit.result.pricing_date,
            latency_ms=latency_ms,
            tag=params.tag,
            run_id=params.run_id,
            cache_hit=True,
            saved_usd=hit.cost_usd,
            router=router,
        )
        await self._after(outcome, self.hooks)
        return msgspec.structs.replace(
            hit.result,
            cost_usd=0.0,
            cached=True,
            saved_usd=hit.cost_usd,
            latency_ms=round(latency_ms, 3),
            attempts=[],
        )

    async def _after(self, outcome: Outcome, hooks: Sequence[ChatHooks]) -> None:
        """Every hook's `after`, of the hooks the request's `before` went through (`hooks`: the list
        as it was when the request began, since the app may add a hook meanwhile)."""
        later = after_reply.get() if self.after_reply else None
        if later is not None and later.open:
            # Run by the face once the answer is sent, with this moment's context variables (the
            # client's name, the budget reservation held).
            # No shield there: the face runs this work after the request's own cancel scopes
            # have all exited (`context.after_reply`), so nothing can cancel it that a shield
            # would hold off (a native `Task.cancel` passes through shields anyway).
            later.append(
                functools.partial(
                    loop.in_context, contextvars.copy_context(), self._hooks_after_unshielded, outcome, hooks
                )
            )
            return
        with loop.cancel_scope(shield=True):
            await self._hooks_after_unshielded(outcome, hooks)

    @staticmethod
    async def _hooks_after_unshielded(outcome: Outcome, hooks: Sequence[ChatHooks]) -> None:
        for hook in hooks:
            try:
                await hook.after(outcome)
            except Exception:
                _log.exception("chat hook failed")

    async def _run(
        self, ref: ModelRef, params: CompleteParams, ctx: CallContext, stream: bool, router: str | None = None
    ) -> ChatResult:
        chain = self.chain(ref, params)
        started = time.monotonic()
        outcome = Outcome(
            method="stream" if stream else "complete",
            provider=ref.provider,
            model=ref.model,
            status="error",
            tag=params.tag,
            run_id=params.run_id,
            router=router,
        )
        tries = _Tries(ref)
        hooks = self.hooks  # the app replaces the list to add a hook: this request keeps its own
        try:
            await run_before_hooks(hooks, ref, params, outcome)
            result = await self._run_chain(chain, params, ctx, stream, tries)
            outcome.status = "ok"
            # Priced once, by the attempt that answered: the hooks get the same figures.
            outcome.usage, outcome.cost_usd, outcome.pricing_date = (
                result.usage,
                result.cost_usd,
                result.pricing_date,
            )
            return result
        except SidecarError as exc:
            outcome.error_kind = exc.kind
            if tries.attempts and not tries.sent:
                # Every candidate was held back by the sidecar itself (a client-side limit, the
                # provider's own "nothing remains", a switched-off provider, an open breaker).
                outcome.status, outcome.reason = "refused", exc.message
                outcome.usage, outcome.cost_usd = ZERO_USAGE, 0.0
            if self.suggest is not None:
                await self.suggest(exc, tries.ref)
            raise
        except anyio.get_cancelled_exc_class():
            outcome.status = "cancelled"
            outcome.error_kind = "cancelled"
            if tries.pending:
                tries.record(tries.ref, kind="cancelled")
            raise
        finally:
            outcome.latency_ms = (time.monotonic() - started) * 1000
            outcome.provider, outcome.model = tries.ref.provider, tries.ref.model
            outcome.attempts = tries.attempts
            assembler = tries.assembler
            outcome.usage_estimated = tries.usage_estimated
            if outcome.usage is None and assembler is not None:
                if assembler.usage is None and assembler.started:
                    # Cut off before the provider reported usage (a cancelled stream): the tokens
                    # that did flow were billed, so record an estimate, marked as one.
                    assembler.usage = estimate_usage(params, assembler)
                    outcome.usage_estimated = True
                if assembler.usage is not None:
                    outcome.usage = assembler.usage
                    outcome.cost_usd, outcome.pricing_date = self.price(tries.ref, assembler.usage)
            await self._after(outcome, hooks)

    async def _run_chain(
        self, chain: list[ModelRef], params: CompleteParams, ctx: CallContext, stream: bool, tries: _Tries
    ) -> ChatResult:
        """Try each model of the chain in turn, retrying transient failures, until one answers.

        Nothing is retried, and no fallback is tried, once the answer has begun reaching the host.
        """
        total_s = self.config.timeouts.total_s
        now = loop.now()
        deadline = now + total_s
        # `timeout_s` is the longest the host waits without progress, and before the answer starts
        # that wait spans every attempt (retries, backoff, fallbacks): the first token must arrive
        # within it. Once it has, only the idle gaps (also `timeout_s`) and total_s bound the rest.
        first_progress = min(deadline, now + params.timeout_s) if params.timeout_s else deadline
        with loop.cancel_scope(deadline=first_progress) as scope:
            if first_progress < deadline:

                def started() -> None:
                    scope.deadline = deadline

                tries.on_start = started
            return await self._try_chain(chain, params, ctx, stream, tries, first_progress)
        if tries.pending:
            tries.record(tries.ref, kind="timeout")
        if params.timeout_s and scope.deadline < deadline:
            count = len(tries.attempts)
            attempts = f"{count} attempt{'s' if count != 1 else ''}"
            error = SidecarError(
                "timeout",
                f"No answer started within the request's timeout_s of {params.timeout_s:g}s "
                f"({attempts}, retries included). Retry, or raise timeout_s.",
                provider=tries.ref.provider,
            )
            if count > 1:
                error.details = {"attempts": msgspec.to_builtins(tries.attempts)}
            raise error
        raise SidecarError(
            "timeout",
            f"The request did not finish within its total time limit of {total_s:g}s "
            "(total_s under [timeouts] in config.toml).",
            provider=tries.ref.provider,
        )

    async def _try_chain(
        self,
        chain: list[ModelRef],
        params: CompleteParams,
        ctx: CallContext,
        stream: bool,
        tries: _Tries,
        deadline: float,
    ) -> ChatResult:
        policy = self.resilience.policy
        first_error: SidecarError | None = None
        last: SidecarError | None = None
        delay = 0.0
        for position, ref in enumerate(chain):
            tries_here = 0
            while True:
                if last is not None:
                    if stream:
                        await self._announce(ctx, ref, len(tries.attempts) + 1, last, delay)
                    if delay > 0:
                        await anyio.sleep(delay)
                    delay = 0.0
                tries_here += 1
                try:
                    return await self._attempt(ref, params, ctx, stream, tries, deadline)
                except _Skip as skip:
                    last = skip.error
                    if position == 0 and first_error is None:
                        # Skipping a retry (its circuit opened meanwhile) must not hide the real
                        # error that made it a retry.
                        first_error = last
                    break
                except SidecarError as exc:
                    last = exc
                    if position == 0:
                        first_error = exc
                    if tries.assembler is not None and tries.assembler.started:
                        raise  # the host has part of the answer: report it, never retry or fall back
                    if isinstance(exc, ProviderError) and exc.final:
                        break
                    decision = retry.decide(
                        policy,
                        attempt=tries_here,
                        kind=exc.kind,
                        started=False,
                        retry_after_s=exc.retry_after_s,
                        random=self.resilience.random,
                        time_left_s=deadline - anyio.current_time(),
                    )
                    if decision.retry:
                        delay = decision.delay_s
                        continue
                    break
        assert last is not None
        raise self._exhausted(first_error or last, chain, tries)

    @staticmethod
    def _exhausted(error: SidecarError, chain: list[ModelRef], tries: _Tries) -> SidecarError:
        """The error of the model the host asked for, listing every attempt when there were several."""
        if len(tries.attempts) > 1:
            error.details = {**error.details, "attempts": msgspec.to_builtins(tries.attempts)}
        tried = {(a.provider, a.model) for a in tries.attempts}
        others = [str(ref) for ref in chain[1:] if (ref.provider, ref.model) in tried]
        if others:
            also = ", ".join(others)
            error.message = f"{error.message} Fallback to {also} failed too (see details.attempts)."
        return error

    @staticmethod
    async def _announce(
        ctx: CallContext, ref: ModelRef, number: int, previous: SidecarError, delay: float
    ) -> None:
        event = AttemptEvent(
            provider=ref.provider,
            model=ref.model,
            attempt=number,
            previous_error=previous.kind,
            previous_message=previous.message,
            delay_s=round(delay, 3) if delay > 0 else None,
        )
        await ctx.notify("stream/event", StreamEventParams(request_id=ctx.request_id, event=event))

    async def _attempt(
        self,
        ref: ModelRef,
        params: CompleteParams,
        ctx: CallContext,
        stream: bool,
        tries: _Tries,
        deadline: float,
    ) -> ChatResult:
        res = self.resilience
        tries.ref = ref
        try:
            self.providers.ensure_enabled(ref.provider)
            provider = self.providers.get(ref.provider)
        except SidecarError as exc:
            tries.record(ref, exc)
            raise _Skip(exc) from None
        t = self.config.timeouts
        max_wait = min(params.timeout_s or t.first_byte_s, max(0.0, deadline - loop.now()))
        told_to_wait = await res.respect_upstream(ref.provider, max_wait)
        if told_to_wait is not None:
            tries.record(ref, told_to_wait)
            raise _Skip(told_to_wait)
        breaker = res.breakers.get(ref.provider)
        if not breaker.allow():
            skipped = _circuit_open(ref, breaker.snapshot().consecutive_failures, breaker.retry_in_s())
            tries.record(ref, skipped)
            raise _Skip(skipped)
        tries.pending = True
        verdict = False
        assembler = tries.assembler = Assembler(self.config.http.max_answer_chars)
        try:
            limiter = res.limiter(ref.provider)
            if limiter is None:
                started = time.monotonic()
                result = await self._send(provider, ref, params, ctx, stream, tries, assembler)
            else:
                async with contextlib.AsyncExitStack() as stack:
                    permit = await self._acquire(stack, limiter, ref, params, tries, deadline)
                    started = time.monotonic()
                    result = await self._send(provider, ref, params, ctx, stream, tries, assembler)
                    permit.settle(result.usage.input_tokens + result.usage.output_tokens)
            estimated = tries.usage_estimated
            breaker.success()
            verdict = True
            tries.record(ref)
        except ProviderError as exc:
            if exc.kind == "overloaded":
                tries.record(ref, exc)  # the sidecar's own pool was full: not the provider's failure
                raise
            if exc.final:
                breaker.success()  # it answered (too much): the provider is up
            else:
                breaker.failure(exc.kind)
            verdict = True
            if exc.kind == "rate_limited" and exc.retry_after_s is not None:
                res.tracker.note_retry_after(ref.provider, exc.retry_after_s)
            tries.record(ref, exc)
            raise
        except SidecarError as exc:
            tries.record(ref, exc)
            raise
        finally:
            if not verdict:
                breaker.release()
        cost_usd, pricing_date = self.price(ref, result.usage)
        return msgspec.structs.replace(
            result,
            usage_estimated=estimated,
            cost_usd=cost_usd,
            pricing_date=pricing_date,
            latency_ms=round((time.monotonic() - started) * 1000, 3),
            attempts=list(tries.attempts),
        )

    async def _send(
        self,
        provider: Provider,
        ref: ModelRef,
        params: CompleteParams,
        ctx: CallContext,
        stream: bool,
        tries: _Tries,
        assembler: Assembler,
    ) -> ChatResult:
        """One upstream call, its events pumped into `assembler` (and relayed to `ctx` for
        `stream`). A non-streamed request goes whole where its face asks (`asked_whole`)."""
        tries.sent = True
        tries.usage_estimated = False
        result, tries.usage_estimated = await self.upstream.call(
            provider,
            ref,
            params,
            assembler,
            ctx if stream else None,
            tries.on_start,
            prefer_whole=not stream and asked_whole.get(),
        )
        return result

    async def _acquire(
        self,
        stack: contextlib.AsyncExitStack,
        limiter: Limiter,
        ref: ModelRef,
        params: CompleteParams,
        tries: _Tries,
        deadline: float,
    ) -> Permit:
        """Wait for the provider's client-side limits, as long as the request's time limit allows."""
        needed = 0
        if limiter.state.tokens is not None:
            needed = tokens.estimate_input_tokens(params.messages, params.tools) + (params.max_tokens or 0)
        t = self.config.timeouts
        max_wait = min(params.timeout_s or t.first_byte_s, max(0.0, deadline - loop.now()))
        try:
            return await stack.enter_async_context(limiter.slot(needed, max_wait))
        except SidecarError as exc:
            tries.record(ref, exc)
            raise _Skip(exc) from None

    def price(self, ref: ModelRef, usage: Usage) -> tuple[float | None, str | None]:
        return self.pricing.cost(ref, usage)


def _circuit_open(ref: ModelRef, failures: int, retry_in_s: float | None) -> SidecarError:
    wait = f" for another {retry_in_s:.1f}s" if retry_in_s else " until its trial request finishes"
    return SidecarError(
        "provider_error",
        f"{display(ref.provider)} failed {failures} times in a row, so the sidecar is not sending it requests"
        f"{wait} (circuit breaker). Retry later, or use another model.",
        provider=ref.provider,
        retry_after_s=round(retry_in_s, 3) if retry_in_s else None,
    )
