"""`metrics`: series a host can plot (tokens, cost, requests, success rate, latency percentiles)
over the last hour or day from memory (one-minute steps), or 7/30 days from the usage ledger; and
the same counters as Prometheus text for the gateway's `/metrics`.

The service is a chat hook: every request of every face is counted once it ends, under the
client key the gateway named (`current_client`) and the router it came through.

Must not know: HTTP, stdin/stdout, how the ledger stores rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import anyio

from sidecar.core import metrics as core
from sidecar.core.models import ModelRef
from sidecar.infra.ledger import Ledger
from sidecar.services.context import CallContext, Handler, current_client
from sidecar.services.outcome import Outcome
from sidecar.wire.chat import CompleteParams
from sidecar.wire.gateway import MetricsParams, MetricsResult, MetricsSeries

RANGES: Final = {"1h": (3600, 60), "24h": (86400, 60), "7d": (7 * 86400, 3600), "30d": (30 * 86400, 86400)}


class MetricsService:
    def __init__(self, ledger: Callable[[], Ledger], clock: Callable[[], float] = time.time) -> None:
        self._ledger = ledger  # built on first need: a host that only asks for 1h never opens the db
        self.clock = clock
        self.memory = core.MinuteMetrics()

    def handlers(self) -> dict[str, Handler]:
        return {"metrics": self.metrics}

    # --- chat hook --------------------------------------------------------------------------------

    async def before(self, ref: ModelRef, params: CompleteParams) -> None:
        return None

    async def after(self, outcome: Outcome) -> None:
        usage = outcome.usage
        self.memory.add(
            core.Sample(
                ts=self.clock(),
                provider=outcome.provider,
                client=current_client.get(),
                outcome=outcome.status,
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
                cost_usd=outcome.cost_usd or 0.0,
                latency_ms=outcome.latency_ms,
                router=outcome.router,
            )
        )

    def rename_client(self, old: str, new: str) -> None:
        """A client key renamed (or deleted: its usage goes under a name no key has), as the
        ledger moves its rows: the last 24 hours follow."""
        self.memory.rename_client(old, new)

    def latency_p50_by_provider(self) -> dict[str, float]:
        """Median latency per provider over the last 24 hours (providers with requests only)."""
        now = self.clock()
        rows = self.memory.query(now - 86400, now + 60, "latency_p50", "provider")
        out: dict[str, float] = {}
        for key, _ in rows:
            if key is None:
                continue
            latencies = [
                lat
                for _, groups in self.memory.minutes()
                for (provider, _client, _router), bucket in groups.items()
                if provider == key
                for lat in bucket.latencies
            ]
            p50 = core.percentile(latencies, 50)
            if p50 is not None:
                out[key] = p50
        return out

    # --- the method -------------------------------------------------------------------------------

    async def metrics(self, params: MetricsParams, ctx: CallContext) -> MetricsResult:
        span, step = RANGES[params.range]
        now = self.clock()
        until = (int(now) // step + 1) * step
        since = until - span
        if step == core.MINUTE:
            rows = self.memory.query(since, until, params.metric, params.group_by)
        else:
            ledger = self._ledger()
            await anyio.to_thread.run_sync(ledger.flush)
            samples = await anyio.to_thread.run_sync(ledger.metric_samples, float(since), float(until))
            buckets = core.bucketed(samples, since, until, step, params.group_by)
            rows = core.series(buckets, since, until, step, params.metric)
        if not rows:
            rows = (
                core.series({None: {}}, since, until, step, params.metric) if params.group_by is None else []
            )
        return MetricsResult(
            range=params.range,
            metric=params.metric,
            step_s=step,
            since=since,
            until=until,
            group_by=params.group_by,
            series=[MetricsSeries(key=key, points=[[t, v] for t, v in points]) for key, points in rows],
        )

    def prometheus(self) -> str:
        """Counters since start, per provider and client key, in Prometheus' text format."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        def labels(provider: str, client: str | None, **extra: str) -> str:
            pairs = {"provider": provider, "client": client or "", **extra}
            return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())

        totals = sorted(self.memory.totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        family("llm_sidecar_requests_total", "counter", "Chat requests by outcome.")
        for (provider, client), b in totals:
            for outcome, count in (
                ("ok", b.ok),
                ("error", b.errors),
                ("cancelled", b.requests - b.ok - b.errors),
            ):
                lines.append(
                    f"llm_sidecar_requests_total{{{labels(provider, client, outcome=outcome)}}} {count}"
                )
        family("llm_sidecar_tokens_total", "counter", "Tokens, input and output.")
        for (provider, client), b in totals:
            for direction, count in (("input", b.input_tokens), ("output", b.output_tokens)):
                lines.append(
                    f"llm_sidecar_tokens_total{{{labels(provider, client, direction=direction)}}} {count}"
                )
        family("llm_sidecar_cost_usd_total", "counter", "Cost in USD, from the catalog's prices.")
        for (provider, client), b in totals:
            lines.append(f"llm_sidecar_cost_usd_total{{{labels(provider, client)}}} {b.cost_usd:.10g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
