"""`embed`: vectors for texts from an embeddings model (OpenAI, Gemini, Ollama, OpenRouter, custom
endpoints), with usage and cost; refused before sending by the same budgets as a chat request
(`set_budget`, a client key's budget: `budget_exceeded`), and recorded in the usage ledger and the
metrics like one (method `embed`), under the gateway client key that asked, if any.

Must not know: stdin/stdout, HTTP serving, providers' wire formats (providers.embeddings has them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from sidecar.config import Config
from sidecar.core import embeddings as prices
from sidecar.core.models import ModelRef, parse_model
from sidecar.errors import SidecarError
from sidecar.providers import embeddings as upstream
from sidecar.providers.http import Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.services.outcome import ChatHooks, Outcome, run_before_hooks
from sidecar.wire.base import Usage
from sidecar.wire.chat import CompleteParams, Message
from sidecar.wire.embed import EmbedParams, EmbedResult, EmbedUsage


class EmbedService:
    def __init__(self, providers: ProviderRegistry, config: Config, hooks: Sequence[ChatHooks] = ()) -> None:
        self.providers = providers
        self.config = config
        self.hooks = list(hooks)

    def handlers(self) -> dict[str, Handler]:
        return {"embed": self.embed}

    async def embed(self, params: EmbedParams, ctx: CallContext) -> EmbedResult:
        ref = parse_model(params.model, self.providers.specs)
        inputs = [params.input] if isinstance(params.input, str) else list(params.input)
        t = self.config.timeouts
        wait = params.timeout_s or t.first_byte_s
        timeouts = Timeouts(connect_s=min(t.connect_s, wait), read_s=wait, idle_s=wait)
        started = time.monotonic()
        outcome = Outcome(
            method="embed", provider=ref.provider, model=ref.model, status="error", tag=params.tag
        )
        try:
            await self._before(ref, params.model, inputs, outcome)
            provider = self.providers.get(ref.provider)
            with anyio.fail_after(t.total_s):
                got = await upstream.embed(provider, ref.model, inputs, timeouts, params.dimensions)
            if len(got.vectors) != len(inputs):
                raise SidecarError(
                    "provider_error",
                    f"{ref.provider} answered {len(got.vectors)} vectors for {len(inputs)} inputs.",
                    provider=ref.provider,
                )
            cost, date = prices.cost_usd(ref.provider, ref.model, got.input_tokens)
            outcome.status = "ok"
            outcome.usage = Usage(
                input_tokens=got.input_tokens,
                output_tokens=0,
                cache_read_tokens=0,
                cache_write_tokens=0,
                reasoning_tokens=0,
            )
            outcome.usage_estimated = got.estimated
            outcome.cost_usd, outcome.pricing_date = cost, date
            return EmbedResult(
                embeddings=got.vectors,
                provider=ref.provider,
                model=ref.model,
                usage=EmbedUsage(input_tokens=got.input_tokens, estimated=got.estimated),
                cost_usd=cost,
                pricing_date=date,
                latency_ms=round((time.monotonic() - started) * 1000, 3),
            )
        except SidecarError as exc:
            outcome.error_kind = exc.kind
            raise
        except TimeoutError:
            outcome.error_kind = "timeout"
            raise SidecarError(
                "timeout",
                f"The embeddings request did not finish within {t.total_s:g}s.",
                provider=ref.provider,
            ) from None
        except anyio.get_cancelled_exc_class():
            outcome.status = outcome.error_kind = "cancelled"
            raise
        finally:
            outcome.latency_ms = (time.monotonic() - started) * 1000
            with anyio.CancelScope(shield=True):
                for hook in self.hooks:
                    await hook.after(outcome)

    async def _before(self, ref: ModelRef, model: str, inputs: list[str], outcome: Outcome) -> None:
        """The chat hooks' check before sending: the texts stand in as user turns, so a budget
        estimates their input tokens (an embedding has no output) and holds what they may cost."""
        if not self.hooks:
            return
        as_chat = CompleteParams(model=model, messages=[Message(role="user", content=t) for t in inputs])
        await run_before_hooks(self.hooks, ref, as_chat, outcome)
