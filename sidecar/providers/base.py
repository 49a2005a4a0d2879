"""What every provider is to the rest of the sidecar: a source of provider-neutral events.

A provider turns `CompleteParams` into its own request, sends it through the shared `HttpClient`,
and yields `ProviderEvent`s (the contract's deltas plus finish, continuation and metadata).
`stream` streams upstream; `complete` makes the upstream's non-streaming call and yields the same
events from the whole answer, so one assembler serves both. (The chat service streams for both of
its methods, so cancellation and idle limits behave alike; it calls `complete` for a model the
upstream refuses to stream, and for the gateway's non-streamed requests where `takes_whole_call`.)
Keys are fetched per call through `KeyGetter`, so a key set a moment ago is used at once.
`count_tokens` counts a request's input tokens where the provider has an API for it.

Must not know: stdin/stdout, the keychain's implementation, the ledger, retry policy.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import msgspec

from sidecar.core.assemble import ProviderEvent
from sidecar.errors import ProviderError, SidecarError
from sidecar.providers.errors import display
from sidecar.providers.http import HttpClient, Timeouts
from sidecar.wire.chat import CompleteParams

# (provider id, env var name or None, keychain account or None) -> the key; raises missing_key.
KeyGetter = Callable[[str, str | None, str | None], Awaitable[str]]


class KeyCheck(msgspec.Struct, frozen=True):
    """The outcome of validating a key: `error` says why it is not valid (auth_failed), or
    why it could not be checked (network_error, ...); `details` carries what the provider told
    about the key (credit, limits)."""

    valid: bool
    error: SidecarError | None = None
    details: dict[str, Any] | None = None


class ProviderSpec(msgspec.Struct, frozen=True):
    id: str
    kind: str
    base_url: str
    key_env: str | None
    needs_key: bool = True
    keychain_account: str | None = None
    custom: bool = False
    models: tuple[str, ...] = ()
    extra_headers: dict[str, str] = msgspec.field(default_factory=dict)
    default_model: str | None = None
    enabled: bool = True


def count_from(provider: str, raw: bytes, field: str) -> int:
    """The token count `field` of a provider's JSON answer."""
    try:
        value = msgspec.json.decode(raw)
        count = value[field] if isinstance(value, dict) else None
    except msgspec.DecodeError:
        count = None
    if not isinstance(count, int) or isinstance(count, bool):
        raise ProviderError(
            "provider_error",
            f"{display(provider)} answered a token count without `{field}`.",
            provider=provider,
        )
    return count


class Provider(abc.ABC):
    def __init__(self, spec: ProviderSpec, http: HttpClient, get_key: KeyGetter) -> None:
        self.spec = spec
        self.http = http
        self._get_key = get_key

    @property
    def id(self) -> str:
        return self.spec.id

    async def key(self) -> str | None:
        if not self.spec.needs_key:
            return None
        return await self._get_key(self.spec.id, self.spec.key_env, self.spec.keychain_account)

    @abc.abstractmethod
    def stream(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        """Stream the answer upstream, yielding events as they arrive."""

    @abc.abstractmethod
    def complete(
        self, model: str, params: CompleteParams, timeouts: Timeouts
    ) -> AsyncGenerator[ProviderEvent, None]:
        """Make the non-streaming upstream call and yield the same events from the whole answer."""

    def takes_whole_call(self, model: str, params: CompleteParams) -> bool:
        """Whether a request its client did not stream may go upstream as a non-streamed call. Yes
        for a provider's own API; not for a custom endpoint, which is often llama.cpp or a server
        like it: such a server may go on generating, on the user's own machine, for a non-streamed
        call whose client has gone."""
        return not self.spec.custom

    @abc.abstractmethod
    async def validate_key(self, api_key: str, timeouts: Timeouts) -> KeyCheck:
        """A cheap authenticated call proving the key works."""

    async def count_tokens(self, model: str, params: CompleteParams, timeouts: Timeouts) -> int | None:
        """The request's input tokens as the provider counts them for `model`, without running it;
        None where the provider has no such API (the caller estimates)."""
        return None
