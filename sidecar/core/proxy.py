"""Which upstream requests go through an HTTP proxy, and with what credentials.

A company network often lets nothing out but through its proxy, and says so in the environment:
`HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and `NO_PROXY` (lower case first, as curl and Python
read them). The sidecar honours them, as the official SDKs do, unless `[http] proxy` in config.toml
names a proxy of its own (`http://host:port`) or says `"none"`; `[http] no_proxy` lists hosts to
reach directly on top of `NO_PROXY`. A `NO_PROXY` entry is `*`, a host name (its subdomains
match too), an IP address or a CIDR block, each optionally with `:port`.

Loopback hosts (localhost, 127.0.0.0/8, ::1: Ollama, a local server) are never proxied: a proxy
could not reach this machine's loopback. Only `http://` proxies are supported; `https://` upstreams
go through them in a `CONNECT` tunnel, so TLS runs end to end and the proxy sees no key. Credentials
in a proxy URL (`http://user:password@host:port`) become a `Proxy-Authorization` header and are
never shown: `shown` is the proxy without them.

Must not know: aiohttp, the providers, the protocol.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Final
from urllib.parse import unquote, urlsplit

import msgspec

from sidecar.config import is_loopback, proxy_problem, proxy_url

_SCHEMES: Final = ("https", "http")


class ProxyProblem(ValueError):
    """A proxy setting the sidecar cannot use (the message says which and why)."""


class Proxy(msgspec.Struct, frozen=True):
    url: str  # http://host:port, without credentials
    authorization: str | None = None  # the Proxy-Authorization header's value
    source: str = ""  # where it was set: "[http] proxy" or the environment variable

    @property
    def shown(self) -> str:
        return f"{self.url} (from {self.source})" if self.source else self.url


def parse_proxy(value: str, source: str) -> Proxy:
    """`http://[user:password@]host[:port]` (a bare `host:port` means http); `ProxyProblem` if not."""
    problem = proxy_problem(value)
    if problem:
        raise ProxyProblem(f"{source} {problem}")
    parts = urlsplit(proxy_url(value))
    hostname = parts.hostname or ""
    host = hostname if ":" not in hostname else f"[{hostname}]"
    url = f"http://{host}:{parts.port or 80}"
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(url, authorization, source)


class Proxies:
    """The proxy (or none) for each upstream URL; what it decides is kept per URL.

    A proxy variable the sidecar cannot use (`HTTPS_PROXY=https://...`) is not skipped, which would
    send requests past the proxy the network expects: each request it would carry fails with
    `ProxyProblem`, saying why."""

    def __init__(
        self, setting: str | None = None, no_proxy: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> None:
        env = env or {}
        self._by_scheme: dict[str, Proxy | ProxyProblem] = {}
        if setting is None:
            every = _from_env(env, "all")
            for scheme in _SCHEMES:
                proxy = _from_env(env, scheme) or every
                if proxy is not None:
                    self._by_scheme[scheme] = proxy
        elif setting.strip().lower() != "none":
            self._by_scheme = dict.fromkeys(_SCHEMES, parse_proxy(setting, "[http] proxy"))
        self._bypass = _Bypass([*_split(_env(env, "no_proxy")[1] or ""), *no_proxy])
        self._decided: dict[str, Proxy | ProxyProblem | None] = {}

    @property
    def configured(self) -> tuple[Proxy, ...]:
        """Each distinct proxy in use, for a line in the log (never its credentials)."""
        return tuple(dict.fromkeys(p for p in self._by_scheme.values() if isinstance(p, Proxy)))

    def for_url(self, url: str) -> Proxy | None:
        """The proxy for `url`, None to connect directly; `ProxyProblem` if its proxy is unusable."""
        if not self._by_scheme:
            return None
        if url in self._decided:
            proxy = self._decided[url]
        else:
            proxy = self._decide(url)
            if len(self._decided) < 1024:  # a provider calls a few URLs, again and again
                self._decided[url] = proxy
        if isinstance(proxy, ProxyProblem):
            raise proxy
        return proxy

    def _decide(self, url: str) -> Proxy | ProxyProblem | None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        if not host or is_loopback(host) or self._bypass.matches(host, port):
            return None
        return self._by_scheme.get(parts.scheme)


def _env(env: Mapping[str, str], name: str) -> tuple[str, str | None]:
    """The variable's name as set (lower case wins) and its value; empty counts as unset."""
    for variable in (name.lower(), name.upper()):
        value = env.get(variable)
        if value and value.strip():
            return variable, value
    return name.upper(), None


def _from_env(env: Mapping[str, str], scheme: str) -> Proxy | ProxyProblem | None:
    variable, value = _env(env, f"{scheme}_proxy")
    if not value:
        return None
    try:
        return parse_proxy(value, variable)
    except ProxyProblem as problem:
        return problem


def _split(text: str) -> list[str]:
    return [e.strip() for e in text.replace(" ", ",").split(",") if e.strip()]


class _Bypass:
    """`NO_PROXY`'s entries, matched the way curl matches them."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everything = False
        self.names: list[tuple[str, int | None]] = []
        self.networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for raw in entries:
            entry = raw.strip().lower()
            if entry == "*":
                self.everything = True
                continue
            host, port = _host_port(entry)
            try:
                self.networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                self.names.append((host.lstrip(".").removeprefix("*."), port))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return any(
                address in network and (want is None or want == port) for network, want in self.networks
            )
        return any(
            (host == name or host.endswith("." + name)) and (want is None or want == port)
            for name, want in self.names
        )


def _host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port) if port.isdigit() else None
    return entry, None
