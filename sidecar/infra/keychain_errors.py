"""What the keychain's failures say: `keychain_unavailable` errors with a sentence a person can act
on, and the mapping from `keyring`'s and D-Bus's exceptions to them.

A message names the cause, the backend and, where useful, the D-Bus error name (a fixed
identifier) and the environment variable that would supply the key instead; it never carries a
backend exception's text, which could hold a secret, and it is redacted before it leaves.

Must not know: which backend is chosen or how keys are stored (`infra.keystore`), the protocol,
providers.
"""

from __future__ import annotations

import os
import sys
from typing import Final, Literal

from sidecar import redact
from sidecar.errors import SidecarError

Operation = Literal["read", "store", "delete", "open"]

_VERBS: Final[dict[str, str]] = {
    "read": "reading",
    "store": "storing",
    "delete": "deleting",
    "open": "opening",
}


def is_linux_like() -> bool:
    return sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


def _env_hint(env_var: str | None) -> str:
    if env_var:
        return f" Or give the key in the sidecar's environment as {env_var}."
    return " Or give the key in the sidecar's environment as <ID>_API_KEY (for example OPENAI_API_KEY)."


def _no_backend_text(backend: str) -> str:
    if is_linux_like():
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
        if is_linux_like():
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


def unavailable(
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


def with_env_hint(error: SidecarError, *, env_var: str | None, provider: str) -> SidecarError:
    """The same keychain_unavailable error, naming the provider's own env var and the provider."""
    d = error.details
    cause, backend = d.get("cause"), d.get("backend")
    if not isinstance(cause, str) or not isinstance(backend, str):
        return SidecarError(error.kind, error.message, provider=provider, details=dict(d))

    def text(key: str) -> str | None:
        value = d.get(key)
        return value if isinstance(value, str) else None

    return unavailable(
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


# --------------------------------------------------------------------------------------------------
# Mapping keyring's failures


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


def map_exception(exc: BaseException, *, operation: Operation, account: str, backend: str) -> SidecarError:
    names = _chain_class_names(exc)
    top = {c.__name__ for c in type(exc).__mro__}
    if "NoKeyringError" in top or "SecretServiceNotAvailableException" in names:
        return unavailable("no_backend", backend=backend, operation=operation, account=account)
    if "PromptDismissedException" in names:
        return unavailable("prompt_dismissed", backend=backend, operation=operation, account=account)
    if "InitError" in top:
        cause = exc.__cause__
        detail = type(cause).__name__ if cause is not None else "InitError"
        return unavailable(
            "init_failed", backend=backend, operation=operation, account=account, detail=detail
        )
    if "KeyringLocked" in top or "LockedException" in names:
        return unavailable("locked", backend=backend, operation=operation, account=account)
    detail = type(exc).__name__
    dbus_name = _dbus_error_name(exc)
    if dbus_name:
        detail = f"{detail}: {dbus_name}"
    return unavailable("failed", backend=backend, operation=operation, account=account, detail=detail)
