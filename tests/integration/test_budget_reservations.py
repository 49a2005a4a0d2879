"""Budgets reserved while requests run, on the in-process coordinator (the desktop default): many
requests started at once against a nearly spent budget no longer each pass it; only as many as
the remaining money holds for their estimates are sent, the rest are refused before sending with
what is held; a finished request settles its hold (the next one sees the spend, not the hold)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config, Retry
from sidecar.core import budget as policy
from sidecar.core.counters import BudgetLine
from sidecar.errors import SidecarError
from sidecar.infra.keystore import MemoryStore
from sidecar.services.usage import UsageService
from sidecar.wire.chat import CompleteParams
from sidecar.wire.usage import SetBudgetParams
from tests.fakes.openai_compat import FakeOpenAICompat

pytestmark = pytest.mark.anyio


class Ctx:
    request_id = 1

    async def notify(self, method: str, params: Any) -> None:
        return None


@pytest.fixture
def openai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai", chunk_delay_s=0.01) as fake:  # streams overlap
        yield fake


@pytest.fixture
async def services(tmp_path: Path, openai: FakeOpenAICompat) -> AsyncIterator[Services]:
    env = {"SIDECAR_HOME": str(tmp_path), "OPENAI_BASE_URL": openai.api_base}
    built = build_services(
        Config(retry=Retry(max_attempts=1)), store=MemoryStore({"openai": "sk-test-valid"}), env=env
    )
    yield built
    await built.aclose()


def params() -> CompleteParams:
    messages = [{"role": "user", "content": "tell me a long story " * 50}]
    return msgspec.convert({"model": "openai:gpt-4o-mini", "messages": messages}, CompleteParams)


async def test_concurrent_requests_cannot_each_pass_a_nearly_spent_budget(
    services: Services, openai: FakeOpenAICompat
) -> None:
    (usage,) = [h for h in services.chat.hooks if isinstance(h, UsageService)]
    # The estimate of one request, from a refusal (a zero budget refuses before anything is sent).
    await usage.set_budget(SetBudgetParams(provider="openai", daily_usd=0.0), Ctx())
    with pytest.raises(SidecarError) as caught:
        await services.chat.complete(params(), Ctx())
    estimate = float(caught.value.details["estimated_cost_usd"])
    assert estimate > 0
    # Room for three estimates and a half: at most three requests may go at once.
    await usage.set_budget(SetBudgetParams(provider="openai", daily_usd=estimate * 3.5), Ctx())

    sent: list[bool] = []
    refusals: list[SidecarError] = []

    async def one() -> None:
        try:
            await services.chat.stream(params(), Ctx())
            sent.append(True)
        except SidecarError as exc:
            refusals.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(one)
    assert len(sent) == 3, f"{len(sent)} requests passed a budget with room for 3"
    assert len(openai.requests) == 3
    assert len(refusals) == 37 and {e.kind for e in refusals} == {"budget_exceeded"}
    held = max(float(e.details.get("reserved_usd", 0.0)) for e in refusals)
    assert estimate * 2 <= held <= estimate * 3 * 1.001  # the refusals name what running requests hold
    # Once they have finished nothing is held; what they cost is spent.
    day = policy.window("day", dt.datetime.now(dt.UTC)).key
    line = BudgetLine(f"budget:openai:{day}", estimate * 3.5, 0.0, 2e9)
    ((spent, reserved),) = await usage.coordinator.figures([line])
    assert reserved == 0.0 and spent > 0.0
