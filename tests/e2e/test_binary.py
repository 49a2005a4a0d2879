"""The PyInstaller one-folder build (scripts/build-binary) driven over pipes as an app bundle would:
plain host methods against a fake provider, the MCP face (whose SDK the build must carry though
it is imported only on the first MCP request), and a key through the real Secret Service (keyring
finds its backends by entry points, which the build must carry too).

The build is made once per session (tests/e2e/binary.py), so every run of the suite tests it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from sidecar.mcp.tools import ADMIN_TOOLS
from sidecar.wire.methods import METHODS
from tests.e2e.binary import built_binary  # noqa: F401 (the session fixture)
from tests.e2e.keys_support import SECRET_SERVICE_BACKEND, clear, lookup
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar

KEY = "sk-test-valid"
ASK = [{"role": "user", "content": "Hello from a bundle"}]


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as fake:
        yield fake


def test_binary_name_carries_the_target_triple(built_binary: Path) -> None:  # noqa: F811
    assert built_binary.name.startswith("llm-sidecar-")
    assert built_binary.name.count("-") >= 4  # llm-sidecar-<arch>-<vendor>-<os>[-<abi>]
    assert (built_binary.parent / "_internal").is_dir()


def test_binary_answers_info_complete_and_stream(
    built_binary: Path,  # noqa: F811
    openai: FakeOpenAICompat,
) -> None:
    env = {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}
    with Sidecar(env, executable=str(built_binary), args=["--stdio"]) as sc:
        info = sc.result("info")
        assert info["methods"] == list(METHODS)
        assert info["pricing_date"]  # the catalog (a data file) is inside the bundle
        done = sc.result("complete", {"model": "openai:gpt-4o-mini", "messages": ASK})
        assert done["text"] == "Echo: Hello from a bundle"
        assert done["cost_usd"] is not None
        rid = sc.start("stream", {"model": "openai:gpt-4o-mini", "messages": ASK})
        streamed = sc.wait(rid)["result"]
        deltas = [e["text"] for e in sc.events(rid) if e["type"] == "text_delta"]
        assert len(deltas) > 1 and "".join(deltas) == streamed["text"] == done["text"]
        sc.close_stdin()
        assert sc.wait_exit(5) == 0
        assert sc.bad_lines == []


def test_binary_gateway_answers_on_httptools(
    built_binary: Path,  # noqa: F811
    openai: FakeOpenAICompat,
) -> None:
    env = {"OPENAI_BASE_URL": openai.api_base, "OPENAI_API_KEY": KEY}
    with Sidecar(env, executable=str(built_binary), args=["--stdio"]) as sc:
        key = sc.result("client_key_create", {"name": "bundle"})["key"]
        url = sc.result("gateway_start", {"port": 0}, timeout=30)["url"]
        answer = httpx2.post(
            url + "/v1/chat/completions",
            json={"model": "openai:gpt-4o-mini", "messages": ASK},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Echo: Hello from a bundle"
        sc.close_stdin()
        assert sc.wait_exit(10) == 0
        # The bundle carries httptools' compiled parser: no fall-back to the h11 server.
        assert "httptools unavailable" not in sc.stderr_text


def test_binary_serves_mcp_initialize_and_tools_list(built_binary: Path) -> None:  # noqa: F811
    with Sidecar(executable=str(built_binary)) as sc:
        init = sc.result(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "bundle-test", "version": "1"},
            },
            timeout=30,
        )
        assert init["serverInfo"]["name"] == "llm-sidecar"
        sc.notify("notifications/initialized")
        tools = sc.result("tools/list", {}, timeout=30)["tools"]
        assert [t["name"] for t in tools] == [m for m in METHODS if m not in ADMIN_TOOLS]
        by_name = {t["name"]: t for t in tools}
        assert by_name["delete_key"]["annotations"]["destructiveHint"] is True
        assert sc.bad_lines == []


@pytest.mark.keychain
def test_binary_keeps_a_key_in_the_secret_service(
    built_binary: Path,  # noqa: F811
    secret_service_env: dict[str, str],
    openai: FakeOpenAICompat,
) -> None:
    kc = dict(secret_service_env)
    clear(kc, "openai")
    env = {**kc, "PYTHON_KEYRING_BACKEND": SECRET_SERVICE_BACKEND, "OPENAI_BASE_URL": openai.api_base}
    try:
        with Sidecar(env, executable=str(built_binary)) as sc:
            stored = sc.result("set_key", {"provider": "openai", "api_key": KEY}, timeout=30)
            assert stored["provider"] == "openai" and KEY not in str(stored)
            assert lookup(kc, "openai") == KEY
            [openai_key] = [k for k in sc.result("list_keys")["keys"] if k["provider"] == "openai"]
            assert openai_key["configured"] is True and openai_key["source"] == "keychain"
            answer = sc.result("complete", {"model": "openai:gpt-4o-mini", "messages": ASK})
            assert answer["text"] == "Echo: Hello from a bundle"
            sc.result("delete_key", {"provider": "openai"})
            assert lookup(kc, "openai") is None
    finally:
        clear(kc, "openai")
