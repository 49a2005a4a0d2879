"""Unit tests of `RememberedKeys`: a key read from the keychain is used again for its time, what the
sidecar stores or deletes takes effect at once, misses and failures are never remembered, and a key
in use is read again in the background."""

from __future__ import annotations

import anyio
import pytest

from sidecar.errors import SidecarError
from sidecar.infra.keystore import KeyResolver, MemoryStore, RememberedKeys

pytestmark = pytest.mark.anyio


class CountingStore(MemoryStore):
    """A MemoryStore that counts its reads and can hold one read until released."""

    def __init__(self, entries: dict[str, str] | None = None) -> None:
        super().__init__(entries)
        self.reads = 0
        self.hold: anyio.Event | None = None
        self.reading = anyio.Event()
        self._read = anyio.Event()

    async def get(self, account: str) -> str | None:
        self.reads += 1
        read, self._read = self._read, anyio.Event()
        read.set()
        secret = self.entries.get(account)  # read before waiting: what a slow keychain had
        if self.hold is not None:
            self.reading.set()
            await self.hold.wait()
        return secret

    async def read_times(self, count: int) -> None:
        with anyio.fail_after(5):
            while self.reads < count:
                await self._read.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_read_is_used_again_until_its_time_is_up() -> None:
    store, clock = CountingStore({"openai": "sk-one-1111111111"}), Clock()
    keys = RememberedKeys(store, ttl_s=30.0, clock=clock)
    assert await keys.get("openai") == "sk-one-1111111111"
    store.entries["openai"] = "sk-two-2222222222"  # changed by another program
    clock.now += 29.0
    assert await keys.get("openai") == "sk-one-1111111111"
    assert store.reads == 1
    clock.now += 1.0
    assert await keys.get("openai") == "sk-two-2222222222"
    assert store.reads == 2


async def test_what_the_sidecar_stores_or_deletes_counts_at_once() -> None:
    store = CountingStore({"openai": "sk-one-1111111111"})
    keys = RememberedKeys(store, clock=Clock())
    assert await keys.get("openai") == "sk-one-1111111111"
    await keys.set("openai", "sk-two-2222222222")
    assert await keys.get("openai") == "sk-two-2222222222"
    assert await keys.delete("openai") is True
    assert await keys.get("openai") is None


async def test_a_missing_key_and_a_failing_keychain_are_asked_again() -> None:
    store = CountingStore()
    keys = RememberedKeys(store, clock=Clock())
    assert await keys.get("openai") is None
    store.entries["openai"] = "sk-now-3333333333"
    assert await keys.get("openai") == "sk-now-3333333333"
    assert store.reads == 2

    locked = SidecarError("keychain_unavailable", "The keychain is locked.")
    failing = RememberedKeys(MemoryStore({"openai": "sk-x-4444444444"}, fail=locked), clock=Clock())
    for _ in range(2):
        with pytest.raises(SidecarError):
            await failing.get("openai")
    failing_store = failing.store
    assert isinstance(failing_store, MemoryStore)
    failing_store.fail = None
    assert await failing.get("openai") == "sk-x-4444444444"


async def test_a_read_overtaken_by_a_store_does_not_bring_the_old_key_back() -> None:
    store = CountingStore({"openai": "sk-old-5555555555"})
    keys = RememberedKeys(store, clock=Clock())
    held = store.hold = anyio.Event()
    seen: list[str | None] = []

    async def read() -> None:
        seen.append(await keys.get("openai"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await store.reading.wait()
        store.hold = None  # later reads do not wait
        await keys.set("openai", "sk-new-6666666666")
        held.set()  # the slow read now answers what it read before the store
    # The overtaken read answered what it read, but did not keep it.
    assert seen == ["sk-old-5555555555"]
    assert await keys.get("openai") == "sk-new-6666666666"


async def test_the_resolver_reads_the_keychain_once_for_many_requests() -> None:
    store = CountingStore({"anthropic": "sk-ant-7777777777"})
    resolver = KeyResolver(RememberedKeys(store, clock=Clock()))
    for _ in range(50):
        key = await resolver.resolve("anthropic", "ANTHROPIC_API_KEY_UNSET_IN_TESTS")
        assert key.value == "sk-ant-7777777777"
        assert key.source == "keychain"
    assert store.reads == 1


async def test_a_key_in_use_is_read_again_before_its_time_is_up_without_a_request() -> None:
    store = CountingStore({"openai": "sk-one-1111111111"})
    keys = RememberedKeys(store, ttl_s=0.4)
    try:
        assert await keys.get("openai") == "sk-one-1111111111"
        store.entries["openai"] = "sk-two-2222222222"  # changed by another program
        await store.read_times(2)  # no request asks meanwhile
        assert await keys.get("openai") == "sk-two-2222222222"
    finally:
        await keys.aclose()
