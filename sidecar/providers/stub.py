"""The offline `stub` provider (`stub:echo`, `stub:lorem`, `stub:tools`): no network, no key, no cost.

For host developers building a UI offline and for demos. It streams deterministic deltas (see
`core.stub_answers`) with the usage a real provider would report, so every part of a host (deltas,
tool calls, usage, cost) can be exercised. It takes part in fallback only when named.

Must not know: stdin/stdout, the keychain, the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio

from sidecar.core import stub_answers
from sidecar.core.assemble import Finish, ProviderEvent, ResponseMeta
from sidecar.errors import SidecarError
from sidecar.providers.base import KeyCheck, Provider
from sidecar.providers.http import Timeouts
from sidecar.wire.chat import CompleteParams, TextDelta, ToolCallDelta, UsageEvent


class StubProvider(Provider):
    def stream(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        return self._events(model, params, streamed=True)

    def complete(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        return self._events(model, params, streamed=False)

    async def validate_key(self, api_key: str, timeouts: Timeouts) -> KeyCheck:
        return KeyCheck(valid=True, details={"note": "the stub provider needs no key"})

    async def _events(
        self, model: str, params: CompleteParams, *, streamed: bool
    ) -> AsyncGenerator[ProviderEvent, None]:
        if model not in stub_answers.MODELS:
            raise SidecarError(
                "model_not_found",
                f"The stub provider has no model '{model}'; it has "
                + ", ".join(f"stub:{m}" for m in stub_answers.MODELS)
                + ".",
                provider=self.id,
                field="model",
            )
        found = stub_answers.answer(model, params)
        yield ResponseMeta(response_id=f"stub-{model}", model=model)
        if found.tool_call is not None:
            call = found.tool_call
            yield ToolCallDelta(index=0, id=call.id, name=call.name, arguments_delta="")
            pieces = stub_answers.chunks(call.arguments_json) if streamed else [call.arguments_json]
            for piece in pieces:
                await anyio.lowlevel.checkpoint()  # a cancellation point between deltas
                yield ToolCallDelta(index=0, arguments_delta=piece)
        else:
            for piece in stub_answers.chunks(found.text) if streamed else [found.text]:
                await anyio.lowlevel.checkpoint()
                yield TextDelta(text=piece)
        yield UsageEvent(
            input_tokens=found.input_tokens,
            output_tokens=found.output_tokens,
            cache_read_tokens=0,
            cache_write_tokens=0,
            reasoning_tokens=0,
        )
        yield Finish(reason=found.finish_reason, stop_sequence=found.stop_sequence)
