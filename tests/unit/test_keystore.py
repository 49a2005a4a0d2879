"""Unit tests of sidecar.infra.keystore: the resolver with MemoryStore, and KeyringStore's choice of
backend and error mapping with fake keyring backends (no D-Bus; the real Secret Service is in
tests/integration/test_keystore_secret_service.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import keyring
import keyring.core
import pytest
from keyring.backends import chainer, fail, null
from keyring.errors import InitError, KeyringError, KeyringLocked, NoKeyringError, PasswordDeleteError

from sidecar import redact
from sidecar.errors import SidecarError
from sidecar.infra import keychain_errors, keystore
from sidecar.infra.keystore import KeyResolver, KeyringStore, MemoryStore, ResolvedKey
from tests.keychain import REPO

pytestmark = pytest.mark.anyio

CANARY = "sk-canary-0123456789abcdefXYZ"
ODD_SECRET = "plain~secret~without~a~known~shape~42"  # no key shape: only `remember` can mask it


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------------
# KeyResolver with MemoryStore


async def test_env_var_wins_over_keychain(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = KeyResolver(MemoryStore({"openai": "sk-from-keychain-000000000"}))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-1111111111111")
    key = await resolver.resolve("openai", "OPENAI_API_KEY")
    assert (key.value, key.source) == ("sk-from-env-1111111111111", "env")


@pytest.mark.parametrize("blank", [None, "", "   "])
async def test_keychain_used_when_env_var_unset_or_blank(
    monkeypatch: pytest.MonkeyPatch, blank: str | None
) -> None:
    if blank is not None:
        monkeypatch.setenv("OPENAI_API_KEY", blank)
    resolver = KeyResolver(MemoryStore({"openai": "sk-from-keychain-000000000\n"}))
    key = await resolver.resolve("openai", "OPENAI_API_KEY")
    assert (key.value, key.source) == ("sk-from-keychain-000000000", "keychain")


async def test_env_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = KeyResolver(MemoryStore({"openai": "sk-keychain-22222222222"}))
    assert (await resolver.resolve("openai", "OPENAI_API_KEY")).source == "keychain"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-late-env-333333333333")
    assert (await resolver.resolve("openai", "OPENAI_API_KEY")).source == "env"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert (await resolver.resolve("openai", "OPENAI_API_KEY")).source == "keychain"


async def test_account_override() -> None:
    resolver = KeyResolver(MemoryStore({"work-openai": "sk-work-4444444444444"}))
    key = await resolver.resolve("openai", "OPENAI_API_KEY", account="work-openai")
    assert key.value == "sk-work-4444444444444"
    with pytest.raises(SidecarError) as info:
        await resolver.resolve("openai", "OPENAI_API_KEY")
    assert info.value.kind == "missing_key"


async def test_missing_key_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "is_linux_like", lambda: True)
    with pytest.raises(SidecarError) as info:
        await KeyResolver(MemoryStore()).resolve("openai", "OPENAI_API_KEY")
    err = info.value
    assert err.kind == "missing_key"
    assert err.provider == "openai"
    assert 'set_key {"provider": "openai", "api_key": "..."}' in err.message
    assert "OPENAI_API_KEY" in err.message
    assert "secret-tool store --label=llm-sidecar service llm-sidecar username openai" in err.message
    assert "keyring set llm-sidecar openai" in err.message


async def test_missing_key_without_env_var_and_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "is_linux_like", lambda: False)
    with pytest.raises(SidecarError) as info:
        await KeyResolver(MemoryStore()).resolve("custom", None, account="custom-acct")
    msg = info.value.message
    assert "_API_KEY" not in msg
    assert "secret-tool" not in msg
    assert "keyring set llm-sidecar custom-acct" in msg
    assert 'set_key {"provider": "custom"' in msg


def _locked_error() -> SidecarError:
    return keychain_errors.unavailable(
        "locked", backend="keyring.backends.SecretService.Keyring", operation="read"
    )


async def test_keychain_failure_during_resolve_is_keychain_unavailable() -> None:
    resolver = KeyResolver(MemoryStore(fail=_locked_error()))
    with pytest.raises(SidecarError) as info:
        await resolver.resolve("anthropic", "ANTHROPIC_API_KEY")
    err = info.value
    assert err.kind == "keychain_unavailable"
    assert err.provider == "anthropic"
    assert "ANTHROPIC_API_KEY" in err.message
    assert "<ID>_API_KEY" not in err.message
    assert "locked" in err.message


async def test_env_var_rescues_a_broken_keychain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-555555555555")
    resolver = KeyResolver(MemoryStore(fail=_locked_error()))
    assert (await resolver.resolve("anthropic", "ANTHROPIC_API_KEY")).source == "env"
    assert (await resolver.describe_source("anthropic", "ANTHROPIC_API_KEY"))[:2] == (True, "env")


async def test_describe_source_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-proj-abcdefghijklmnop9876"
    resolver = KeyResolver(MemoryStore({"openai": key}))
    configured, source, masked = await resolver.describe_source("openai", "OPENAI_API_KEY")
    assert (configured, source) == (True, "keychain")
    assert masked == redact.mask(key) == "sk-…9876"
    assert masked is not None and key not in masked
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-abcdefghijklmn4321")
    assert await resolver.describe_source("openai", "OPENAI_API_KEY") == (True, "env", "sk-…4321")
    assert await resolver.describe_source("gemini", "GEMINI_API_KEY") == (False, None, None)


def test_resolved_key_repr_hides_the_value() -> None:
    key = ResolvedKey("sk-secret-value-0000000000", "env")
    assert "sk-secret" not in repr(key)
    assert key.masked == "sk-…0000"


async def test_every_secret_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = redact.remember

    def record(secret: str) -> None:
        seen.append(secret)
        original(secret)

    monkeypatch.setattr(redact, "remember", record)
    store = MemoryStore({"openai": ODD_SECRET})
    await KeyResolver(store).resolve("openai", "OPENAI_API_KEY")
    assert ODD_SECRET in seen
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env~secret~also~odd~shaped~7")
    await KeyResolver(store).resolve("anthropic", "ANTHROPIC_API_KEY")
    assert "env~secret~also~odd~shaped~7" in seen
    await store.set("xai", "set~secret~odd~shape~99")
    assert "set~secret~odd~shape~99" in seen
    assert ODD_SECRET not in redact.redact(f"upstream said: {ODD_SECRET}")


async def test_memory_store_protocol() -> None:
    store: keystore.KeyStore = MemoryStore()
    assert await store.get("openai") is None
    await store.set("openai", "sk-mem-000000000000")
    assert await store.get("openai") == "sk-mem-000000000000"
    assert await store.delete("openai") is True
    assert await store.delete("openai") is False
    assert await store.describe() == "memory"


# --------------------------------------------------------------------------------------------------
# KeyringStore with fake backends. The fakes are duck-typed, NOT KeyringBackend subclasses: keyring
# registers every subclass globally and would consider them in later auto-detection.


class FakeKeychain:
    priority = 5

    def __init__(self, error: BaseException | None = None) -> None:
        self.items: dict[tuple[str, str], str] = {}
        self.error = error
        self.threads: list[int] = []

    def _maybe_fail(self) -> None:
        self.threads.append(threading.get_ident())
        if self.error is not None:
            raise self.error

    def get_password(self, service: str, username: str) -> str | None:
        self._maybe_fail()
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._maybe_fail()
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._maybe_fail()
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError("No such password!")


class PlaintextKeyring(FakeKeychain):
    priority = 0.5  # type: ignore[assignment]


PlaintextKeyring.__module__ = "keyrings.alt.file"


class EncryptedKeyring:
    """Like keyrings.alt's: any use would prompt with getpass, i.e. read stdin. Must never be used."""

    priority = 0.6

    def get_password(self, service: str, username: str) -> str | None:
        raise AssertionError("EncryptedKeyring was used: it would have read the protocol's stdin")

    set_password = delete_password = get_password


