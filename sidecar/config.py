"""Configuration: the state directory, `config.toml`, and the environment variables of the contract.

A malformed file fails fast with a `ConfigError` naming the file, the place and the problem.

Must not know: the protocol, providers' wire formats, I/O beyond reading the one file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec

from sidecar.paths import CONFIG_NAME as CONFIG_NAME  # where it was always imported from
from sidecar.paths import config_file, state_home
from sidecar.wire.base import Wire

if TYPE_CHECKING:
    from pathlib import Path


class ConfigError(Exception):
    """The configuration can't be used; the message says which file and what is wrong."""


class WindowLimits(Wire, forbid_unknown_fields=True):
    """Input tokens, output tokens and USD allowed per sliding window of `window_s` seconds (`[limits]`
    for all providers together, or under a provider's limits). A request that would cross one is
    refused before it is sent (`rate_limited`, with `retry_after_s`), and recorded as refused."""

    window_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    input_tokens_per_window: Annotated[int, msgspec.Meta(ge=0)] | None = None
    output_tokens_per_window: Annotated[int, msgspec.Meta(ge=0)] | None = None
    usd_per_window: Annotated[float, msgspec.Meta(ge=0)] | None = None


class Limits(WindowLimits, forbid_unknown_fields=True):
    """Client-side limits for one provider. A request waits for them at most its `timeout_s` (else
    `first_byte_s`); one that would wait longer fails as `rate_limited` with `retry_after_s`.
    The window fields (tokens and USD per `window_s`) refuse at once instead of waiting."""

    max_concurrent: Annotated[int, msgspec.Meta(ge=1)] | None = None
    min_interval_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    requests_per_minute: Annotated[float, msgspec.Meta(gt=0)] | None = None
    tokens_per_minute: Annotated[float, msgspec.Meta(gt=0)] | None = None


class ProviderSettings(Wire, forbid_unknown_fields=True):
    """Per-provider overrides of a built-in provider. `default_model` is what `<id>:` alone means;
    `enabled = false` refuses the provider's requests and skips it in fallback (`set_provider_enabled`
    overrides it at run time); `allow_insecure` permits plain http to a host that is not loopback;
    `max_connections` overrides `[http]`'s."""

    base_url: str | None = None
    limits: Limits | None = None
    headers: dict[str, str] | None = None
    max_connections: Annotated[int, msgspec.Meta(ge=1)] | None = None
    default_model: str | None = None
    enabled: bool = True
    allow_insecure: bool = False
    response_cache_ttl_s: Annotated[float, msgspec.Meta(gt=0)] | None = None


class Endpoint(Wire, forbid_unknown_fields=True):
    """A custom OpenAI-compatible endpoint (LM Studio, vLLM, llama.cpp, Groq...), declared with no code.

    Its key comes from `api_key_env` if set and present, else from the keychain under the
    endpoint's name when `keychain` is true; `needs_key = false` sends no key at all.
    """

    base_url: str
    models: list[str] = msgspec.field(default_factory=list)
    api_key_env: str | None = None
    keychain: bool = True
    needs_key: bool = True
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    stream_usage: bool = True
    headers: dict[str, str] | None = None
    limits: Limits | None = None
    input_per_mtok: Annotated[float, msgspec.Meta(ge=0)] | None = None
    output_per_mtok: Annotated[float, msgspec.Meta(ge=0)] | None = None
    max_connections: Annotated[int, msgspec.Meta(ge=1)] | None = None
    default_model: str | None = None
    enabled: bool = True
    allow_insecure: bool = False
    response_cache_ttl_s: Annotated[float, msgspec.Meta(gt=0)] | None = None


class Timeouts(Wire, forbid_unknown_fields=True):
    """Seconds allowed to connect; to wait for the first byte of an answer; between two pieces of a
    streamed answer (a request's `timeout_s` overrides this one, and the first-byte one); and for
    the whole request, retries and fallbacks included."""

    connect_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    first_byte_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    idle_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    total_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0


