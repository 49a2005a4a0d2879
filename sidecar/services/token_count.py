"""`count_tokens`: how many input tokens a chat request would cost, without running it. The model
is placed as `complete` places it (`[defaults] model`, a provider alone, a router's first
candidate); the provider counts where it has an API for it (Anthropic, Gemini), else the sidecar
estimates from the text. Nothing is spent or recorded: no budget, limit or ledger row.

Must not know: stdin/stdout, HTTP serving, providers' wire formats.
"""

from __future__ import annotations

import anyio

from sidecar.config import Config
from sidecar.core import tokens
from sidecar.errors import SidecarError
from sidecar.providers.http import Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.chat import ChatService
from sidecar.services.context import CallContext, Handler
from sidecar.wire.chat import CompleteParams, CountTokensResult


class TokenCountService:
    def __init__(self, chat: ChatService, providers: ProviderRegistry, config: Config) -> None:
        self.chat = chat
        self.providers = providers
        self.config = config

    def handlers(self) -> dict[str, Handler]:
        return {"count_tokens": self.count_tokens}

    async def count_tokens(self, params: CompleteParams, ctx: CallContext) -> CountTokensResult:
        params = self.chat.with_defaults(params)
        if self.chat.expand is not None:
            params = await self.chat.expand(params)
        ref = self.chat.resolve(params.model)
        t = self.config.timeouts
        timeouts = Timeouts(connect_s=t.connect_s, read_s=t.first_byte_s, idle_s=t.first_byte_s)
        try:
            with anyio.fail_after(t.total_s):
                counted = await self.providers.get(ref.provider).count_tokens(ref.model, params, timeouts)
        except TimeoutError:
            raise SidecarError(
                "timeout", f"Counting tokens did not finish within {t.total_s:g}s.", provider=ref.provider
            ) from None
        if counted is None:
            estimate = tokens.estimate_input_tokens(params.messages, params.tools)
            return CountTokensResult(
                input_tokens=estimate, exact=False, provider=ref.provider, model=ref.model
            )
        return CountTokensResult(input_tokens=counted, exact=True, provider=ref.provider, model=ref.model)
