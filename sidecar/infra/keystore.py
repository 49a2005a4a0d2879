"""Where API keys live: the OS keychain (through `keyring`), the environment, and the order between them.

`KeyringStore` keeps one secret per account (a provider id) under the service "llm-sidecar" in the
OS keychain, using whatever backend Python's `keyring` selects (which honours
`PYTHON_KEYRING_BACKEND`). It refuses backends that would keep keys in a plain file unless the
user chose one explicitly, and always refuses backends that prompt for a master password, since
without a terminal `getpass` reads standard input, which carries the sidecar's protocol. Every
failure becomes `SidecarError("keychain_unavailable", ...)` with a sentence a person can act on;
no raw backend exception text (which could hold a secret) is ever put in a message.

`KeyResolver` decides which key a provider uses: `<ID>_API_KEY` in the environment wins, otherwise
the keychain; with neither, a `missing_key` error says how to configure one.

Every secret read or written here is passed to `sidecar.redact.remember`.

Must not know: the JSON-RPC protocol, MCP, providers' wire formats or HTTP. `keyring` is imported
lazily on first use (start-up time matters) and every keyring call runs in a worker thread, since
backends block on D-Bus or OS APIs.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeVar

import anyio.to_thread

from sidecar import redact
from sidecar.errors import SidecarError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE: Final = "llm-sidecar"

KeySource = Literal["env", "keychain"]
Operation = Literal["read", "store", "delete", "open"]

_T = TypeVar("_T")

_VERBS: Final[dict[str, str]] = {
    "read": "reading",
    "store": "storing",
    "delete": "deleting",
    "open": "opening",
}


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
# Error messages


def _is_linux_like() -> bool:
    return sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


def _env_hint(env_var: str | None) -> str:
    if env_var:
        return f" Or give the key in the sidecar's environment as {env_var}."
    return " Or give the key in the sidecar's environment as <ID>_API_KEY (for example OPENAI_API_KEY)."


def _no_backend_text(backend: str) -> str:
    if _is_linux_like():
        if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            return (
                "No OS keychain is reachable: DBUS_SESSION_BUS_ADDRESS is not set in the sidecar's "
                "environment, so no Secret Service (gnome-keyring, KWallet, KeePassXC) can be found. "
                "MCP clients and some launchers start servers with a filtered environment that drops "
                "DBUS_SESSION_BUS_ADDRESS: pass it (and XDG_RUNTIME_DIR) in the server's env."
            )
        return (
            "No OS keychain is reachable: no Secret Service (org.freedesktop.secrets: gnome-keyring, "
            "KWallet or KeePassXC) answers on the D-Bus session bus named by DBUS_SESSION_BUS_ADDRESS. "
            "Start one in the desktop session and make sure the sidecar gets that session's "
            "DBUS_SESSION_BUS_ADDRESS (MCP clients drop it unless it is passed in the server's env)."
        )
    return (
        f"No OS keychain backend is available to Python's keyring library (it selected {backend}). "
        "Select one with PYTHON_KEYRING_BACKEND; `keyring --list-backends` lists what works here."
    )


def _message(
    cause: str,
    *,
    backend: str,
    operation: str | None,
    account: str | None,
    detail: str | None,
    env_var: str | None,
) -> str:
    if cause == "no_backend":
        text = _no_backend_text(backend)
    elif cause == "prompt_dismissed":
        if _is_linux_like():
            text = (
                "The OS keychain could not open or create its default keyring: the Secret Service "
                'answered "Prompt dismissed", because it needed a password and could not show its '
                "prompt (no desktop session, or the dialog was cancelled). Create or unlock the "
                'default ("login") keyring in the desktop session, for example with Seahorse '
                '("Passwords and Keys"), then retry.'
            )
        else:
            text = (
                f"The OS keychain ({backend}) could not be opened. Make sure it is set up and unlocked "
                "in your desktop session, then retry."
            )
    elif cause == "init_failed":
        text = (
            f"The OS keychain ({backend}) could not open its default keyring ({detail}). Make sure a "
            'default ("login") keyring exists and is unlocked in the desktop session, then retry.'
        )
    elif cause == "locked":
        text = (
            "The OS keychain is locked and could not be unlocked (no unlock prompt could be shown, or "
            "it was cancelled). Unlock the login keyring in the desktop session (for example with "
            'Seahorse, "Passwords and Keys", or by logging out and in again), then retry.'
        )
    elif cause == "stores_nothing":
        text = (
            f"The key was not stored: the selected keyring backend ({backend}) stores nothing. It was "
            "chosen by PYTHON_KEYRING_BACKEND or by keyring's config file (`keyring diagnose` shows "
            "where that is); unset it or select a real keychain backend."
        )
    elif cause == "refused_file":
        text = (
            f"Refusing the keyring backend {detail}: it keeps keys in a file instead of the OS "
            "keychain, and the sidecar never falls back to one on its own. To use it anyway, select "
            f"it explicitly with PYTHON_KEYRING_BACKEND={detail}; otherwise make an OS keychain "
            "available."
        )
    elif cause == "refused_prompting":
        text = (
            f"Refusing the keyring backend {detail}: it asks for a master password with getpass, "
            "which without a terminal reads standard input, and the sidecar's standard input carries "
            "its protocol. Select another backend with PYTHON_KEYRING_BACKEND, or make an OS keychain "
            "available."
        )
    elif cause == "bad_backend_setting":
        text = (
            f"PYTHON_KEYRING_BACKEND={detail} could not be loaded ({backend}). Fix or unset it; "
            "`keyring --list-backends` lists the backends that work here."
        )
    elif cause == "detection_failed":
        text = (
            f"Python's keyring library could not select a backend ({detail}). Check keyring's config "
            "file (`keyring diagnose` shows where it is) and PYTHON_KEYRING_BACKEND."
        )
    else:  # "failed"
        verb = _VERBS.get(operation or "", "using")
        what = f' the key for "{account}"' if account and operation != "open" else ""
        text = (
            f"The OS keychain ({backend}) failed while {verb}{what} ({detail}). Check that the "
            "keychain service is running and unlocked, then retry."
        )
    return redact.redact(text + _env_hint(env_var))


def _unavailable(
    cause: str,
    *,
    backend: str,
    operation: str | None = None,
    account: str | None = None,
    detail: str | None = None,
    env_var: str | None = None,
    provider: str | None = None,
) -> SidecarError:
    message = _message(
        cause, backend=backend, operation=operation, account=account, detail=detail, env_var=env_var
    )
    details: dict[str, object] = {"cause": cause, "backend": backend}
    if operation is not None:
        details["operation"] = operation
    if account is not None:
        details["account"] = account
    if detail is not None:
        details["detail"] = detail
    return SidecarError("keychain_unavailable", message, provider=provider, details=details)


def _with_env_hint(error: SidecarError, *, env_var: str | None, provider: str) -> SidecarError:
    """The same keychain_unavailable error, naming the provider's own env var and the provider."""
    d = error.details
    cause, backend = d.get("cause"), d.get("backend")
    if not isinstance(cause, str) or not isinstance(backend, str):
        return SidecarError(error.kind, error.message, provider=provider, details=dict(d))

    def text(key: str) -> str | None:
        value = d.get(key)
        return value if isinstance(value, str) else None

    return _unavailable(
        cause,
        backend=backend,
        operation=text("operation"),
        account=text("account"),
        detail=text("detail"),
        env_var=env_var,
        provider=provider,
    )