class Http(Wire, forbid_unknown_fields=True):
    """The upstream connections and how much of an answer the sidecar will hold.

    Every provider has a pool of its own (`max_connections` open at once, `max_keepalive` of them
    kept idle, by default all of them); a request that finds its provider's pool full waits for a
    free connection at most `pool_wait_s`, then fails as `overloaded` (the sidecar is the
    bottleneck, not the provider: no breaker failure, no retry). `max_body_mb` caps what is held at
    once (a whole non-streamed body, one SSE event or NDJSON line); `max_answer_chars` caps the
    text, thinking and tool arguments of one answer. Past either, the request fails as
    `provider_error` and is not retried. `proxy` is the HTTP proxy for upstream requests (by
    default the environment's; `core.proxy` decides per request)."""

    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 100
    # None: as many as `max_connections`, so a warm pool never reconnects (a TLS handshake each).
    max_keepalive: Annotated[int, msgspec.Meta(ge=0)] | None = None
    pool_wait_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    max_body_mb: Annotated[float, msgspec.Meta(gt=0)] = 64.0
    max_answer_chars: Annotated[int, msgspec.Meta(ge=1)] = 8_000_000
    # None: the environment's HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; "none": no proxy at all.
    proxy: str | None = None
    no_proxy: list[str] = msgspec.field(default_factory=list)  # reached directly, beside NO_PROXY


