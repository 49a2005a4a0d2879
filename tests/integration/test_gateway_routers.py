"""Routers through the real stack: the preview names the model a request then really uses, a
failing first candidate falls through to the next before the first token, a provider without a key
is skipped, and `router:<name>` works on the stdio face's handlers as on the gateway; its ledger
rows, `usage_summary`, `metrics` and the access log name the router, and a router's spend today
outlives a restart."""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import openai
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config, RouterSettings
from sidecar.infra.keystore import MemoryStore
from sidecar.wire.base import Empty
from sidecar.wire.chat import CompleteParams
from sidecar.wire.gateway import ClientKeyCreateParams, GatewayStartParams, MetricsParams
from sidecar.wire.routers import RouterDeleteParams, RouterPreviewParams, RouterSetParams
from sidecar.wire.usage import UsageSummaryParams
from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.openai_compat import FakeOpenAICompat, error_reply
from tests.integration.gateway_harness import ledger

pytestmark = pytest.mark.anyio

CONFIG = """
[retry]
max_attempts = 1

[routers.pair]
models = ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"]

[routers.keyless]
models = ["xai:grok-4", "openai:gpt-4o-mini"]

[routers.slow]
models = ["openai:gpt-4o-mini"]
limits = { requests_per_minute = 1 }

[routers.thrifty]
models = ["openai:gpt-4o-mini"]
limits = { usd_per_day = 0.0000001 }

[routers.auto]
strategy = "lowest_cost"
include = ["openai:gpt-4o*", "anthropic:claude-*"]
needs = ["tools"]
"""


class Ctx:
    request_id = "t"

    async def notify(self, method: str, params: Any) -> None:
        return None


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpenAICompat, FakeAnthropic]]:
    with FakeOpenAICompat("openai") as oa, FakeAnthropic() as an:
        yield oa, an


@pytest.fixture
async def stack(
    tmp_path: Path, fakes: tuple[FakeOpenAICompat, FakeAnthropic]
) -> AsyncIterator[tuple[Services, str, str]]:
    oa, an = fakes
    env = {"SIDECAR_HOME": str(tmp_path), "OPENAI_BASE_URL": oa.api_base, "ANTHROPIC_BASE_URL": an.url}
    config = msgspec.convert(tomllib.loads(CONFIG), Config)
    services = build_services(
        config, store=MemoryStore({"openai": "sk-test-valid", "anthropic": ANTHROPIC_KEY}), env=env
    )
    async with anyio.create_task_group() as tg:
        await services.start_background(tg)
        started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
        key = (await services.handlers["client_key_create"](ClientKeyCreateParams(name="k"), Ctx())).key
        yield services, started.url, key
        await services.stop_gateway()
        tg.cancel_scope.cancel()
    await services.aclose()


async def ask(url: str, key: str, model: str, **extra: Any) -> Any:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as client:
        return await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "route me"}], **extra
        )


async def test_preview_names_the_model_the_request_really_uses(
    stack: tuple[Services, str, str], tmp_path: Path
) -> None:
    services, url, key = stack
    tools: Any = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    preview = await services.handlers["router_preview"](RouterPreviewParams(router="auto"), Ctx())
    assert preview.chosen is not None and preview.candidates[0].available
    prices = [(c.input_per_mtok or 0) + (c.output_per_mtok or 0) for c in preview.candidates]
    assert prices == sorted(prices)
    assert all(c.why.startswith("lowest cost first") for c in preview.candidates)
    res = await ask(url, key, "router:auto", tools=tools)
    assert res.model == preview.chosen
    res = await ask(url, key, "auto", tools=tools)  # the plain name, where no model has it
    assert res.model == preview.chosen
    await anyio.to_thread.run_sync(services.usage.ledger.flush)
    assert [f"{r['provider']}:{r['model']}" for r in ledger(tmp_path)] == [preview.chosen] * 2


