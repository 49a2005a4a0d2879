"""Key management methods: `set_key`, `delete_key`, `list_keys`, `validate_key`.

Keys go to the OS keychain (service "llm-sidecar", account = provider id or custom endpoint name)
and nowhere else. `set_key` checks a key upstream first (unless `validate` is false) and stores
nothing that fails; a failure to check it (network, timeout) stores nothing either.

`validate_key` answers `valid: false` with `error.kind` `auth_failed` for a key the provider
rejects (quota_exceeded for a key without credit), and `missing_key` when no key is given and none
is configured; a check that could not be made (network_error, timeout, keychain_unavailable) is an
RPC error. Ollama (and a custom endpoint with `needs_key = false`) has no key: validating it means
checking that it is reachable. Every check is one cheap authenticated call with a 5 s limit.

Every operation leaves a row in the audit trail (never any key material).

Must not know: stdin/stdout, providers' wire formats, the keychain's backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import anyio

from sidecar import logs, redact
from sidecar.errors import SidecarError
from sidecar.infra.audit import Audit
from sidecar.infra.keystore import KeyResolver
from sidecar.providers.base import KeyCheck, ProviderSpec
from sidecar.providers.errors import display
from sidecar.providers.http import Timeouts
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.wire.base import Empty
from sidecar.wire.keys import (
    DeleteKeyResult,
    KeyInfo,
    ListKeysResult,
    ProviderParams,
    SetKeyParams,
    SetKeyResult,
    ValidateKeyParams,
    ValidateKeyResult,
)

VALIDATE_TIMEOUT_S: Final = 5.0
_log = logs.get_logger("keys")


class KeyService:
    def __init__(
        self,
        providers: ProviderRegistry,
        keys: KeyResolver,
        audit: Audit,
        *,
        env: Mapping[str, str],
        validate_timeout_s: float = VALIDATE_TIMEOUT_S,
    ) -> None:
        self.providers = providers
        self.keys = keys
        self.audit = audit
        self.env = env
        self.validate_timeout_s = validate_timeout_s

    def handlers(self) -> dict[str, Handler]:
        return {
            "set_key": self.set_key,
            "delete_key": self.delete_key,
            "list_keys": self.list_keys,
            "validate_key": self.validate_key,
        }

    # -- methods -----------------------------------------------------------------------------------

    async def set_key(self, params: SetKeyParams, ctx: CallContext) -> SetKeyResult:
        spec, account = self._keyed(params.provider, "store")
        key = _given_key(params.api_key)
        details = None
        if params.validate:
            try:
                check = await self.check(spec, key)
            except SidecarError as exc:
                await self.audit.record("key_validated", spec.id, "error", exc.kind)
                await self.audit.record("key_set", spec.id, "error", exc.kind)
                raise SidecarError(
                    exc.kind,
                    f"The key was not stored: it could not be checked. {exc.message}",
                    provider=spec.id,
                    retry_after_s=exc.retry_after_s,
                ) from None
            if not check.valid:
                kind = check.error.kind if check.error else "auth_failed"
                await self.audit.record("key_validated", spec.id, "invalid", kind)
                await self.audit.record("key_set", spec.id, "rejected", kind)
                said = f" {check.error.message}" if check.error else ""
                raise SidecarError(
                    kind,
                    f"{display(spec.id)} rejected this key, so it was not stored.{said}",
                    provider=spec.id,
                    details={"validation": "failed"},
                )
            await self.audit.record("key_validated", spec.id, "valid", "given")
            details = check.details
        try:
            await self.keys.store.set(account, key)
        except SidecarError as exc:
            await self.audit.record("key_set", spec.id, "error", exc.kind)
            raise with_provider(exc, spec.id) from None
        await self.audit.record("key_set", spec.id, "ok", "validated" if params.validate else "not validated")
        _log.info("key stored", provider=spec.id, validated=params.validate)
        return SetKeyResult(
            provider=spec.id,
            configured=True,
            source="keychain",
            masked=redact.mask(key),
            validated=params.validate,
            details=details,
            overridden_by_env=self._env_var_set(spec),
        )

    async def delete_key(self, params: ProviderParams, ctx: CallContext) -> DeleteKeyResult:
        spec, account = self._keyed(params.provider, "remove")
        try:
            deleted = await self.keys.store.delete(account)
        except SidecarError as exc:
            await self.audit.record("key_deleted", spec.id, "error", exc.kind)
            raise with_provider(exc, spec.id) from None
        await self.audit.record("key_deleted", spec.id, "ok" if deleted else "absent")
        _log.info("key deleted", provider=spec.id, deleted=deleted)
        return DeleteKeyResult(provider=spec.id, deleted=deleted)

    async def list_keys(self, params: Empty, ctx: CallContext) -> ListKeysResult:
        infos: list[KeyInfo] = []
        for spec in self.providers.specs.values():
            if not spec.needs_key:
                continue
            infos.append(await self._info(spec))
        return ListKeysResult(keys=infos)

    async def validate_key(self, params: ValidateKeyParams, ctx: CallContext) -> ValidateKeyResult:
        spec = self.providers.spec(params.provider)
        source = "none"
        key = ""
        if spec.needs_key:
            if params.api_key is not None:
                key, source = _given_key(params.api_key), "given"
            else:
                try:
                    key, source = await self._configured(spec)
                except SidecarError as exc:
                    if exc.kind != "missing_key":
                        await self.audit.record("key_validated", spec.id, "error", exc.kind)
                        raise
                    await self.audit.record("key_validated", spec.id, "invalid", "missing_key")
                    return ValidateKeyResult(provider=spec.id, valid=False, error=exc.data())
        try:
            check = await self.check(spec, key)
        except SidecarError as exc:
            await self.audit.record("key_validated", spec.id, "error", exc.kind)
            raise
        if check.valid:
            await self.audit.record("key_validated", spec.id, "valid", source)
        else:
            await self.audit.record(
                "key_validated", spec.id, "invalid", check.error.kind if check.error else None
            )
        _log.info("key checked", provider=spec.id, valid=check.valid, source=source)
        return ValidateKeyResult(
            provider=spec.id,
            valid=check.valid,
            error=check.error.data() if check.error else None,
            details=check.details or None,
        )

    # -- helpers -----------------------------------------------------------------------------------

    async def check(self, spec: ProviderSpec, key: str) -> KeyCheck:
        """The provider's own cheap authenticated call, bounded by `validate_timeout_s` in all."""
        provider = self.providers.get(spec.id)
        limit = self.validate_timeout_s
        try:
            with anyio.fail_after(limit):
                return await provider.validate_key(
                    key, Timeouts(connect_s=limit, read_s=limit, write_s=limit)
                )
        except TimeoutError:
            raise SidecarError(
                "timeout",
                f"{display(spec.id)} did not answer the key check within {limit:g} s. Check the network "
                "connection and the provider's base URL, then retry.",
                provider=spec.id,
            ) from None

    def _keyed(self, provider_id: str, action: str) -> tuple[ProviderSpec, str]:
        spec = self.providers.spec(provider_id)
        if not spec.needs_key:
            extra = " validate_key checks that it is reachable." if spec.id == "ollama" else ""
            raise SidecarError(
                "invalid_request",
                f"{display(spec.id)} needs no API key, so there is no key to {action}.{extra}",
                provider=spec.id,
                field="provider",
            )
        if spec.keychain_account is None:
            env_hint = f" from {spec.key_env} in the sidecar's environment" if spec.key_env else ""
            raise SidecarError(
                "invalid_request",
                f"The endpoint {spec.id} is declared with keychain = false in config.toml, so its key comes "
                f"only{env_hint}. Remove `keychain = false` to keep its key in the OS keychain.",
                provider=spec.id,
                field="provider",
            )
        return spec, spec.keychain_account

    def _env_var_set(self, spec: ProviderSpec) -> str | None:
        if spec.key_env and self.env.get(spec.key_env, "").strip():
            return spec.key_env
        return None

    async def _configured(self, spec: ProviderSpec) -> tuple[str, str]:
        """The key the provider would use now, and where it comes from."""
        if spec.keychain_account is None:
            value = self.env.get(spec.key_env, "").strip() if spec.key_env else ""
            if not value:
                raise SidecarError(
                    "missing_key",
                    f"No API key is configured for {spec.id}: set "
                    f"{spec.key_env or 'its api_key_env variable'} in the sidecar's environment.",
                    provider=spec.id,
                )
            redact.remember(value)
            return value, "env"
        found = await self.keys.resolve(spec.id, spec.key_env, account=spec.keychain_account)
        return found.value, found.source

    async def _info(self, spec: ProviderSpec) -> KeyInfo:
        if spec.keychain_account is None:
            env_var = self._env_var_set(spec)
            value = self.env.get(env_var, "").strip() if env_var else ""
            if value:
                redact.remember(value)
            return KeyInfo(
                provider=spec.id,
                configured=bool(value),
                source="env" if value else None,
                masked=redact.mask(value) if value else None,
                env_var=spec.key_env,
            )
        try:
            configured, source, masked = await self.keys.describe_source(
                spec.id, spec.key_env, account=spec.keychain_account
            )
        except SidecarError as exc:
            return KeyInfo(
                provider=spec.id,
                configured=False,
                source=None,
                masked=None,
                env_var=spec.key_env,
                error=exc.data(),
            )
        return KeyInfo(
            provider=spec.id, configured=configured, source=source, masked=masked, env_var=spec.key_env
        )


def with_provider(exc: SidecarError, provider: str) -> SidecarError:
    if exc.provider is not None:
        return exc
    return SidecarError(
        exc.kind,
        exc.message,
        provider=provider,
        retry_after_s=exc.retry_after_s,
        field=exc.field,
        details=exc.details or None,
    )


def _given_key(api_key: str) -> str:
    key = api_key.strip()
    if not key:
        raise SidecarError("invalid_request", "api_key is empty: give the whole key.", field="api_key")
    if any(c.isspace() for c in key):
        raise SidecarError(
            "invalid_request",
            "api_key contains whitespace inside it: give the key exactly as issued.",
            field="api_key",
        )
    redact.remember(key)
    return key
