"""Wire types of key management (`set_key`, `delete_key`, `list_keys`, `validate_key`) and the
OpenRouter OAuth PKCE login.

No result type here ever carries a whole key: only `masked` forms.

Must not know: the keychain, providers, the protocol layer.
"""

from __future__ import annotations

from typing import Any, Literal

from sidecar.wire.base import ErrorData, Params, Wire

KeySource = Literal["env", "keychain"]


class ProviderParams(Params):
    provider: str


class ValidateKeyParams(Params):
    provider: str
    api_key: str | None = None


class ValidateKeyResult(Wire):
    provider: str
    valid: bool
    error: ErrorData | None = None
    details: dict[str, Any] | None = None


class SetKeyParams(Params):
    provider: str
    api_key: str
    validate: bool = True


class SetKeyResult(Wire):
    provider: str
    configured: bool
    source: KeySource
    masked: str
    validated: bool  # always sent: false when set_key was told not to validate
    details: dict[str, Any] | None = None
    # The environment variable that supplies this provider's key and so wins over the keychain.
    overridden_by_env: str | None = None


class DeleteKeyResult(Wire):
    provider: str
    deleted: bool


class KeyInfo(Wire):
    provider: str
    configured: bool
    source: KeySource | None
    masked: str | None
    # The environment variable that would supply the key (it wins over the keychain).
    env_var: str | None = None
    # Why the keychain could not be read for this provider (keychain_unavailable); configured is false.
    error: ErrorData | None = None


class ListKeysResult(Wire):
    keys: list[KeyInfo]


class AuthStartParams(Params):
    callback_url: str | None = None


class AuthStartResult(Wire):
    auth_url: str
    state: str
    callback_url: str
    expires_at: str
    listening: bool  # always sent: true when the sidecar itself waits for the browser's redirect


class AuthCompleteParams(Params):
    code: str
    state: str | None = None


class AuthCompleteResult(Wire):
    provider: str
    configured: bool
    masked: str


class AuthCompletedParams(Wire):
    """`openrouter_auth/completed`: the loopback listener finished (or failed) a login."""

    state: str
    ok: bool
    masked: str | None = None
    error: ErrorData | None = None
