"""Which upstream URL goes through which proxy: the environment's variables as curl reads them,
`[http] proxy` over them, NO_PROXY and loopback reached directly, credentials never shown."""

from __future__ import annotations

import pytest

from sidecar.config import proxy_problem
from sidecar.core.proxy import Proxies, Proxy, ProxyProblem, parse_proxy

CORP = "http://proxy.corp:3128"


def test_the_environment_names_a_proxy_per_scheme_lower_case_first() -> None:
    proxies = Proxies(env={"HTTPS_PROXY": "http://upper:1", "https_proxy": CORP, "HTTP_PROXY": "plain:8080"})
    assert proxies.for_url("https://api.openai.com/v1/chat/completions") == Proxy(
        CORP + "", None, "https_proxy"
    )
    assert proxies.for_url("http://models.corp/v1") == Proxy("http://plain:8080", None, "HTTP_PROXY")


def test_all_proxy_covers_the_schemes_without_their_own() -> None:
    proxies = Proxies(env={"ALL_PROXY": CORP, "http_proxy": "http://web:80"})
    assert proxies.for_url("https://api.x.ai/v1") == Proxy(CORP, None, "ALL_PROXY")
    assert proxies.for_url("http://models.corp/v1") == Proxy("http://web:80", None, "http_proxy")


def test_no_proxy_set_means_direct_and_empty_values_count_as_unset() -> None:
    assert Proxies(env={}).for_url("https://api.openai.com/v1") is None
    assert Proxies(env={"HTTPS_PROXY": "  "}).for_url("https://api.openai.com/v1") is None


def test_loopback_is_never_proxied() -> None:
    proxies = Proxies(CORP)
    for url in ("http://localhost:11434/api/chat", "http://127.0.0.1:8080/v1", "http://[::1]:1234/v1"):
        assert proxies.for_url(url) is None
    assert proxies.for_url("https://api.anthropic.com/v1/messages") is not None


@pytest.mark.parametrize(
    ("no_proxy", "host", "direct"),
    [
        ("*", "https://api.openai.com", True),
        ("openai.com", "https://api.openai.com", True),
        (".openai.com", "https://api.openai.com", True),
        ("*.openai.com", "https://api.openai.com", True),
        ("openai.com", "https://notopenai.com", False),
        ("api.openai.com:8443", "https://api.openai.com", False),
        ("api.openai.com:443", "https://api.openai.com", True),
        ("10.0.0.0/8", "http://10.1.2.3:8000", True),
        ("10.0.0.0/8", "http://11.1.2.3:8000", False),
        ("192.168.1.5", "http://192.168.1.5:11434", True),
        ("[fd00::1]:8000", "http://[fd00::1]:8000", True),
        ("Example.COM, other.org", "https://api.example.com.", True),
    ],
)
def test_no_proxy_entries_match_as_curl_matches_them(no_proxy: str, host: str, direct: bool) -> None:
    proxies = Proxies(env={"ALL_PROXY": CORP, "NO_PROXY": no_proxy})
    assert (proxies.for_url(host + "/v1") is None) is direct


def test_config_names_its_own_proxy_or_none_over_the_environment() -> None:
    env = {"HTTPS_PROXY": CORP, "no_proxy": "internal.corp"}
    assert Proxies("none", env=env).for_url("https://api.openai.com") is None
    mine = Proxies("http://mine:8080", ["models.lan"], env=env)
    assert mine.for_url("https://api.openai.com") == Proxy("http://mine:8080", None, "[http] proxy")
    assert mine.for_url("https://api.internal.corp") is None  # NO_PROXY still applies
    assert mine.for_url("http://gpu.models.lan:8000") is None  # and [http] no_proxy


def test_credentials_become_basic_authorization_and_are_never_shown() -> None:
    proxy = parse_proxy("http://corp%40dom:p%3Ass@proxy.corp:3128", "HTTPS_PROXY")
    assert proxy.url == "http://proxy.corp:3128"
    assert proxy.authorization == "Basic Y29ycEBkb206cDpzcw=="  # corp@dom:p:ss
    assert proxy.shown == "http://proxy.corp:3128 (from HTTPS_PROXY)"
    assert Proxies(env={"HTTPS_PROXY": "http://u:secret@p:1"}).configured == (
        Proxy("http://p:1", "Basic dTpzZWNyZXQ=", "HTTPS_PROXY"),
    )


def test_an_unusable_proxy_variable_fails_its_requests_and_never_shows_the_password() -> None:
    proxies = Proxies(env={"HTTPS_PROXY": "https://u:secret@proxy.corp:443"})
    with pytest.raises(ProxyProblem) as info:
        proxies.for_url("https://api.openai.com/v1")
    assert "HTTPS_PROXY is a https:// proxy" in str(info.value) and "secret" not in str(info.value)
    assert proxies.for_url("http://127.0.0.1:11434") is None  # loopback needs no proxy
    assert proxies.configured == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://proxy:3128", None),
        ("proxy.corp:8080", None),
        ("socks5://u:pw@proxy:1080", "is a socks5:// proxy; only http:// proxies are supported"),
        ("http://proxy:port", "is not a proxy URL (http://host:port)"),
        ("http://", "is not a proxy URL (http://host:port)"),
    ],
)
def test_what_a_proxy_setting_may_be(value: str, problem: str | None) -> None:
    said = proxy_problem(value)
    assert (said if said is None else said.split(" (https")[0]) == problem