EncryptedKeyring.__module__ = "keyrings.alt.file"


class PromptDismissedException(Exception):
    """Named like secretstorage's."""


class DBusErrorResponse(Exception):
    """Shaped like jeepney's: a D-Bus error name plus a payload that may echo anything."""

    def __init__(self, name: str, payload: str) -> None:
        super().__init__(f"[{name}] {payload}")
        self.name = name


def _new(cls: Any) -> Any:
    """An instance of one of keyring's own (untyped) backend classes."""
    return cls()


@pytest.fixture
def use_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., dict[str, int]]]:
    """Make keyring resolve to the given backend(s): the first for the first detection, the next
    one after each keyring.core.init_backend() (a re-detection)."""
    state = {"index": 0, "detections": 0, "gets": 0}
    backends: list[Any] = []

    def get_keyring() -> Any:
        state["gets"] += 1
        return backends[min(state["index"], len(backends) - 1)]

    def init_backend(limit: Any = None) -> None:
        state["detections"] += 1
        state["index"] += 1

    monkeypatch.setattr(keyring, "get_keyring", get_keyring)
    monkeypatch.setattr(keyring.core, "init_backend", init_backend)

    def use(*chosen: Any) -> dict[str, int]:
        backends[:] = chosen
        return state

    yield use


async def test_roundtrip_in_a_worker_thread(use_backend: Callable[..., dict[str, int]]) -> None:
    fake = FakeKeychain()
    state = use_backend(fake)
    store = KeyringStore()
    assert await store.get("openai") is None
    await store.set("openai", CANARY)
    assert fake.items == {("llm-sidecar", "openai"): CANARY}
    assert await store.get("openai") == CANARY
    assert await store.delete("openai") is True
    assert await store.delete("openai") is False
    assert await store.describe() == f"{__name__}.FakeKeychain"
    assert threading.get_ident() not in fake.threads
    assert state["gets"] == 1, "the resolved backend is cached"
    assert CANARY not in redact.redact(f"x {CANARY} y")


