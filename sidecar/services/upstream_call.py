"""One call to a provider within one attempt of a chat request.

`UpstreamCaller.call` streams from the provider (both `complete` and `stream` do: see
`services.chat`), or makes its non-streaming call for a model it will not stream, and for a
request the face asked to send whole (`prefer_whole`) where the provider takes it; pumps the events
into the request's `Assembler`, relaying them to the host for `stream`; and answers the assembled
result, with its usage estimated from what was received when the upstream never reported it.

A 400 that names a parameter the request may go without (`stream`, a sampling parameter such as
`temperature`, `stop`: `core.refusals`) is asked again at once without it, as long as nothing
reached the host; the refusal is remembered, so the model's next calls leave it out from the
start. Stop sequences the upstream would not take are applied here (`core.stop_sequences`): the
text ends before the first one and the rest of the answer is not read.

Must not know: retries, fallback, circuit breakers, client-side limits, hooks, pricing (the chat
service's), stdin/stdout, providers' wire formats.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

import msgspec

from sidecar import logs
from sidecar.core import tokens
from sidecar.core.assemble import RELAYED, AnswerTooLarge, Assembler, Finish, ProviderEvent
from sidecar.core.models import ModelRef
from sidecar.core.refusals import DROPPABLE, STREAM, Refusals
from sidecar.core.stop_sequences import StopCutter
from sidecar.errors import ProviderError
from sidecar.providers.base import Provider
from sidecar.providers.http import Timeouts, too_large
from sidecar.services.context import CallContext
from sidecar.wire.base import Usage
from sidecar.wire.chat import ChatResult, CompleteParams, StreamEventParams, TextDelta, UsageEvent

_log = logs.get_logger("chat")

TimeoutsFor = Callable[[CompleteParams, bool], Timeouts]
"""The time limits of a call with these params, streamed (True) or whole (False)."""


def estimate_usage(params: CompleteParams, assembler: Assembler) -> Usage:
    """The usage of an answer cut off before the provider reported it, from what was received."""
    generated = assembler.text + (assembler.thinking or "") + assembler.tool_arguments
    return Usage(
        input_tokens=tokens.estimate_input_tokens(params.messages, params.tools),
        output_tokens=tokens.text_tokens(generated),
        cache_read_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=tokens.text_tokens(assembler.thinking or ""),
    )


class UpstreamCaller:
    def __init__(self, timeouts: TimeoutsFor, refusals: Refusals | None = None) -> None:
        self.timeouts = timeouts
        self.refusals = refusals or Refusals()

    async def call(
        self,
        provider: Provider,
        ref: ModelRef,
        params: CompleteParams,
        assembler: Assembler,
        ctx: CallContext | None,
        on_start: Callable[[], None] | None = None,
        prefer_whole: bool = False,
    ) -> tuple[ChatResult, bool]:
        """The assembled answer of one call, and whether its usage is an estimate. Events go to
        `ctx` as they come when it is given; `on_start` is called when the answer starts. With
        `prefer_whole` the call is not streamed where the provider takes it so."""
        whole = self.refusals.refuses(ref.provider, ref.model)
        dropped = self.refusals.refused(ref.provider, ref.model)
        stops = params.stop  # applied here if the upstream will not take them
        if dropped:
            params = msgspec.structs.replace(params, **dict.fromkeys(dropped))
        if prefer_whole and not whole:
            whole = provider.takes_whole_call(ref.model, params)
        try:
            while True:
                cutter = StopCutter(stops) if stops and params.stop is None else None
                try:
                    await self._relay(provider, ref, params, whole, assembler, ctx, on_start, cutter)
                    break
                except ProviderError as exc:
                    again = self._without_refused(exc, ref, params, whole, assembler)
                    if again is None:
                        raise
                    params, whole = again
        except AnswerTooLarge as exc:
            raise too_large(ref.provider, f"more than {exc.limit:,} characters") from None
        estimated = assembler.usage is None
        if estimated:
            # The upstream never reported usage (llama.cpp ignores `include_usage`), or the
            # answer was not read to its end (a stop sequence): price an estimate rather than
            # call a priced model free.
            assembler.usage = estimate_usage(params, assembler)
        return assembler.result(provider=ref.provider, model=ref.model), estimated

    def _without_refused(
        self, exc: ProviderError, ref: ModelRef, params: CompleteParams, whole: bool, assembler: Assembler
    ) -> tuple[CompleteParams, bool] | None:
        """The same call without the parameter the upstream refused (and the refusal noted), when
        it may be left out and nothing has reached the host yet; None otherwise."""
        param = exc.refused_param
        if param is None or assembler.started:
            return None
        field = DROPPABLE.get(param)
        if param == STREAM and not whole:
            whole, field = True, STREAM
        elif field is not None and getattr(params, field) is not None:
            params = msgspec.structs.replace(params, **{field: None})
        else:
            return None
        self.refusals.note(ref.provider, ref.model, field)
        _log.info("parameter refused, asking without", param=param, provider=ref.provider, model=ref.model)
        return params, whole

    async def _relay(
        self,
        provider: Provider,
        ref: ModelRef,
        params: CompleteParams,
        whole: bool,
        assembler: Assembler,
        ctx: CallContext | None,
        on_start: Callable[[], None] | None,
        cutter: StopCutter | None,
    ) -> None:
        """Stream from the upstream, or with `whole` make its non-streaming call, which yields the
        same events once the answer is complete; with `cutter`, its text ends at a stop sequence."""
        if whole:
            events = provider.complete(ref.model, params, self.timeouts(params, False))
        else:
            events = provider.stream(ref.model, params, self.timeouts(params, True))
        async with contextlib.aclosing(events):
            if cutter is None:
                await _pump(events, assembler, ctx, on_start)
            else:
                async with contextlib.aclosing(_cut_at_stop(events, cutter, whole)) as cut:
                    await _pump(cut, assembler, ctx, on_start)


async def _cut_at_stop(
    events: AsyncGenerator[ProviderEvent, None], cutter: StopCutter, whole: bool
) -> AsyncGenerator[ProviderEvent, None]:
    """`events` with their text ended before the first stop sequence; after it, the answer's end
    (`stop`), and no more is read from a stream (closing it ends the generation). A whole answer
    was generated to its end all the same: its usage, what the provider bills, follows. Text held
    back in case it begins a stop sequence is passed on before the first event that is not text
    (the text is over by then)."""
    async for event in events:
        if isinstance(event, TextDelta):
            text = cutter.feed(event.text)
            if text:
                yield TextDelta(text=text)
            if cutter.stopped:
                yield Finish(reason="stop", stop_sequence=cutter.matched)
                if whole:
                    async for rest in events:
                        if isinstance(rest, UsageEvent):
                            yield rest
                return
            continue
        held = cutter.flush()
        if held:
            yield TextDelta(text=held)
        yield event
    held = cutter.flush()
    if held:
        yield TextDelta(text=held)


async def _pump(
    events: AsyncGenerator[ProviderEvent, None],
    assembler: Assembler,
    ctx: CallContext | None,
    on_start: Callable[[], None] | None = None,
) -> None:
    if ctx is None:
        async for event in events:
            assembler.add(event)
            if on_start is not None and assembler.started:
                on_start()
                on_start = None
        return
    request_id = ctx.request_id
    notify = ctx.notify
    for_host: Any = RELAYED
    # Usage comes last; it is relayed once the stream has gone on or ended well, so the partial
    # usage a failing try reports (for the ledger) never reaches the host before a retry.
    usage: UsageEvent | None = None
    async for event in events:
        assembler.add(event)
        if on_start is not None and assembler.started:
            on_start()
            on_start = None
        if usage is not None:
            await notify("stream/event", StreamEventParams(request_id=request_id, event=usage))
            usage = None
        if isinstance(event, UsageEvent):
            usage = event
        elif isinstance(event, for_host):
            await notify("stream/event", StreamEventParams(request_id=request_id, event=event))
    if usage is not None:
        await notify("stream/event", StreamEventParams(request_id=request_id, event=usage))
