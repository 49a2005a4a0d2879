"""`count_tokens`: how many input tokens a chat request would cost, without running it. The model
is placed as `complete` places it (`[defaults] model`, a provider alone, a router's first
candidate); the provider counts where it has an API for it (OpenAI, Anthropic, Gemini), else the
sidecar estimates from the text, as it does when the provider cannot be asked (no key yet,
offline, an outage). Nothing is spent or recorded: no budget, limit or ledger row.

Must not know: stdin/stdout, HTTP serving, providers' wire formats.
"""

from __future__ import annotations

from typing import Final

import anyio

from sidecar import logs
from sidecar.config import Config
from sidecar.core import tokens
from sidecar.errors import SidecarError
from sidecar.providers.http import Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.chat import ChatService
from sidecar.services.context import CallContext, Handler
from sidecar.wire.chat import CompleteParams, CountTokensResult

_log = logs.get_logger("token_count")
_THE_REQUESTS_FAULT: Final = frozenset({"invalid_request", "model_not_found", "unsupported_provider"})
"""Errors a count reports; on any other the provider could not count, and the sidecar estimates."""


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
        counted: int | None = None
        try:
            with anyio.fail_after(t.total_s):
                counted = await self.providers.get(ref.provider).count_tokens(ref.model, params, timeouts)
        except TimeoutError:
            _log.debug("count_tokens estimated", provider=ref.provider, why="timeout")
        except SidecarError as exc:
            if exc.kind in _THE_REQUESTS_FAULT:
                raise
            # Offline, no key yet, a provider down: a host's token counter still gets a number.
            _log.debug("count_tokens estimated", provider=ref.provider, why=exc.kind)
        exact = counted is not None
        if counted is None:
            counted = tokens.estimate_input_tokens(params.messages, params.tools)
        return CountTokensResult(input_tokens=counted, exact=exact, provider=ref.provider, model=ref.model)