async def test_empty_account_or_secret_is_invalid(use_backend: Callable[..., dict[str, int]]) -> None:
    use_backend(FakeKeychain())
    with pytest.raises(SidecarError) as info:
        await KeyringStore().get("")
    assert info.value.kind == "invalid_request"
    with pytest.raises(SidecarError) as info:
        await KeyringStore().set("openai", "")
    assert info.value.kind == "invalid_request"


def _dumped(err: SidecarError) -> str:
    return " ".join([str(err), repr(err), err.message, json.dumps(err.details, default=str)])


@pytest.mark.parametrize(
    ("error", "cause", "phrases"),
    [
        (NoKeyringError(f"no backend {CANARY}"), "no_backend", ["No OS keychain is reachable"]),
        (KeyringLocked(f"Failed to unlock {CANARY}"), "locked", ["locked", "Unlock the login keyring"]),
        (KeyringError(f"boom {CANARY}"), "failed", ["failed while", "(KeyringError)"]),
        (OSError(f"socket {CANARY}"), "failed", ["(OSError)"]),
        (
            DBusErrorResponse("org.freedesktop.DBus.Error.NoReply", f"payload {CANARY}"),
            "failed",
            ["DBusErrorResponse: org.freedesktop.DBus.Error.NoReply"],
        ),
    ],
)
async def test_failures_map_to_keychain_unavailable_without_raw_text(
    use_backend: Callable[..., dict[str, int]], error: BaseException, cause: str, phrases: list[str]
) -> None:
    use_backend(FakeKeychain(error))
    store = KeyringStore()
    for call in (store.get("openai"), store.set("openai", CANARY), store.delete("openai")):
        with pytest.raises(SidecarError) as info:
            await call
        err = info.value
        assert err.kind == "keychain_unavailable"
        assert err.details["cause"] == cause
        for phrase in phrases:
            assert phrase in err.message
        assert CANARY not in _dumped(err)
        assert "<ID>_API_KEY" in err.message
        assert err.__suppress_context__, "the raw exception must not ride along in tracebacks"


async def test_prompt_dismissed(use_backend: Callable[..., dict[str, int]]) -> None:
    try:
        raise PromptDismissedException("Prompt dismissed.")
    except PromptDismissedException as cause:
        init_error = InitError("Failed to create the collection: Prompt dismissed..")
        init_error.__cause__ = cause
    use_backend(FakeKeychain(init_error))
    with pytest.raises(SidecarError) as info:
        await KeyringStore().get("openai")
    assert info.value.details["cause"] == "prompt_dismissed"
    assert '"Prompt dismissed"' in info.value.message
    assert "desktop session" in info.value.message


async def test_other_init_error(use_backend: Callable[..., dict[str, int]]) -> None:
    use_backend(FakeKeychain(InitError("Failed to create the collection")))
    with pytest.raises(SidecarError) as info:
        await KeyringStore().get("openai")
    assert info.value.details["cause"] == "init_failed"
    assert "default" in info.value.message


@pytest.mark.parametrize("bus", [None, "unix:path=/run/user/1000/bus"])
async def test_fail_backend_explains_dbus(
    use_backend: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch, bus: str | None
) -> None:
    monkeypatch.setattr(keystore, "is_linux_like", lambda: True)
    if bus is None:
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus)
    use_backend(_new(fail.Keyring))
    with pytest.raises(SidecarError) as info:
        await KeyringStore().set("openai", CANARY)
    msg = info.value.message
    assert info.value.kind == "keychain_unavailable"
    assert "DBUS_SESSION_BUS_ADDRESS" in msg
    assert "MCP clients" in msg and "server's env" in msg
    assert ("is not set" in msg) == (bus is None)
    assert CANARY not in _dumped(info.value)


async def test_a_keychain_started_later_is_found(use_backend: Callable[..., dict[str, int]]) -> None:
    fake = FakeKeychain()
    fake.items[("llm-sidecar", "openai")] = "sk-later-6666666666666"
    state = use_backend(_new(fail.Keyring), fake)
    store = KeyringStore()
    assert "unavailable" in await store.describe()
    assert await store.get("openai") == "sk-later-6666666666666"
    assert state["detections"] == 1


