"""`count_tokens` through the real services: the provider's exact count when it can be asked, the
sidecar's estimate when it cannot (no key yet, the provider unreachable: a host's token counter
keeps working offline), and an error for what is the request's own fault."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.app import build_services
from sidecar.config import Config
from sidecar.errors import SidecarError
from sidecar.infra.keystore import MemoryStore
from sidecar.wire.chat import CompleteParams, CountTokensResult
from tests.fakes.anthropic import VALID_KEY, FakeAnthropic

pytestmark = pytest.mark.anyio

ASK = {"model": "anthropic:claude-sonnet-4-5", "messages": [{"role": "user", "content": "count these words"}]}


class Ctx:
    request_id = "t"

    async def notify(self, method: str, params: Any) -> None:
        return None


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def count(tmp_path: Path, base_url: str, keys: dict[str, str], **over: Any) -> CountTokensResult:
    env = {"SIDECAR_HOME": str(tmp_path), "ANTHROPIC_BASE_URL": base_url}
    services = build_services(Config(), store=MemoryStore(keys), env=env)
    try:
        params = msgspec.convert({**ASK, **over}, CompleteParams)
        result = await services.handlers["count_tokens"](params, Ctx())
        assert isinstance(result, CountTokensResult)
        return result
    finally:
        await services.aclose()


async def test_exact_from_the_provider_and_estimated_when_it_cannot_be_asked(tmp_path: Path) -> None:
    with FakeAnthropic() as fake:
        exact = await count(tmp_path / "a", fake.url, {"anthropic": VALID_KEY})
        assert exact.exact and exact.input_tokens > 0 and len(fake.requests) == 1
        no_key = await count(tmp_path / "b", fake.url, {})
        assert not no_key.exact and no_key.input_tokens > 0 and len(fake.requests) == 1
    offline = await count(tmp_path / "c", closed_port_url(), {"anthropic": VALID_KEY})
    assert not offline.exact and offline.input_tokens == no_key.input_tokens
    assert (offline.provider, offline.model) == ("anthropic", "claude-sonnet-4-5")


async def test_the_requests_own_fault_is_an_error(tmp_path: Path) -> None:
    with FakeAnthropic() as fake:
        with pytest.raises(SidecarError) as unknown:
            await count(tmp_path, fake.url, {"anthropic": VALID_KEY}, model="nosuch:model")
        assert unknown.value.kind == "unsupported_provider" and unknown.value.field == "model"
        with pytest.raises(SidecarError) as refused:  # Claude refuses a conversation it cannot count
            await count(tmp_path, fake.url, {"anthropic": VALID_KEY}, messages=[
                {"role": "assistant", "content": "first"}, {"role": "user", "content": [{"type": "image", "url": "ftp://x"}]}])  # fmt: skip
        assert refused.value.kind == "invalid_request" and refused.value.provider == "anthropic", (
            refused.value
        )
        assert len(fake.requests) == 1  # asked, and refused
