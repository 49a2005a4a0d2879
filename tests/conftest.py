"""Shared pytest fixtures.

Keychain: private, isolated Secret Services (see tests/keychain.py). They are session-scoped and
shared: a test that stores something in `secret_service_env` must delete it again, and must copy
the env dict before changing it. Missing tools are a failure, not a skip: scripts/test installs them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.keychain import INSTALL_HINT, SecretService, State, missing_tools, start_secret_service


def _service(state: State) -> Iterator[SecretService]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL_HINT}", pytrace=False)
    service = start_secret_service(state)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def secret_service() -> Iterator[SecretService]:
    """A working, unlocked Secret Service (gnome-keyring) on a private bus."""
    yield from _service("unlocked")


@pytest.fixture(scope="session")
def secret_service_env(secret_service: SecretService) -> dict[str, str]:
    """The environment to run a process against `secret_service` (DBUS_SESSION_BUS_ADDRESS, HOME,
    XDG_*). Shared by the session: copy it before changing it."""
    return secret_service.env


@pytest.fixture(scope="session")
def locked_secret_service() -> Iterator[SecretService]:
    """A Secret Service whose login keyring exists but stays locked (keyring's KeyringLocked)."""
    yield from _service("locked")


@pytest.fixture(scope="session")
def uninitialised_secret_service() -> Iterator[SecretService]:
    """A bus where gnome-keyring is only D-Bus-activatable and has no login keyring: the first use
    needs a prompt that cannot be shown (keyring's InitError, "Prompt dismissed")."""
    yield from _service("uninitialised")


@pytest.fixture(scope="session")
def no_secret_service_env() -> Iterator[dict[str, str]]:
    """A session bus on which nothing provides or can activate org.freedesktop.secrets
    (keyring's fail backend, NoKeyringError)."""
    for service in _service("absent"):
        yield service.env
