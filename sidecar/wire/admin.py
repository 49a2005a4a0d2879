"""Wire types of the methods that change the provider set at run time: `set_provider_enabled`,
`endpoint_set`, `endpoint_delete`, and the `config/error` notification.

Must not know: where the settings are kept, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from sidecar.wire.base import Params, Wire

_NAME = msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SetProviderEnabledParams(Params):
    provider: Annotated[str, msgspec.Meta(min_length=1)]
    enabled: bool


class SetProviderEnabledResult(Wire):
    provider: str
    enabled: bool
    previous: bool


class EndpointSetParams(Params):
    """A custom OpenAI-compatible endpoint, with the fields of `[endpoints.<name>]` in config.toml.
    Setting an existing name replaces it whole."""

    name: Annotated[str, _NAME]
    base_url: Annotated[str, msgspec.Meta(min_length=1)]
    models: list[str] = msgspec.field(default_factory=list)
    api_key_env: str | None = None
    keychain: bool = True
    needs_key: bool = True
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    stream_usage: bool = True
    headers: dict[str, str] | None = None
    input_per_mtok: Annotated[float, msgspec.Meta(ge=0)] | None = None
    output_per_mtok: Annotated[float, msgspec.Meta(ge=0)] | None = None
    default_model: str | None = None
    enabled: bool = True
    allow_insecure: bool = False
    response_cache_ttl_s: Annotated[float, msgspec.Meta(gt=0)] | None = None


class EndpointSetResult(Wire):
    name: str
    created: bool
    base_url: str


class EndpointDeleteParams(Params):
    name: Annotated[str, msgspec.Meta(min_length=1)]


class EndpointDeleteResult(Wire):
    name: str
    deleted: bool
    still_in_config: bool = False


class ConfigErrorParams(Wire):
    """config.toml changed on disk but could not be used; the previous configuration stays in force."""

    path: str
    message: str
