"""The dashboard, loaded in headless Chromium (Debian's `chromium`) against a gateway that served
real traffic through the official SDK: the charts hold that traffic, the login link works once,
and a screenshot is kept in build/test-artifacts/dashboard.png."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import openai
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config, Retry
from sidecar.infra.keystore import MemoryStore
from sidecar.wire.base import Empty
from sidecar.wire.gateway import ClientKeyCreateParams, GatewayStartParams
from tests.fakes.openai_compat import FakeOpenAICompat

pytestmark = pytest.mark.anyio

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Ctx:
    request_id = "t"

    async def notify(self, method: str, params: Any) -> None:
        return None


@pytest.fixture
def upstream() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as fake:
        yield fake


@pytest.fixture
async def served(
    tmp_path: Path, upstream: FakeOpenAICompat
) -> AsyncIterator[tuple[Services, str, dict[str, str]]]:
    env = {"SIDECAR_HOME": str(tmp_path), "OPENAI_BASE_URL": upstream.api_base}
    services = build_services(
        Config(retry=Retry(max_attempts=1)), store=MemoryStore({"openai": "sk-test-valid"}), env=env
    )
    async with anyio.create_task_group() as tg:
        await services.start_background(tg)
        started = await services.handlers["gateway_start"](GatewayStartParams(port=0), Ctx())
        keys = {}
        for name in ("alice", "bob"):
            keys[name] = (
                await services.handlers["client_key_create"](ClientKeyCreateParams(name=name), Ctx())
            ).key
        for name, count in (("alice", 3), ("bob", 2)):
            async with openai.AsyncOpenAI(
                base_url=started.url + "/v1", api_key=keys[name], max_retries=0
            ) as client:
                for i in range(count):
                    await client.chat.completions.create(
                        model="openai:gpt-4o-mini",
                        messages=[{"role": "user", "content": f"hello number {i}"}],
                    )
        yield services, started.url, keys
        await services.stop_gateway()
        tg.cancel_scope.cancel()
    await services.aclose()


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium not found: scripts/test installs Debian's chromium package", pytrace=False)
    return found


def run_chromium(*args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


async def login_url(services: Services) -> str:
    status = await services.handlers["gateway_status"](Empty(), Ctx())
    assert status.login_url is not None
    return str(status.login_url)


async def test_login_link_works_once_and_data_needs_a_session_or_key(
    served: tuple[Services, str, dict[str, str]],
) -> None:
    services, url, keys = served
    link = await login_url(services)
    async with httpx2.AsyncClient() as http:
        assert (await http.get(url + "/")).status_code == 401
        assert (await http.get(url + "/dashboard/data")).status_code == 401
        first = await http.get(link)
        assert first.status_code == 303 and "lsk_dashboard" in first.headers["set-cookie"]
        assert "httponly" in first.headers["set-cookie"].lower()
        assert (await http.get(link)).status_code == 401  # used already
        http.cookies.set("lsk_dashboard", first.cookies["lsk_dashboard"])
        page = await http.get(url + "/")
        assert page.status_code == 200 and "/static/uPlot.iife.min.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        data = (
            await http.get(
                url + "/dashboard/data?range=1h", headers={"authorization": f"Bearer {keys['bob']}"}
            )
        ).json()
        form = await http.post(url + "/login", data={"key": keys["alice"]})
        assert form.status_code == 303
        lib = await http.get(url + "/static/uPlot.iife.min.js")
        assert lib.status_code == 200 and lib.headers["content-type"].startswith("text/javascript")
        assert (await http.get(url + "/static/..%2Fhttp.py")).status_code == 404
    assert data["totals"]["requests"] == 5 and data["totals"]["success_rate"] == 1.0
    assert {s["key"] for s in data["tokens_by_client"]["series"]} == {"alice", "bob"}
    assert [r["client"] for r in data["recent"]][:5] == ["bob", "bob", "alice", "alice", "alice"]
    for secret in keys.values():
        assert secret not in str(data)


async def test_dashboard_in_headless_chromium_holds_the_traffic(
    served: tuple[Services, str, dict[str, str]],
) -> None:
    services, _, _ = served
    link = await login_url(services)
    dom = await anyio.to_thread.run_sync(
        lambda: run_chromium("--virtual-time-budget=15000", "--dump-dom", link)
    )
    assert 'data-ready="1"' in dom, dom[-3000:]

    def attr(chart: str, name: str) -> str:
        found = re.search(rf'id="{chart}"[^>]*?data-{name}="([^"]*)"', dom) or re.search(
            rf'data-{name}="([^"]*)"[^>]*?id="{chart}"', dom
        )
        assert found, f"{chart} has no data-{name}"
        return found.group(1)

    assert float(attr("chart-requests", "sum")) == 5
    assert attr("chart-requests", "series") == "all"
    assert sorted(attr("chart-tokens-client", "series").split(",")) == ["alice", "bob"]
    assert float(attr("chart-tokens-client", "sum")) > 0
    assert attr("chart-requests-provider", "series") == "openai"
    assert dom.count('class="uplot') >= 4  # four charts drawn by the vendored library
    assert re.search(r'id="total-requests">5<', dom)
    assert dom.count("<td>alice</td>") == 3 and dom.count("<td>bob</td>") == 2

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    link = await login_url(services)
    await anyio.to_thread.run_sync(
        lambda: run_chromium(
            "--virtual-time-budget=15000", "--window-size=1280,1200", f"--screenshot={shot}", link
        )
    )
    assert shot.stat().st_size > 10_000