class Retry(Wire, forbid_unknown_fields=True):
    """Tries per model (the first included), the backoff between them, and the longest upstream
    `Retry-After` the sidecar will wait out (a longer one goes to the fallback or the host)."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    base_delay_s: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    max_delay_s: Annotated[float, msgspec.Meta(ge=0)] = 8.0
    max_retry_after_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0


class Breaker(Wire, forbid_unknown_fields=True):
    """The circuit breaker: after `failures` transient failures in a row a provider is skipped for
    `cooldown_s`, then tried again with one request."""

    failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    cooldown_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


class Storage(Wire, forbid_unknown_fields=True):
    """Where the ledger, budgets, client keys, routers, audit trail and prices live: the state
    directory's SQLite file (no URL, the default), or the PostgreSQL database at `url`
    (`postgresql://user[:password]@host:port/db`; `SIDECAR_DATABASE_URL` wins), shared by every
    replica of a team gateway through a pool of `pool_min`..`pool_max` connections. A request waits
    `pool_wait_s` at most for one: all of them busy is `overloaded`, none to be had (the server
    away) `storage_unavailable`."""

    url: str | None = None
    pool_min: Annotated[int, msgspec.Meta(ge=0)] = 1
    pool_max: Annotated[int, msgspec.Meta(ge=1)] = 10
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    pool_wait_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0


class Coordination(Wire, forbid_unknown_fields=True):
    """Shared counters for replicas of a team gateway (`infra.coordination`): rate-limit windows and
    budget reservations in Redis or Valkey at `url` (`redis://[:password@]host:port/db`); without a
    URL each process counts on its own. `on_unavailable` says what a request that needs a shared
    limit or budget gets while Redis cannot be reached: `refuse` (`coordination_unavailable`) or
    `local` (this replica's own counters)."""

    url: str | None = None
    on_unavailable: Literal["refuse", "local"] = "refuse"
    key_prefix: str = "llm-sidecar:"
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 64


class GatewaySettings(Wire, forbid_unknown_fields=True):
    """The local HTTP gateway. It binds 127.0.0.1 unless `host` names another address; then it
    refuses to start without client keys. `cors_origins` are the only origins answered with CORS
    headers. `upstream_streaming`: `as_asked` sends a non-streamed request upstream as a
    non-streamed call, as its client would send it to the provider itself, where the provider
    allows (`Provider.takes_whole_call`); `always` streams every call upstream, so the first-byte
    and idle limits watch it and a client that goes away stops the generation."""

    enabled: bool = False
    host: str | None = None
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 3625
    cors_origins: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 32 * 1024 * 1024
    access_log: bool = True
    upstream_streaming: Literal["as_asked", "always"] = "as_asked"


class McpSettings(Wire, forbid_unknown_fields=True):
    """The MCP face. `admin_tools` offers the tools that administer the sidecar itself (the
    gateway, client keys, routers, budgets, providers and endpoints) to the model driving the MCP
    client; they are hidden by default (the host's JSON-RPC face always has them)."""

    admin_tools: bool = False


class RouterLimits(Wire, forbid_unknown_fields=True):
    """A router's own limits, whichever model it picks: requests and tokens per minute, USD per
    UTC day (shared by every replica when `[coordination] url` names a Redis)."""

    requests_per_minute: Annotated[float, msgspec.Meta(gt=0)] | None = None
    tokens_per_minute: Annotated[float, msgspec.Meta(gt=0)] | None = None
    usd_per_day: Annotated[float, msgspec.Meta(ge=0)] | None = None


class RouterSettings(Wire, forbid_unknown_fields=True):
    """A router (`router:<name>` as a model): `models`, a manual ordered list of `provider:model`;
    or automatic selection over the known models that pass `include`/`exclude` patterns, `needs`
    (tools, vision, reasoning) and `min_context`, ordered by `strategy`."""

    models: list[str] | None = None
    strategy: Literal[
        "lowest_cost", "highest_performance", "local_first", "remote_first", "lowest_latency"
    ] = "lowest_cost"
    include: list[str] | None = None
    exclude: list[str] | None = None
    needs: list[Literal["tools", "vision", "reasoning"]] | None = None
    min_context: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_candidates: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    limits: RouterLimits | None = None


class Defaults(Wire, forbid_unknown_fields=True):
    """What a request that leaves these out gets: `model` when it names none, and sampling settings."""

    model: str | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ResponseCacheSettings(Wire, forbid_unknown_fields=True):
    """The response cache's size cap: past it, the least recently used answers are dropped."""

    max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024


class Config(Wire, forbid_unknown_fields=True):
    response_cache: ResponseCacheSettings = msgspec.field(default_factory=ResponseCacheSettings)
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    limits: WindowLimits = msgspec.field(default_factory=WindowLimits)
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    retry: Retry = msgspec.field(default_factory=Retry)
    breaker: Breaker = msgspec.field(default_factory=Breaker)
    http: Http = msgspec.field(default_factory=Http)
    fallback: list[str] = msgspec.field(default_factory=list)
    providers: dict[str, ProviderSettings] = msgspec.field(default_factory=dict)
    endpoints: dict[str, Endpoint] = msgspec.field(default_factory=dict)
    app_name: str = "llm-sidecar"
    app_url: str | None = None
    storage: Storage = msgspec.field(default_factory=Storage)
    coordination: Coordination = msgspec.field(default_factory=Coordination)
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    mcp: McpSettings = msgspec.field(default_factory=McpSettings)
    routers: dict[str, RouterSettings] = msgspec.field(default_factory=dict)


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`SIDECAR_HOME`, else the OS's per-user data directory."""
    from pathlib import Path

    return Path(state_home(env))


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Config, Path]:
    """Read `config.toml` (a missing file means defaults) and return it with the file's path."""
    from pathlib import Path

    found = config_file(path, env)
    return read(found), Path(found)


def read(path: str) -> Config:
    """The configuration in the file at `path` (a missing file means defaults); `ConfigError`
    when it cannot be read or used."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    import tomllib  # only when there is a file to read

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    clash = set(config.endpoints) & BUILTIN_PROVIDERS
    if clash:
        raise ConfigError(
            f"{path}: endpoint name {sorted(clash)[0]!r} is a built-in provider id; choose another name"
        )
    problem = base_url_problems(config)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    proxy = config.http.proxy
    problem = proxy_problem(proxy) if proxy and proxy.strip().lower() != "none" else None
    if problem:
        raise ConfigError(f"{path}: [http] proxy {problem}")
    return config


BASE_URL_ENV: Final = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "gemini": "GEMINI_BASE_URL",
    "xai": "XAI_BASE_URL",
    "openrouter": "OPENROUTER_BASE_URL",
}
"""The environment's base URLs of the providers that send a key (`OLLAMA_HOST` follows Ollama's
own rules and carries no key)."""


def env_url_problem(env: Mapping[str, str] | None = None) -> str | None:
    """The first bad `<ID>_BASE_URL` of the environment, by the same rules as config.toml's."""
    env = os.environ if env is None else env
    for var in BASE_URL_ENV.values():
        value = env.get(var, "").strip()
        if value:
            problem = base_url_problem(value)
            if problem:
                return f"{var}: {problem}"
    return None


