"""Where API keys live: the OS keychain (through `keyring`), the environment, and the order between them.

`KeyringStore` keeps one secret per account (a provider id) under the service "llm-sidecar" in the
OS keychain, using whatever backend Python's `keyring` selects (which honours
`PYTHON_KEYRING_BACKEND`). It refuses backends that would keep keys in a plain file unless the
user chose one explicitly, and always refuses backends that prompt for a master password, since
without a terminal `getpass` reads standard input, which carries the sidecar's protocol. Every
failure becomes `SidecarError("keychain_unavailable", ...)` with a sentence a person can act on
(`infra.keychain_errors`); no raw backend exception text (which could hold a secret) is ever put in
a message.

`KeyResolver` decides which key a provider uses: `<ID>_API_KEY` in the environment wins, otherwise
the keychain; with neither, a `missing_key` error says how to configure one.

`RememberedKeys` stands in front of the keychain so that a request does not cost a keychain read
(a D-Bus exchange on Linux, tens of milliseconds, in a worker thread): a key read is used again
for `KEY_TTL_S`, and a key in use is read again in the background before then (`core.kept`), so a
request waits for the keychain only for a key's first use or after a long pause. What the sidecar
itself stores or deletes takes effect at once; a key changed in the keychain by another program is
picked up within `KEY_TTL_S`. A key that is not there, and a keychain that fails, are
never remembered: the next request asks again. Keys are remembered in this process's memory only.

Every secret read or written here is passed to `sidecar.redact.remember`.

Must not know: the JSON-RPC protocol, MCP, providers' wire formats or HTTP. `keyring` is imported
lazily on first use (start-up time matters) and every keyring call runs in a worker thread, since
backends block on D-Bus or OS APIs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeVar

import anyio.to_thread

from sidecar import redact
from sidecar.core.kept import Kept
from sidecar.errors import SidecarError
from sidecar.infra.keychain_errors import Operation, is_linux_like, map_exception, unavailable, with_env_hint

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE: Final = "llm-sidecar"
KEY_TTL_S: Final = 30.0
"""How long `RememberedKeys` uses a key it read before it reads the keychain again."""

KeySource = Literal["env", "keychain"]

_T = TypeVar("_T")


class KeyStore(Protocol):
    """A place that keeps one secret per account."""

    async def get(self, account: str) -> str | None: ...

    async def set(self, account: str, secret: str) -> None: ...

    async def delete(self, account: str) -> bool:
        """Remove the secret; False when there was none."""
        ...

    async def describe(self) -> str:
        """The backend's name, for diagnostics. Never raises."""
        ...


# --------------------------------------------------------------------------------------------------
# Naming backends


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _mro_names(obj: object) -> list[tuple[str, str]]:
    return [(c.__module__, c.__name__) for c in type(obj).__mro__]


# --------------------------------------------------------------------------------------------------
# Choosing a backend


def _is_file_backend(backend: object) -> bool:
    """keyrings.alt's backends keep keys in files (PlaintextKeyring only base64-encodes them)."""
    return any(module.startswith("keyrings.alt") for module, _ in _mro_names(backend))


def _prompts(backend: object) -> bool:
    """Backends that ask for a master password or credentials with getpass/input."""
    for module, name in _mro_names(backend):
        if module.startswith("keyrings.alt") and ("Encrypted" in name or module.endswith(".Google")):
            return True
    return False


def _refusal(backend: object, *, explicit: bool) -> str | None:
    if _prompts(backend):
        return "refused_prompting"
    if _is_file_backend(backend) and not explicit:
        return "refused_file"
    return None


def _priority(backend: object) -> float:
    try:
        value = getattr(backend, "priority", 0)
        return float(value)
    except Exception:  # a backend's priority may raise when it is not viable
        return 0.0


def _describe_backend(backend: object) -> str:
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend):
        members = ", ".join(_class_path(m) for m in backend.backends)
        return f"{_class_path(backend)}[{members}]"
    return _class_path(backend)


def _vet(backend: KeyringBackend, explicit_name: str | None) -> KeyringBackend:
    """The backend to use, or a keychain_unavailable error saying why there is none."""
    from keyring.backends import chainer, fail

    name = _class_path(backend)
    explicit = explicit_name is not None and explicit_name == name
    if isinstance(backend, fail.Keyring):
        raise unavailable("no_backend", backend=name, operation="open")
    if isinstance(backend, chainer.ChainerBackend):
        members: list[KeyringBackend] = list(backend.backends)
        refused = [(m, cause) for m in members if (cause := _refusal(m, explicit=explicit)) is not None]
        if not refused:
            return backend
        if not explicit:
            # Auto-detected chain (keyrings.alt installed next to a real keychain): use the best
            # recommended member that is neither a file nor a prompting backend, alone.
            safe = [m for m in members if _refusal(m, explicit=False) is None and _priority(m) >= 1]
            if safe:
                return max(safe, key=_priority)
        member, cause = refused[0]
        raise unavailable(cause, backend=name, operation="open", detail=_class_path(member))
    cause = _refusal(backend, explicit=explicit)
    if cause is not None:
        raise unavailable(cause, backend=name, operation="open", detail=name)
    return backend