async def test_null_backend_stores_nothing(use_backend: Callable[..., dict[str, int]]) -> None:
    use_backend(_new(null.Keyring))
    store = KeyringStore()
    assert await store.get("openai") is None
    assert await store.delete("openai") is False
    with pytest.raises(SidecarError) as info:
        await store.set("openai", CANARY)
    assert info.value.kind == "keychain_unavailable"
    assert info.value.details["cause"] == "stores_nothing"
    assert "stores nothing" in info.value.message and "PYTHON_KEYRING_BACKEND" in info.value.message


async def test_plaintext_backend_refused_unless_explicit(
    use_backend: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = PlaintextKeyring()
    use_backend(plain)
    with pytest.raises(SidecarError) as info:
        await KeyringStore().set("openai", CANARY)
    assert info.value.details["cause"] == "refused_file"
    assert "PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring" in info.value.message
    assert plain.items == {}

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    await KeyringStore().set("openai", CANARY)
    assert plain.items == {("llm-sidecar", "openai"): CANARY}


@pytest.mark.parametrize("explicit", [False, True])
async def test_encrypted_backend_always_refused(
    use_backend: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch, explicit: bool
) -> None:
    if explicit:
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.EncryptedKeyring")
    use_backend(EncryptedKeyring())
    for call in (KeyringStore().get("openai"), KeyringStore().set("openai", CANARY)):
        with pytest.raises(SidecarError) as info:
            await call  # EncryptedKeyring raises AssertionError if it is ever called
        assert info.value.details["cause"] == "refused_prompting"
        assert "standard input" in info.value.message


async def test_auto_detected_chain_uses_only_its_safe_member(
    use_backend: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = FakeKeychain()
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [real, EncryptedKeyring(), PlaintextKeyring()])
    use_backend(_new(chainer.ChainerBackend))
    store = KeyringStore()
    await store.set("openai", CANARY)
    assert await store.get("openai") == CANARY
    assert real.items == {("llm-sidecar", "openai"): CANARY}
    assert await store.describe() == f"{__name__}.FakeKeychain"


async def test_auto_detected_chain_of_file_backends_is_refused(
    use_backend: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [EncryptedKeyring(), PlaintextKeyring()])
    use_backend(_new(chainer.ChainerBackend))
    with pytest.raises(SidecarError) as info:
        await KeyringStore().get("openai")
    assert info.value.kind == "keychain_unavailable"
    assert info.value.details["cause"] in ("refused_prompting", "refused_file")


async def test_explicit_chain(
    use_backend: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.chainer.ChainerBackend")
    plain = PlaintextKeyring()
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [plain])
    use_backend(_new(chainer.ChainerBackend))
    await KeyringStore().set("openai", CANARY)  # explicitly chosen: a file backend is allowed
    assert plain.items == {("llm-sidecar", "openai"): CANARY}

    monkeypatch.setattr(chainer.ChainerBackend, "backends", [FakeKeychain(), EncryptedKeyring()])
    with pytest.raises(SidecarError) as info:
        await KeyringStore().get("openai")
    assert info.value.details["cause"] == "refused_prompting"


async def test_bad_backend_setting(
    use_backend: Callable[..., dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no.such.Backend")

    def broken() -> Any:
        raise ModuleNotFoundError("No module named 'no'")

    monkeypatch.setattr(keyring, "get_keyring", broken)
    store = KeyringStore()
    with pytest.raises(SidecarError) as info:
        await store.get("openai")
    assert info.value.kind == "keychain_unavailable"
    assert "PYTHON_KEYRING_BACKEND=no.such.Backend could not be loaded" in info.value.message
    assert "unavailable" in await store.describe()


async def test_a_hung_keychain_call_can_be_cancelled(use_backend: Callable[..., dict[str, int]]) -> None:
    release = threading.Event()

    class Hanging(FakeKeychain):
        def get_password(self, service: str, username: str) -> str | None:
            release.wait(10)  # a desktop unlock prompt nobody answers
            return None

    use_backend(Hanging())
    try:
        with anyio.move_on_after(0.2) as scope:
            await KeyringStore().get("openai")
        assert scope.cancelled_caught
    finally:
        release.set()


def test_keyring_is_not_imported_with_the_module() -> None:
    code = (
        "import sys, sidecar.infra.keystore as k\n"
        "k.KeyResolver(k.KeyringStore())\n"
        "print('keyring' in sys.modules, 'secretstorage' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.split() == ["False", "False"]
