"""Behind a company proxy: a spawned `llm-sidecar` reaches an https provider through a real
forward proxy on 127.0.0.1 (CONNECT, Basic credentials, TLS end to end), from `HTTPS_PROXY` or
`[http] proxy`; a refused or unusable proxy is a clear `network_error`; loopback upstreams are
reached directly; the proxy's password is never printed."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.forward_proxy import ForwardProxy, Tunnel
from tests.fakes.openai_compat import FakeOpenAICompat
from tests.harness import Sidecar, run_once
from tests.tls import make_certificate

HOST = "api.openai.test"
USER, PASSWORD = "corp", "pr0xy-s3cret-pw"
BASIC = "Basic Y29ycDpwcjB4eS1zM2NyZXQtcHc="  # corp:pr0xy-s3cret-pw
ASK = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def certificate() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as folder:
        yield make_certificate(Path(folder), names=(HOST,))


@pytest.fixture
def upstream() -> Iterator[FakeOpenAICompat]:
    with FakeOpenAICompat("openai") as fake:
        yield fake


@pytest.fixture
def proxy(certificate: tuple[str, str], upstream: FakeOpenAICompat) -> Iterator[ForwardProxy]:
    with ForwardProxy({f"{HOST}:443": upstream.port}, *certificate, credentials=(USER, PASSWORD)) as p:
        yield p


def env(certificate: tuple[str, str], **more: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": f"https://{HOST}/v1",
        "OPENAI_API_KEY": "sk-test-valid",
        "SSL_CERT_FILE": certificate[0],
        "SIDECAR_LOG_LEVEL": "info",
        **more,
    }


def test_complete_and_stream_go_through_the_proxy_from_https_proxy(
    certificate: tuple[str, str], proxy: ForwardProxy, upstream: FakeOpenAICompat
) -> None:
    with Sidecar(env(certificate, HTTPS_PROXY=proxy.url_with(USER, PASSWORD))) as sc:
        assert sc.result("complete", ASK)["text"] == "Echo: hello there"
        assert sc.result("stream", ASK, timeout=20)["text"] == "Echo: hello there"
        stderr = sc.stderr_text
    assert proxy.tunnels[0] == Tunnel(f"{HOST}:443", BASIC, opened=True)
    assert {t.target for t in proxy.tunnels} == {f"{HOST}:443"}
    # TLS ran end to end: the upstream got the request and its key, the proxy saw neither.
    assert [r.bearer for r in upstream.requests] == ["sk-test-valid", "sk-test-valid"]
    assert f"{proxy.url} (from HTTPS_PROXY)" in stderr
    assert PASSWORD not in stderr


def test_the_proxy_from_config_toml_works_the_same(certificate: tuple[str, str], proxy: ForwardProxy) -> None:
    config = f'[http]\nproxy = "{proxy.url_with(USER, PASSWORD)}"\n'
    with Sidecar(env(certificate), config=config) as sc:
        assert sc.result("complete", ASK)["text"] == "Echo: hello there"
        assert PASSWORD not in sc.stderr_text
    assert [t.opened for t in proxy.tunnels] == [True]


def test_refused_credentials_are_a_clear_network_error_without_the_password(
    certificate: tuple[str, str], proxy: ForwardProxy, upstream: FakeOpenAICompat
) -> None:
    with Sidecar(env(certificate, HTTPS_PROXY=proxy.url_with(USER, "wrong-pw"))) as sc:
        error = sc.call("complete", ASK, timeout=20)["error"]["data"]
        stderr = sc.stderr_text
    assert error["kind"] == "network_error"
    assert "through the proxy" in error["message"] and "407" in error["message"]
    assert "wrong-pw" not in error["message"] and "wrong-pw" not in stderr
    # Refused credentials stay refused: asked once, not retried.
    assert [t.opened for t in proxy.tunnels] == [False]
    assert upstream.requests == []


def test_an_unusable_proxy_fails_requests_instead_of_going_around_it(
    certificate: tuple[str, str], proxy: ForwardProxy, upstream: FakeOpenAICompat
) -> None:
    with Sidecar(env(certificate, HTTPS_PROXY="https://corp:pw@127.0.0.1:1")) as sc:
        error: dict[str, Any] = sc.call("complete", ASK, timeout=20)["error"]["data"]
    assert error["kind"] == "network_error"
    assert "only http:// proxies are supported" in error["message"] and "HTTPS_PROXY" in error["message"]
    assert upstream.requests == [] and proxy.tunnels == []
    assert "attempts" not in (error.get("details") or {})  # not retried


def test_loopback_upstreams_are_reached_directly(proxy: ForwardProxy, upstream: FakeOpenAICompat) -> None:
    everything = proxy.url_with(USER, PASSWORD)
    proxied = {"HTTPS_PROXY": everything, "HTTP_PROXY": everything, "ALL_PROXY": everything}
    with Sidecar({"OPENAI_BASE_URL": upstream.api_base, "OPENAI_API_KEY": "sk-test-valid", **proxied}) as sc:
        assert sc.result("complete", ASK)["text"] == "Echo: hello there"
    assert proxy.tunnels == []
    assert len(upstream.requests) == 1


def test_a_bad_proxy_in_config_toml_stops_the_start_without_showing_the_password(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[http]\nproxy = "socks5://corp:pr0xy-s3cret-pw@10.0.0.1:1080"\n')
    done = run_once(tmp_path)
    assert done.returncode == 2
    assert b"[http] proxy is a socks5:// proxy; only http:// proxies are supported" in done.stderr
    assert PASSWORD.encode() not in done.stderr