def _stores_nothing(backend: KeyringBackend) -> bool:
    from keyring.backends import chainer, null

    if isinstance(backend, null.Keyring):
        return True
    return isinstance(backend, chainer.ChainerBackend) and not list(backend.backends)


class KeyringStore:
    """The OS keychain through `keyring`: service "llm-sidecar", account = provider id."""

    def __init__(self, service: str = SERVICE) -> None:
        self.service = service
        self._backend: KeyringBackend | None = None
        self._lock = threading.Lock()
        self._detected = False

    async def get(self, account: str) -> str | None:
        _check_account(account)
        secret = await self._run("read", account, lambda b: b.get_password(self.service, account))
        if secret is None:
            return None
        redact.remember(secret)
        return secret

    async def set(self, account: str, secret: str) -> None:
        _check_account(account)
        if not secret:
            raise SidecarError("invalid_request", "An empty key cannot be stored.", field="api_key")
        redact.remember(secret)

        def store(backend: KeyringBackend) -> None:
            if _stores_nothing(backend):
                raise unavailable(
                    "stores_nothing", backend=_class_path(backend), operation="store", account=account
                )
            backend.set_password(self.service, account, secret)

        await self._run("store", account, store)

    async def delete(self, account: str) -> bool:
        _check_account(account)

        def remove(backend: KeyringBackend) -> bool:
            from keyring.errors import PasswordDeleteError

            if _stores_nothing(backend):
                return False
            try:
                backend.delete_password(self.service, account)
            except PasswordDeleteError:
                # Backends raise this for a missing entry; make sure that is what happened.
                if backend.get_password(self.service, account) is None:
                    return False
                raise
            return True

        return await self._run("delete", account, remove)

    async def describe(self) -> str:
        def name() -> str:
            try:
                return _describe_backend(self._backend_or_raise())
            except SidecarError as err:
                cause = err.details.get("cause", "unavailable")
                return f"{err.details.get('backend', 'keyring')} (unavailable: {cause})"
            except Exception as exc:
                return f"keyring (unavailable: {type(exc).__name__})"

        return await anyio.to_thread.run_sync(name, abandon_on_cancel=True)

    # -- internals -------------------------------------------------------------------------------

    async def _run(self, operation: Operation, account: str, call: Callable[[KeyringBackend], _T]) -> _T:
        def work() -> _T:
            backend = self._backend_or_raise()
            try:
                return call(backend)
            except SidecarError:
                raise
            except Exception as exc:
                raise map_exception(
                    exc, operation=operation, account=account, backend=_class_path(backend)
                ) from None

        # A keychain may wait on a desktop prompt for as long as the user likes: let a cancelled
        # request go rather than wait for the thread.
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)

    def _backend_or_raise(self) -> KeyringBackend:
        backend = self._backend
        if backend is not None:
            return backend
        with self._lock:
            if self._backend is None:
                # Only a usable backend is cached, so a keychain started later is found on retry.
                self._backend = self._load()
            return self._backend

    def _load(self) -> KeyringBackend:
        import keyring
        import keyring.core

        explicit_name = os.environ.get("PYTHON_KEYRING_BACKEND", "").strip() or None
        try:
            if self._detected:
                keyring.core.init_backend()  # detect again: the last attempt found nothing usable
            self._detected = True
            backend = keyring.get_keyring()
        except Exception as exc:
            if explicit_name is not None:
                raise unavailable(
                    "bad_backend_setting",
                    backend=type(exc).__name__,
                    operation="open",
                    detail=explicit_name[:200],
                ) from None
            raise unavailable(
                "detection_failed", backend="keyring", operation="open", detail=type(exc).__name__
            ) from None
        try:
            return _vet(backend, explicit_name)
        except SidecarError:
            raise
        except Exception as exc:
            raise map_exception(exc, operation="open", account="", backend=_class_path(backend)) from None


def _check_account(account: str) -> None:
    if not account or not account.strip():
        raise SidecarError(
            "invalid_request", "A keychain account (provider id) is required.", field="provider"
        )


# --------------------------------------------------------------------------------------------------
# In memory