# --------------------------------------------------------------------------------------------------
# Mapping keyring's failures


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _mro_names(obj: object) -> list[tuple[str, str]]:
    return [(c.__module__, c.__name__) for c in type(obj).__mro__]


def _dbus_error_name(exc: BaseException) -> str | None:
    """The D-Bus error name (e.g. org.freedesktop.DBus.Error.ServiceUnknown) somewhere in the chain:
    a fixed identifier, never a payload, so it is safe to show."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = getattr(current, "name", None)
        if isinstance(name, str) and name.startswith("org.") and len(name) < 200 and " " not in name:
            return name
        current = current.__cause__ or current.__context__
    return None


def _chain_class_names(exc: BaseException) -> set[str]:
    names: set[str] = set()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names.update(c.__name__ for c in type(current).__mro__)
        current = current.__cause__ or current.__context__
    return names


def _map_exception(exc: BaseException, *, operation: Operation, account: str, backend: str) -> SidecarError:
    names = _chain_class_names(exc)
    top = {c.__name__ for c in type(exc).__mro__}
    if "NoKeyringError" in top or "SecretServiceNotAvailableException" in names:
        return _unavailable("no_backend", backend=backend, operation=operation, account=account)
    if "PromptDismissedException" in names:
        return _unavailable("prompt_dismissed", backend=backend, operation=operation, account=account)
    if "InitError" in top:
        cause = exc.__cause__
        detail = type(cause).__name__ if cause is not None else "InitError"
        return _unavailable(
            "init_failed", backend=backend, operation=operation, account=account, detail=detail
        )
    if "KeyringLocked" in top or "LockedException" in names:
        return _unavailable("locked", backend=backend, operation=operation, account=account)
    detail = type(exc).__name__
    dbus_name = _dbus_error_name(exc)
    if dbus_name:
        detail = f"{detail}: {dbus_name}"
    return _unavailable("failed", backend=backend, operation=operation, account=account, detail=detail)


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
        raise _unavailable("no_backend", backend=name, operation="open")
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
        raise _unavailable(cause, backend=name, operation="open", detail=_class_path(member))
    cause = _refusal(backend, explicit=explicit)
    if cause is not None:
        raise _unavailable(cause, backend=name, operation="open", detail=name)
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
                raise _unavailable(
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
                raise _map_exception(
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
                raise _unavailable(
                    "bad_backend_setting",
                    backend=type(exc).__name__,
                    operation="open",
                    detail=explicit_name[:200],
                ) from None
            raise _unavailable(
                "detection_failed", backend="keyring", operation="open", detail=type(exc).__name__
            ) from None
        try:
            return _vet(backend, explicit_name)
        except SidecarError:
            raise
        except Exception as exc:
            raise _map_exception(exc, operation="open", account="", backend=_class_path(backend)) from None


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
    if _is_linux_like():
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

    async def _find(
        self, provider_id: str, env_var: str | None, *, account: str | None
    ) -> ResolvedKey | None:
        if env_var:
            value = os.environ.get(env_var, "").strip()
            if value:
                redact.remember(value)
                return ResolvedKey(value, "env")
        try:
            secret = await self.store.get(account or provider_id)
        except SidecarError as err:
            if err.kind == "keychain_unavailable":
                raise _with_env_hint(err, env_var=env_var, provider=provider_id) from None
            raise
        if secret is None:
            return None
        secret = secret.strip()
        if not secret:
            return None
        redact.remember(secret)
        return ResolvedKey(secret, "keychain")