async def test_next_candidate_when_the_first_fails_before_the_first_token(
    stack: tuple[Services, str, str], fakes: tuple[FakeOpenAICompat, FakeAnthropic]
) -> None:
    _, url, key = stack
    oa, _ = fakes
    oa.enqueue(error_reply(500, "openai"))
    res = await ask(url, key, "router:pair")
    assert res.model == "anthropic:claude-haiku-4-5"
    assert res.choices[0].message.content == "Echo: route me"
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="pair", messages=[{"role": "user", "content": "route me"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Echo: route me"  # openai answers again: its one failure did not open the breaker


async def test_provider_without_a_key_is_skipped_and_preview_says_why(
    stack: tuple[Services, str, str],
) -> None:
    services, url, key = stack
    preview = await services.handlers["router_preview"](RouterPreviewParams(router="router:keyless"), Ctx())
    first, second = preview.candidates
    assert (first.model, first.available, first.unavailable_because) == ("xai:grok-4", False, "no API key")
    assert (second.model, second.available) == ("openai:gpt-4o-mini", True)
    assert preview.chosen == "openai:gpt-4o-mini"
    assert (await ask(url, key, "keyless")).model == "openai:gpt-4o-mini"


async def test_router_on_the_stdio_handlers_and_router_set_delete(stack: tuple[Services, str, str]) -> None:
    services, _, _ = stack
    params = msgspec.convert(
        {"model": "router:pair", "messages": [{"role": "user", "content": "hi"}]}, CompleteParams
    )
    result = await services.handlers["complete"](params, Ctx())
    assert (result.provider, result.model) == ("openai", "gpt-4o-mini")
    settings = RouterSettings(models=["anthropic:claude-haiku-4-5"])
    await services.handlers["router_set"](RouterSetParams(name="mine", settings=settings), Ctx())
    names = {(r.name, r.source) for r in (await services.handlers["router_list"](Empty(), Ctx())).routers}
    assert {("cheapest", "builtin"), ("best", "builtin"), ("pair", "config"), ("mine", "stored")} <= names
    mine = msgspec.structs.replace(params, model="router:mine")
    assert (await services.handlers["stream"](mine, Ctx())).provider == "anthropic"
    assert (await services.handlers["router_delete"](RouterDeleteParams(name="mine"), Ctx())).deleted
    from sidecar.errors import SidecarError

    with pytest.raises(SidecarError) as exc:
        await services.handlers["complete"](mine, Ctx())
    assert exc.value.kind == "model_not_found"


async def test_a_routers_own_limits_stop_requests_with_429(stack: tuple[Services, str, str]) -> None:
    _, url, key = stack
    await ask(url, key, "router:slow")
    with pytest.raises(openai.RateLimitError) as exc:
        await ask(url, key, "router:slow")
    assert exc.value.code == "rate_limited" and int(exc.value.response.headers["retry-after"]) >= 1
    await ask(url, key, "router:thrifty")  # spends more than its day allows
    with pytest.raises(openai.RateLimitError) as spent:
        await ask(url, key, "thrifty")
    assert spent.value.code == "budget_exceeded"
    await ask(url, key, "router:pair")  # other routers are not affected


async def test_ledger_rows_and_usage_summary_name_the_router(
    stack: tuple[Services, str, str], tmp_path: Path
) -> None:
    services, url, key = stack
    await ask(url, key, "router:pair")
    await ask(url, key, "pair")  # the plain name: the same router
    await ask(url, key, "openai:gpt-4o-mini")  # no router
    await anyio.to_thread.run_sync(services.usage.ledger.flush)
    assert [(r["router"], r["client"]) for r in ledger(tmp_path)] == [
        ("pair", "k"),
        ("pair", "k"),
        (None, "k"),
    ]
    summary = await services.handlers["usage_summary"](UsageSummaryParams(group_by="router"), Ctx())
    assert {g.key: g.requests for g in summary.groups} == {"pair": 2, None: 1}
    only = await services.handlers["usage_summary"](UsageSummaryParams(router="pair"), Ctx())
    assert only.total.requests == 2
    for span in ("1h", "7d"):  # from memory, and from the ledger
        metrics = await services.handlers["metrics"](MetricsParams(range=span, group_by="router"), Ctx())
        totals = {s.key: sum(v or 0 for _, v in s.points) for s in metrics.series}
        assert totals == {"pair": 2.0, None: 1.0}, span
    await anyio.to_thread.run_sync(services.access_log.flush)
    (log_file,) = (tmp_path / "logs").iterdir()
    access = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [r.get("router") for r in access] == ["pair", "pair", None]


async def test_a_routers_spend_today_outlives_a_restart(
    tmp_path: Path, fakes: tuple[FakeOpenAICompat, FakeAnthropic]
) -> None:
    """The process that spent `thrifty`'s day is gone; the next one reads the day's spend from the
    ledger, so the router still refuses (before, its counter started again from zero)."""
    oa, an = fakes
    env = {"SIDECAR_HOME": str(tmp_path), "OPENAI_BASE_URL": oa.api_base, "ANTHROPIC_BASE_URL": an.url}
    config = msgspec.convert(tomllib.loads(CONFIG), Config)
    for life in ("spends", "restarted"):
        services = build_services(config, store=MemoryStore({"openai": "sk-test-valid"}), env=env)
        async with anyio.create_task_group() as tg:
            await services.start_background(tg)
            url = (await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())).url
            name = ClientKeyCreateParams(name=f"k-{life}")
            key = (await services.handlers["client_key_create"](name, Ctx())).key
            if life == "spends":
                await ask(url, key, "router:thrifty")  # spends more than its day allows
            with pytest.raises(openai.RateLimitError) as spent:
                await ask(url, key, "router:thrifty")
            assert spent.value.code == "budget_exceeded"
            await services.stop_gateway()
            tg.cancel_scope.cancel()
        await services.aclose()
    assert len(oa.requests) == 1
    outcomes = [(r["router"], r["outcome"]) for r in ledger(tmp_path)]
    assert outcomes == [("thrifty", "ok"), ("thrifty", "refused"), ("thrifty", "refused")]


class Held:
    """A chat hook that holds the request tagged `held` inside its `before` or its `after` (as
    the usage hook waits there on Redis in team mode) until released, counting every call."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.calls: list[tuple[str, str | None]] = []
        self.entered = anyio.Event()
        self.release = anyio.Event()

    async def _hold(self, step: str, tag: str | None) -> None:
        self.calls.append((step, tag))
        if step == self.where and tag == "held" and not self.entered.is_set():
            self.entered.set()
            await self.release.wait()

    async def before(self, ref: Any, params: CompleteParams) -> None:
        await self._hold("before", params.tag)

    async def after(self, outcome: Any) -> None:
        await self._hold("after", outcome.tag)


@pytest.mark.parametrize("where", ["before", "after"])
async def test_the_first_router_request_runs_no_waiting_requests_hook_twice(
    stack: tuple[Services, str, str], where: str
) -> None:
    """The first `router:` request adds the routers' hook to the chat hooks while other requests
    are inside theirs. Inserted into the list they were walking, it shifted the hook they waited in
    one place on, and they ran it again: in team mode that was the usage hook, waiting on Redis to
    reserve (a second reservation: the request refused by its own hold) or to settle (a second
    `ok` ledger row for one answer)."""
    services, _, _ = stack
    hook = Held(where)
    services.chat.hooks.append(hook)
    complete = services.handlers["complete"]

    def params(model: str, tag: str) -> CompleteParams:
        raw = {"model": model, "messages": [{"role": "user", "content": "hi"}], "tag": tag}
        return msgspec.convert(raw, CompleteParams)

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete, params("openai:gpt-4o-mini", "held"), Ctx())
        with anyio.fail_after(30):
            await hook.entered.wait()
        await complete(params("router:pair", "routed"), Ctx())  # this process's first router request
        hook.release.set()
    assert sorted(hook.calls) == [
        ("after", "held"),
        ("after", "routed"),
        ("before", "held"),
        ("before", "routed"),
    ]