class MemoryStore:
    """A KeyStore in a dict, for tests. Set `fail` to make every call raise that error."""

    def __init__(self, entries: Mapping[str, str] | None = None, *, fail: SidecarError | None = None) -> None:
        self.entries: dict[str, str] = dict(entries or {})
        self.fail = fail

    async def get(self, account: str) -> str | None:
        self._maybe_fail()
        secret = self.entries.get(account)
        if secret is not None:
            redact.remember(secret)
        return secret

    async def set(self, account: str, secret: str) -> None:
        self._maybe_fail()
        redact.remember(secret)
        self.entries[account] = secret

    async def delete(self, account: str) -> bool:
        self._maybe_fail()
        return self.entries.pop(account, None) is not None

    async def describe(self) -> str:
        return "memory"

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail


class RememberedKeys:
    """A `KeyStore` in front of another (the keychain) that uses each key it read again for
    `ttl_s`, re-reading a key in use ahead of that (see the module doc). Stores and deletes go
    through to the store at once."""

    def __init__(
        self, store: KeyStore, ttl_s: float = KEY_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._kept: dict[str, Kept[str | None]] = {}

    async def get(self, account: str) -> str | None:
        kept = self._kept.get(account)
        if kept is None:
            # A key that is not there is not kept: one added by another program is used at once.
            kept = self._kept[account] = Kept(
                lambda: self.store.get(account),
                ttl_s=self._ttl_s,
                clock=self._clock,
                keep_if=lambda secret: secret is not None,
                name="key",
            )
        return await kept.get()

    async def set(self, account: str, secret: str) -> None:
        self._forget(account)
        await self.store.set(account, secret)
        self._forget(account)  # a read that ran meanwhile may have brought the old key back

    async def delete(self, account: str) -> bool:
        self._forget(account)
        try:
            return await self.store.delete(account)
        finally:
            self._forget(account)

    async def describe(self) -> str:
        return await self.store.describe()

    async def aclose(self) -> None:
        """Stop the background reads (the process is stopping)."""
        for kept in self._kept.values():
            await kept.aclose()

    def _forget(self, account: str) -> None:
        kept = self._kept.get(account)
        if kept is not None:
            kept.forget()


# --------------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    value: str = field(repr=False)
    source: KeySource

    @property
    def masked(self) -> str:
        return redact.mask(self.value)


def missing_key_message(provider_id: str, env_var: str | None, *, account: str | None = None) -> str:
    account = account or provider_id
    ways = [f'set_key {{"provider": "{provider_id}", "api_key": "..."}} over the sidecar']
    if env_var:
        ways.append(f"{env_var} in the sidecar's environment")
    if is_linux_like():
        example = (
            f"`secret-tool store --label={SERVICE} service {SERVICE} username {account}` "
            f"or `keyring set {SERVICE} {account}`"
        )
    else:
        example = f"`keyring set {SERVICE} {account}`"
    ways.append(f'the OS keychain under service "{SERVICE}", account "{account}" (e.g. {example})')
    return f"No API key is configured for {provider_id}. Set one with " + ", or ".join(ways) + "."


class KeyResolver:
    """Finds a provider's key: the environment variable wins, then the keychain."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store

    async def resolve(
        self, provider_id: str, env_var: str | None, *, account: str | None = None
    ) -> ResolvedKey:
        found = await self._find(provider_id, env_var, account=account)
        if found is None:
            raise SidecarError(
                "missing_key",
                missing_key_message(provider_id, env_var, account=account),
                provider=provider_id,
            )
        return found

    async def describe_source(
        self, provider_id: str, env_var: str | None, *, account: str | None = None
    ) -> tuple[bool, KeySource | None, str | None]:
        """(configured, source, masked) for a listing. A keychain failure is raised as
        keychain_unavailable unless the environment already supplies the key."""
        found = await self._find(provider_id, env_var, account=account)
        if found is None:
            return False, None, None
        return True, found.source, found.masked

    @staticmethod
    def from_env(env_var: str | None) -> str | None:
        """The key the environment variable holds (remembered for redaction), which wins over the
        keychain; None when it is unset or blank. No await: a caller that finds it here (every
        upstream call of a provider keyed in the environment) resolves nothing more."""
        if env_var:
            value = os.environ.get(env_var, "").strip()
            if value:
                redact.remember(value)
                return value
        return None

    async def _find(
        self, provider_id: str, env_var: str | None, *, account: str | None
    ) -> ResolvedKey | None:
        value = self.from_env(env_var)
        if value is not None:
            return ResolvedKey(value, "env")
        try:
            secret = await self.store.get(account or provider_id)
        except SidecarError as err:
            if err.kind == "keychain_unavailable":
                raise with_env_hint(err, env_var=env_var, provider=provider_id) from None
            raise
        if secret is None:
            return None
        secret = secret.strip()
        if not secret:
            return None
        redact.remember(secret)
        return ResolvedKey(secret, "keychain")