_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    import ipaddress

    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxy_url(value: str) -> str:
    """A proxy setting as a URL: a bare `host:port` means http."""
    text = value.strip()
    return text if "://" in text else "http://" + text


def proxy_problem(value: str) -> str | None:
    """Why `value` cannot be a proxy (None when it can): it must be `http://[user:password@]host[:port]`.
    The message never repeats the value, which may hold a password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(proxy_url(value))
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "is not a proxy URL (http://host:port)"
    if not parts.hostname:
        return "is not a proxy URL (http://host:port)"
    if parts.scheme != "http":
        return (
            f"is a {parts.scheme}:// proxy; only http:// proxies are supported "
            "(https upstreams still reach the provider encrypted, through a CONNECT tunnel)"
        )
    return None


def base_url_problem(url: str, *, allow_insecure: bool = False) -> str | None:
    """Why `url` cannot be an API base (None when it can): it needs an http(s) scheme and a host,
    must not carry credentials (keys go in headers, from the keychain), and plain http is only for
    this machine unless `allow_insecure` says otherwise: a key must never cross a network unencrypted."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} must start with https:// (or http:// for this machine)"
    if not parts.hostname:
        return f"{url!r} has no host"
    if parts.username is not None or parts.password is not None:
        return "a base URL must not contain credentials (user:password@); keys are sent in headers"
    if parts.scheme == "http" and not allow_insecure and not is_loopback(parts.hostname):
        return (
            f"{url!r} is plain http to another machine, which would send the API key unencrypted: "
            "use https, or set allow_insecure = true for this endpoint if the network is trusted"
        )
    return None


def endpoint_problem(ep: Endpoint) -> str | None:
    """Why a custom endpoint's base URL cannot be used; one that sends no key may use plain http."""
    return base_url_problem(ep.base_url, allow_insecure=ep.allow_insecure or not ep.needs_key)


def base_url_problems(config: Config) -> str | None:
    """The first bad base URL of `config`, named by where it is set."""
    for pid, settings in config.providers.items():
        if settings.base_url:
            # Ollama sends no key, so plain http to another machine on the network is its usual setup.
            insecure_ok = settings.allow_insecure or pid == "ollama"
            problem = base_url_problem(settings.base_url, allow_insecure=insecure_ok)
            if problem:
                return f"[providers.{pid}] base_url: {problem}"
    for name, ep in config.endpoints.items():
        problem = endpoint_problem(ep)
        if problem:
            return f"[endpoints.{name}] base_url: {problem}"
    return None


def with_runtime(config: Config, endpoints: Mapping[str, Mapping[str, object]]) -> Config:
    """`config` with the endpoints set at run time (`endpoint_set`) over those of the file.
    One that no longer validates is skipped (and logged)."""
    if not endpoints:
        return config
    merged = dict(config.endpoints)
    for name, fields in endpoints.items():
        try:
            ep = msgspec.convert(dict(fields), Endpoint)
        except msgspec.ValidationError as exc:
            from sidecar import logs

            logs.get_logger("config").warning("run-time endpoint ignored", endpoint=name, error=str(exc))
            continue
        if name in BUILTIN_PROVIDERS or endpoint_problem(ep):
            continue
        merged[name] = ep
    return msgspec.structs.replace(config, endpoints=merged)


BUILTIN_PROVIDERS: Final = frozenset({"openai", "anthropic", "gemini", "xai", "openrouter", "ollama", "stub"})
