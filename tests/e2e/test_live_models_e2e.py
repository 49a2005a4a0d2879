"""`list_models {live: true}` through the spawned sidecar, against fakes that serve each provider's
model-listing route as the provider does: OpenAI's /models, OpenRouter's public catalog with
prices, Anthropic's paged /v1/models, Gemini's models.list (with models that cannot chat) and
Ollama's /api/tags. Answers are cached; prices say where they came from."""

from __future__ import annotations

from typing import Any

from tests.fakes.anthropic import VALID_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import VALID_KEY as GEMINI_KEY
from tests.fakes.gemini import FakeGemini
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in result["models"]}


def test_live_lists_of_every_provider_kind_are_read_and_cached() -> None:
    with (
        FakeOpenAICompat(
            "openai", models=["gpt-4o-mini", "text-embedding-3-small", "o4-mini", "ft:gpt-x"]
        ) as oa,
        FakeOpenAICompat("openrouter") as orr,
        FakeAnthropic() as an,
        FakeGemini() as ge,
        FakeOllama(installed=("llama3.2:3b", "qwen2.5:7b")) as ol,
    ):
        env = {
            "OPENAI_BASE_URL": oa.api_base,
            "OPENAI_API_KEY": "sk-test-valid",
            "OPENROUTER_BASE_URL": orr.api_base,
            "ANTHROPIC_BASE_URL": an.url,
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
            "GEMINI_BASE_URL": ge.url,
            "GEMINI_API_KEY": GEMINI_KEY,
            "OLLAMA_HOST": ol.url,
        }
        with Sidecar(env) as sc:
            # Without `live`, nothing is asked: the built-in catalog, priced and dated.
            offline = sc.result("list_models", {"provider": "openai"})
            assert oa.requests == []
            known = by_id(offline)["gpt-4o-mini"]
            assert known["price_source"] == "catalog" and known["price_date"] == offline["pricing_date"]

            openai = sc.result("list_models", {"provider": "openai", "live": True})
            assert set(by_id(openai)) == {"gpt-4o-mini", "o4-mini", "ft:gpt-x"}  # no embeddings
            assert by_id(openai)["gpt-4o-mini"]["input_per_mtok"] == known["input_per_mtok"]
            assert by_id(openai)["ft:gpt-x"].get("input_per_mtok") is None
            [source] = openai["live"]
            assert source["provider"] == "openai" and source["count"] == 3 and not source.get("cached")
            assert oa.requests[-1].path == "/v1/models" and oa.requests[-1].bearer == "sk-test-valid"
            again = sc.result("list_models", {"provider": "openai", "live": True})
            assert again["live"][0]["cached"] is True and len(oa.requests) == 1

            router = by_id(sc.result("list_models", {"provider": "openrouter", "live": True}))
            sonnet = router["anthropic/claude-sonnet-4"]
            assert (sonnet["input_per_mtok"], sonnet["output_per_mtok"]) == (3.0, 15.0)
            assert sonnet["price_source"] == "live" and sonnet["context_window"] == 200_000
            assert orr.requests[-1].bearer is None  # public, no key needed or sent

            claude = by_id(sc.result("list_models", {"provider": "anthropic", "live": True}))
            assert claude["claude-sonnet-4-5-20250929"]["display_name"] == "Claude Sonnet 4.5"
            assert claude["claude-sonnet-4-5-20250929"]["input_per_mtok"] == 3.0
            assert an.requests[-1].headers["x-api-key"] == ANTHROPIC_KEY

            gemini = by_id(sc.result("list_models", {"provider": "gemini", "live": True}))
            assert set(gemini) == {"gemini-2.5-flash", "gemini-3-pro-preview", "gemini-2.0-flash"}
            assert gemini["gemini-2.0-flash"]["max_output_tokens"] == 8192

            local = by_id(sc.result("list_models", {"provider": "ollama", "live": True}))
            assert set(local) == {"llama3.2:3b", "qwen2.5:7b"}
            assert (
                local["qwen2.5:7b"]["input_per_mtok"] == 0 and local["qwen2.5:7b"]["price_source"] == "local"
            )

            # Every provider at once: the ones with a key (or needing none); xAI has none here.
            everything = sc.result("list_models", {"live": True})
            asked = {s["provider"]: s for s in everything["live"]}
            assert {"openai", "anthropic", "gemini", "ollama", "stub"} <= set(asked)
            assert "xai" not in asked
            assert asked["openai"]["cached"] is True


def test_a_failing_live_list_is_the_providers_error() -> None:
    with FakeOpenAICompat("openai") as oa:
        env = {"OPENAI_BASE_URL": oa.api_base, "OPENAI_API_KEY": "sk-wrong"}
        with Sidecar(env) as sc:
            error = sc.call("list_models", {"provider": "openai", "live": True})["error"]["data"]
            assert error["kind"] == "auth_failed" and error["provider"] == "openai"
