"""The chat hooks that enforce `[limits]` (all providers together) and the window fields of
`[providers.<id>.limits]` / `[endpoints.<name>.limits]`: input tokens, output tokens and USD per
sliding window (core.usage_window), counted in this process.

`before` refuses a request whose estimate would cross a limit (`rate_limited` with
`retry_after_s`; the chat service records it as refused); `after` adds what a finished request
really used (a failed or cancelled one counts what it was billed, when known).

Must not know: stdin/stdout, the ledger, providers' wire formats.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sidecar.config import Config, WindowLimits
from sidecar.core import cost, tokens
from sidecar.core.models import ModelRef
from sidecar.core.usage_window import UsageWindow, WindowSpec
from sidecar.errors import SidecarError
from sidecar.services.outcome import Outcome
from sidecar.services.pricing import Pricing
from sidecar.wire.chat import CompleteParams

GLOBAL = "*"


def _spec(limits: WindowLimits | None) -> WindowSpec | None:
    if limits is None:
        return None
    spec = WindowSpec(
        window_s=limits.window_s,
        input_tokens=limits.input_tokens_per_window,
        output_tokens=limits.output_tokens_per_window,
        usd=limits.usd_per_window,
    )
    return spec if spec.any else None


class WindowLimitHooks:
    def __init__(
        self, config: Callable[[], Config], pricing: Pricing, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self.pricing = pricing
        self.clock = clock
        self._windows: dict[str, UsageWindow] = {}
        # Each scope's window as placed for `_placed_for` (the config read last): asked twice on
        # every request, placed again only when config.toml changes.
        self._placed: dict[str, UsageWindow | None] = {}
        self._placed_for: Config | None = None

    def _window(self, scope: str) -> UsageWindow | None:
        config = self._config()
        if config is not self._placed_for:
            self._placed, self._placed_for = {}, config
        try:
            return self._placed[scope]
        except KeyError:
            window = self._placed[scope] = self._place(config, scope)
            return window

    def _place(self, config: Config, scope: str) -> UsageWindow | None:
        if scope == GLOBAL:
            limits: WindowLimits | None = config.limits
        elif scope in config.endpoints:
            limits = config.endpoints[scope].limits
        else:
            settings = config.providers.get(scope)
            limits = settings.limits if settings else None
        spec = _spec(limits)
        if spec is None:
            self._windows.pop(scope, None)
            return None
        window = self._windows.get(scope)
        if window is None or window.spec != spec:  # new, or config.toml changed it
            window = self._windows[scope] = UsageWindow(spec)
        return window

    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        scopes = [(s, w) for s in (ref.provider, GLOBAL) if (w := self._window(s)) is not None]
        if not scopes:
            return
        est_in = tokens.estimate_input_tokens(params.messages, params.tools)
        info, _ = self.pricing.info_for(ref)
        est_usd = cost.estimate(info, est_in, 0).input_cost if info is not None else 0.0
        now = self.clock()
        for scope, window in scopes:
            refusal = window.check(now, est_in, params.max_tokens or 0, est_usd)
            if refusal is not None:
                name = "All providers together" if scope == GLOBAL else ref.provider
                raise SidecarError(
                    "rate_limited",
                    refusal.message(name),
                    provider=ref.provider,
                    retry_after_s=round(refusal.retry_after_s, 3),
                    details={
                        "scope": "global" if scope == GLOBAL else scope,
                        "limit": refusal.measure,
                        "limit_value": refusal.limit,
                        "used": refusal.used,
                        "window_s": refusal.window_s,
                        "client_side": True,
                    },
                )

    async def after(self, outcome: Outcome) -> None:
        usage = outcome.usage
        if usage is None or outcome.status == "refused":
            return
        now = self.clock()
        for scope in (outcome.provider, GLOBAL):
            window = self._window(scope)
            if window is not None:
                window.add(now, usage.input_tokens, usage.output_tokens, outcome.cost_usd or 0.0)
