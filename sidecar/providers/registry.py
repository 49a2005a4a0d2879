"""Which providers exist: the six built-in ones (base URLs from the contract's env vars, overridable
in `config.toml`) and every custom OpenAI-compatible endpoint declared in `config.toml`.

Provider classes are imported on first use, so start-up pays for none of them.

Must not know: the protocol, the keychain's implementation.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from sidecar.config import Config
from sidecar.core.defaults import BUILTIN_DEFAULT_MODELS
from sidecar.core.stub_answers import MODELS as STUB_MODELS
from sidecar.errors import SidecarError
from sidecar.providers.base import KeyGetter, Provider, ProviderSpec
from sidecar.providers.http import HttpClient

BUILTIN: Final = (
    # id, kind, base-url env var, default base URL, key env var
    ("openai", "openai_compatible", "OPENAI_BASE_URL", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("anthropic", "anthropic", "ANTHROPIC_BASE_URL", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    ("gemini", "gemini", "GEMINI_BASE_URL", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY"),
    ("xai", "openai_compatible", "XAI_BASE_URL", "https://api.x.ai/v1", "XAI_API_KEY"),
    (
        "openrouter",
        "openai_compatible",
        "OPENROUTER_BASE_URL",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    ),
    ("ollama", "ollama", "OLLAMA_HOST", "http://127.0.0.1:11434", None),
    ("stub", "stub", None, "stub://offline", None),
)

_CLASSES: Final = {
    "openai_compatible": "sidecar.providers.openai_compat:OpenAICompatProvider",
    "anthropic": "sidecar.providers.anthropic:AnthropicProvider",
    "gemini": "sidecar.providers.gemini:GeminiProvider",
    "ollama": "sidecar.providers.ollama:OllamaProvider",
    "stub": "sidecar.providers.stub:StubProvider",
}


def ollama_base_url(value: str | None) -> str:
    """`OLLAMA_HOST` by Ollama's own rules: `host`, `host:port`, or a URL; a scheme without a port
    means 80/443, no scheme means port 11434; a bind-all address means this machine."""
    value = (value or "").strip()
    if not value:
        return "http://127.0.0.1:11434"
    scheme, _, rest = value.rpartition("://") if "://" in value else ("http", "", value)
    default_port = {"http": 80, "https": 443}.get(scheme, 11434) if "://" in value else 11434
    parts = urlsplit(f"{scheme}://{rest}")
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or default_port
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def builtin_specs(config: Config, env: Mapping[str, str]) -> list[ProviderSpec]:
    specs = []
    for pid, kind, url_env, default, key_env in BUILTIN:
        settings = config.providers.get(pid)
        from_env = env.get(url_env) if url_env else None
        if pid == "ollama":
            from_env = ollama_base_url(from_env) if from_env else None
        # config.toml first, then the environment, then the built-in URL (README, Configuration).
        base = (settings.base_url if settings and settings.base_url else None) or from_env or default
        headers = dict(settings.headers or {}) if settings else {}
        if pid == "openrouter":
            headers.setdefault("x-title", config.app_name)
            if config.app_url:
                headers.setdefault("http-referer", config.app_url)
        specs.append(
            ProviderSpec(
                id=pid,
                kind=kind,
                base_url=base.rstrip("/"),
                key_env=key_env,
                needs_key=key_env is not None,
                keychain_account=pid if key_env else None,
                extra_headers=headers,
                models=STUB_MODELS if pid == "stub" else (),
                default_model=(settings.default_model if settings else None)
                or BUILTIN_DEFAULT_MODELS.get(pid),
                enabled=settings.enabled if settings else True,
            )
        )
    return specs


def endpoint_specs(config: Config) -> list[ProviderSpec]:
    return [
        ProviderSpec(
            id=name,
            kind="openai_compatible",
            base_url=ep.base_url.rstrip("/"),
            key_env=ep.api_key_env,
            needs_key=ep.needs_key,
            keychain_account=name if ep.keychain else None,
            custom=True,
            models=tuple(ep.models),
            extra_headers=dict(ep.headers or {}),
            default_model=ep.default_model or (ep.models[0] if ep.models else None),
            enabled=ep.enabled,
        )
        for name, ep in config.endpoints.items()
    ]


class ProviderRegistry:
    """The providers of one configuration. `reload` swaps the configuration (a changed config.toml,
    an endpoint set at run time); `enabled_overrides` (from `set_provider_enabled`) beat the
    `enabled` of config.toml."""

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str],
        http: HttpClient,
        get_key: KeyGetter,
        enabled_overrides: Mapping[str, bool] | None = None,
    ) -> None:
        self.env = env
        self.http = http
        self._get_key = get_key
        self.enabled_overrides: dict[str, bool] = dict(enabled_overrides or {})
        self.config = config
        self.specs: dict[str, ProviderSpec] = {}
        self._providers: dict[str, Provider] = {}
        self.reload(config)

    def reload(self, config: Config) -> None:
        """Use `config` from now on; providers are built again on their next use."""
        self.config = config
        self.specs = {s.id: s for s in (*builtin_specs(config, self.env), *endpoint_specs(config))}
        self._providers = {}

    def enabled(self, provider_id: str) -> bool:
        spec = self.spec(provider_id)
        return self.enabled_overrides.get(provider_id, spec.enabled)

    def ensure_enabled(self, provider_id: str) -> None:
        """Raise `provider_disabled` for a provider switched off in config.toml or at run time."""
        if not self.enabled(provider_id):
            on = [pid for pid in self.specs if pid != "stub" and self.enabled(pid)]
            raise SidecarError(
                "provider_disabled",
                f"{provider_id} is switched off, so the sidecar sends it no requests. Turn it back on "
                f"with set_provider_enabled {{provider: '{provider_id}', enabled: true}}"
                + (f", or use another provider ({', '.join(on)})." if on else "."),
                provider=provider_id,
            )

    @property
    def ids(self) -> list[str]:
        return list(self.specs)

    def spec(self, provider_id: str) -> ProviderSpec:
        spec = self.specs.get(provider_id)
        if spec is None:
            raise SidecarError(
                "unsupported_provider",
                f"'{provider_id}' is not a provider this sidecar knows (known: {', '.join(self.specs)}). "
                "Custom OpenAI-compatible endpoints are declared under [endpoints.<name>] in config.toml.",
                provider=provider_id,
            )
        return spec

    def get(self, provider_id: str) -> Provider:
        provider = self._providers.get(provider_id)
        if provider is None:
            spec = self.spec(provider_id)
            module_name, _, class_name = _CLASSES[spec.kind].partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            provider = self._providers[provider_id] = self._build(cls, spec)
        return provider

    def _build(self, cls: type[Provider], spec: ProviderSpec) -> Provider:
        if spec.custom:
            from sidecar.providers.openai_compat import OpenAICompatProvider
            from sidecar.providers.openai_format import Dialect

            ep = self.config.endpoints[spec.id]
            return OpenAICompatProvider(
                spec,
                self.http,
                self._get_key,
                dialect=Dialect(max_tokens_field=ep.max_tokens_field, stream_usage=ep.stream_usage),
            )
        return cls(spec, self.http, self._get_key)
