"""`embed` against the fakes of every provider with an embeddings API (OpenAI, OpenRouter, a custom
endpoint, Gemini, Ollama), through the handlers the stdio and MCP faces call, and
`POST /v1/embeddings` through the gateway with the official `openai` SDK."""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec
import openai
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config
from sidecar.errors import SidecarError
from sidecar.infra.keystore import MemoryStore
from sidecar.wire.embed import EmbedParams
from sidecar.wire.gateway import ClientKeyCreateParams, GatewayStartParams
from sidecar.wire.usage import SetBudgetParams
from tests.fakes import embeddings
from tests.fakes.gemini import VALID_KEY as GEMINI_KEY
from tests.fakes.gemini import FakeGemini
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_compat import FakeOpenAICompat

pytestmark = pytest.mark.anyio


class Ctx:
    request_id = "t"

    async def notify(self, method: str, params: Any) -> None:
        return None


@dataclass
class Fakes:
    openai: FakeOpenAICompat
    openrouter: FakeOpenAICompat
    gemini: FakeGemini
    ollama: FakeOllama
    custom: FakeOpenAICompat


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with (
        FakeOpenAICompat("openai") as oa,
        FakeOpenAICompat("openrouter") as orr,
        FakeGemini() as ge,
        FakeOllama(installed=["nomic-embed-text:latest"]) as ol,
        FakeOpenAICompat("openai", valid_keys={"local-key"}) as custom,
    ):
        yield Fakes(oa, orr, ge, ol, custom)


@pytest.fixture
async def services(tmp_path: Path, fakes: Fakes) -> AsyncIterator[Services]:
    env = {
        "SIDECAR_HOME": str(tmp_path),
        "OPENAI_BASE_URL": fakes.openai.api_base,
        "OPENROUTER_BASE_URL": fakes.openrouter.api_base,
        "GEMINI_BASE_URL": fakes.gemini.url,
        "OLLAMA_HOST": fakes.ollama.url,
    }
    config = msgspec.convert(
        tomllib.loads(f'[endpoints.lab]\nbase_url = "{fakes.custom.api_base}"\n'),
        Config,
    )
    keys = MemoryStore(
        {
            "openai": "sk-test-valid",
            "openrouter": "sk-or-v1-test-valid",
            "gemini": GEMINI_KEY,
            "lab": "local-key",
        }
    )
    built = build_services(config, store=keys, env=env)
    async with anyio.create_task_group() as tg:
        await built.start_background(tg)
        yield built
        await built.stop_gateway()
        tg.cancel_scope.cancel()
    await built.aclose()


@pytest.mark.parametrize(
    ("model", "estimated"),
    [
        ("openai:text-embedding-3-small", False),
        ("openrouter:openai/text-embedding-3-small", False),
        ("lab:my-embedder", False),
        ("gemini:gemini-embedding-001", True),
        ("ollama:nomic-embed-text", False),
    ],
)
async def test_embed_every_provider_with_usage_and_cost(
    services: Services, model: str, estimated: bool
) -> None:
    texts = ["the quick brown fox", "jumps"]
    result = await services.handlers["embed"](EmbedParams(model=model, input=texts), Ctx())
    assert result.embeddings == [pytest.approx(embeddings.vector(t)) for t in texts]
    assert result.usage.estimated is estimated
    if not estimated:
        assert result.usage.input_tokens == sum(embeddings.tokens(t) for t in texts)
    assert result.usage.input_tokens > 0
    if model.startswith(("openai:", "openrouter:", "gemini:")):
        assert result.cost_usd is not None and result.cost_usd > 0 and result.pricing_date
    if model.startswith("ollama:"):
        assert result.cost_usd == 0.0


async def test_embed_records_a_ledger_row_and_refuses_providers_without_embeddings(
    services: Services, tmp_path: Path
) -> None:
    await services.handlers["embed"](
        EmbedParams(model="openai:text-embedding-3-small", input="x", dimensions=4), Ctx()
    )
    with pytest.raises(SidecarError) as exc:
        await services.handlers["embed"](EmbedParams(model="anthropic:claude-haiku-4-5", input="x"), Ctx())
    assert exc.value.kind == "unsupported_provider"
    with pytest.raises(SidecarError) as missing:
        await services.handlers["embed"](EmbedParams(model="ollama:not-installed", input="x"), Ctx())
    assert missing.value.kind == "model_not_found"
    await anyio.to_thread.run_sync(services.usage.ledger.flush)
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        rows = conn.execute(
            "SELECT method, provider, outcome, input_tokens, output_tokens FROM ledger"
        ).fetchall()
    assert rows[0] == ("embed", "openai", "ok", 2, 0)
    assert [r[2] for r in rows[1:]] == ["error", "error"]


async def test_gateway_embeddings_with_the_openai_sdk(services: Services, fakes: Fakes) -> None:
    started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
    key = (await services.handlers["client_key_create"](ClientKeyCreateParams(name="e"), Ctx())).key
    async with openai.AsyncOpenAI(base_url=started.url + "/v1", api_key=key, max_retries=0) as client:
        res = await client.embeddings.create(
            model="openai:text-embedding-3-small", input=["alpha beta", "gamma"]
        )
        assert [d.embedding for d in res.data] == [
            pytest.approx(embeddings.vector("alpha beta"), abs=1e-6),
            pytest.approx(embeddings.vector("gamma"), abs=1e-6),
        ]
        assert res.usage.prompt_tokens == embeddings.tokens("alpha beta") + embeddings.tokens("gamma")
        floats = await client.embeddings.create(
            model="ollama:nomic-embed-text", input="delta", encoding_format="float", dimensions=3
        )
        assert floats.data[0].embedding == pytest.approx(embeddings.vector("delta", 3))
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="ollama:missing", input="x")
    assert (
        fakes.openai.requests[-1].json()["encoding_format"] == "float"
    )  # the sidecar asks upstream for floats


async def test_a_spent_budget_stops_embeddings_on_every_face(
    services: Services, fakes: Fakes, tmp_path: Path
) -> None:
    """`set_budget` refuses an embedding before sending, as it refuses a chat request: kind
    `budget_exceeded` on stdio/MCP, 429 with Retry-After and code `budget_exceeded` on the gateway."""
    sent = len(fakes.openai.requests)
    await services.handlers["set_budget"](SetBudgetParams(provider="openai", daily_usd=0.0), Ctx())
    with pytest.raises(SidecarError) as refused:
        await services.handlers["embed"](EmbedParams(model="openai:text-embedding-3-small", input="x"), Ctx())
    assert refused.value.kind == "budget_exceeded"
    started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
    key = (await services.handlers["client_key_create"](ClientKeyCreateParams(name="e"), Ctx())).key
    async with openai.AsyncOpenAI(base_url=started.url + "/v1", api_key=key, max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.embeddings.create(model="openai:text-embedding-3-small", input="x")
        assert limited.value.code == "budget_exceeded"
        assert int(limited.value.response.headers["retry-after"]) >= 1
        # Other providers' budgets are untouched.
        await client.embeddings.create(model="ollama:nomic-embed-text", input="x")
    assert len(fakes.openai.requests) == sent  # nothing reached the provider
    await anyio.to_thread.run_sync(services.usage.ledger.flush)
    with sqlite3.connect(tmp_path / "sidecar.db") as conn:
        rows = conn.execute("SELECT provider, outcome, client FROM ledger WHERE method = 'embed'").fetchall()
    assert rows == [("openai", "refused", None), ("openai", "refused", "e"), ("ollama", "ok", "e")]
