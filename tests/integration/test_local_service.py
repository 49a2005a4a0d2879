"""The local-model methods in process against the fake Ollama server: status, list, delete,
pulls (progress, errors, sharing one download, cancellation) and recommend_models."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sidecar.app import Services, build_services
from sidecar.config import Config
from sidecar.core.recommend import GiB, HardwareInfo
from sidecar.errors import SidecarError
from sidecar.infra.keystore import MemoryStore
from sidecar.services.local import PROGRESS, LocalService
from sidecar.wire.base import Empty
from sidecar.wire.local import (
    ModelParams,
    OllamaListResult,
    OllamaPullResult,
    OllamaStatusResult,
    PullProgressParams,
    RecommendParams,
    RecommendResult,
)
from tests.fakes.http import FakeUpstream, ndjson_reply
from tests.fakes.ollama import FakeOllama

pytestmark = pytest.mark.anyio

LAPTOP = HardwareInfo(
    total_ram_bytes=16 * GiB,
    available_ram_bytes=10 * GiB,
    cpu_cores_physical=4,
    cpu_cores_logical=8,
    cpu_arch="x86_64",
    os="linux",
    free_disk_bytes=200 * GiB,
)
TINY = HardwareInfo(
    total_ram_bytes=2 * GiB,
    available_ram_bytes=1 * GiB,
    cpu_cores_physical=1,
    cpu_cores_logical=1,
    cpu_arch="arm64",
    os="linux",
    free_disk_bytes=100 * GiB,
)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Ctx:
    def __init__(self, request_id: int = 1) -> None:
        self.request_id = request_id
        self.notes: list[PullProgressParams] = []
        self._changed = anyio.Event()

    async def notify(self, method: str, params: Any) -> None:
        assert method == PROGRESS and isinstance(params, PullProgressParams)
        assert params.request_id == self.request_id
        self.notes.append(params)
        self._changed.set()

    async def wait_for(self, n: int) -> None:
        while len(self.notes) < n:
            self._changed = anyio.Event()
            await self._changed.wait()


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as upstream:
        yield upstream


@pytest.fixture
async def local_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """Make a running LocalService for a base URL (its PullHub hosted in a task group)."""
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    made: list[Services] = []
    async with anyio.create_task_group() as tg:

        async def make(
            url: str, *, hw: HardwareInfo = LAPTOP, store: MemoryStore | None = None, step: float = 0.05
        ) -> LocalService:
            env = {"OLLAMA_HOST": url, "SIDECAR_HOME": str(tmp_path)}
            services = build_services(Config(), store=store or MemoryStore(), env=env)
            made.append(services)
            # Every progress line advances the clock `step` s: coalescing independent of wall time.
            clock = itertools.count(step=step).__next__
            local = LocalService(
                services.providers, services.keys, services.pricing.book, clock=clock, probe=lambda: hw
            )
            await tg.start(local.run)
            return local

        yield make
        tg.cancel_scope.cancel()
    for services in made:
        await services.aclose()


def assert_progress_is_sane(notes: list[PullProgressParams], fake: FakeOllama) -> None:
    """Per digest: figures never go back, the last is the total; every status the fake sent is seen,
    in order; the last notification is success."""
    last: dict[str, int] = {}
    for note in notes:
        if note.digest and note.completed is not None:
            assert note.completed >= last.get(note.digest, 0)
            last[note.digest] = note.completed
    sent = [line for line in fake.pull_lines_sent if "status" in line]
    totals = {line["digest"]: line["total"] for line in sent if "digest" in line}
    assert last == totals
    assert list(dict.fromkeys(n.status for n in notes)) == list(
        dict.fromkeys(line["status"] for line in sent)
    )
    assert notes[-1].status == "success"


async def pull(local: LocalService, model: str, ctx: Ctx) -> OllamaPullResult:
    result = await local.pull(ModelParams(model=model), ctx)
    assert isinstance(result, OllamaPullResult)
    return result


# --- status, list, delete ---------------------------------------------------------------------------


async def test_status_up_and_down(fake: FakeOllama, local_for: Any) -> None:
    fake.loaded["llama3.2:latest"] = "2030-01-01T00:00:00Z"
    up = await (await local_for(fake.url)).status(Empty(), Ctx())
    assert isinstance(up, OllamaStatusResult)
    assert up.running and up.version == fake.version and up.base_url == fake.url and up.hint is None
    assert [m.name for m in up.loaded] == ["llama3.2:latest"]
    assert up.loaded[0].expires_at == "2030-01-01T00:00:00Z"
    url = closed_port_url()
    down = await (await local_for(url)).status(Empty(), Ctx())
    assert not down.running and down.version is None and down.base_url == url
    assert down.hint is not None and url in down.hint and "ollama serve" in down.hint
    with FakeUpstream() as stranger:  # something else listens there
        odd = await (await local_for(stranger.url)).status(Empty(), Ctx())
    assert not odd.running and odd.hint is not None and "not as Ollama does" in odd.hint


async def test_list_and_delete(fake: FakeOllama, local_for: Any) -> None:
    local = await local_for(fake.url)
    listed = await local.list_models(Empty(), Ctx())
    assert isinstance(listed, OllamaListResult)
    [model] = listed.models
    assert (model.name, model.family, model.parameter_size, model.quantization) == (
        "llama3.2:latest",
        "llama",
        "3.2B",
        "Q4_K_M",
    )
    assert model.size > 0 and model.digest and model.modified_at
    deleted = await local.delete(ModelParams(model="ollama:llama3.2"), Ctx())
    assert (deleted.model, deleted.deleted) == ("llama3.2", True)
    assert fake.requests[-1].method == "DELETE" and fake.requests[-1].json() == {"model": "llama3.2"}
    assert (await local.list_models(Empty(), Ctx())).models == []
    with pytest.raises(SidecarError) as err:
        await local.delete(ModelParams(model="llama3.2"), Ctx())
    assert err.value.kind == "model_not_found" and "ollama_list" in err.value.message


async def test_every_method_but_status_raises_ollama_unavailable(local_for: Any) -> None:
    local = await local_for(closed_port_url())
    for call in (
        local.list_models(Empty(), Ctx()),
        local.delete(ModelParams(model="x"), Ctx()),
        local.pull(ModelParams(model="x"), Ctx()),
    ):
        with pytest.raises(SidecarError) as err:
            await call
        assert err.value.kind == "ollama_unavailable"


# --- pulls ------------------------------------------------------------------------------------------


async def test_pull_reports_coalesced_progress_and_installs(fake: FakeOllama, local_for: Any) -> None:
    fake.progress_lines = 40
    local = await local_for(fake.url)
    ctx = Ctx()
    result = await pull(local, "ollama:gemma3:1b", ctx)
    assert (result.model, result.status) == ("gemma3:1b", "success")
    assert_progress_is_sane(ctx.notes, fake)
    sent_figures = sum(1 for line in fake.pull_lines_sent if "completed" in line)
    got_figures = sum(1 for n in ctx.notes if n.completed is not None)
    assert got_figures < sent_figures / 2  # coalesced (a figure every 50 ms of the injected clock)
    assert fake.pull_requests()[0].json() == {"model": "gemma3:1b", "stream": True}
    assert "gemma3:1b" in fake.installed


async def test_parallel_layer_downloads_are_coalesced_per_layer(local_for: Any) -> None:
    with FakeOllama(interleave=True, progress_lines=30) as fake:
        ctx = Ctx()
        await pull(await local_for(fake.url, step=0.01), "llama3.1:8b", ctx)
        assert_progress_is_sane(ctx.notes, fake)
        digests = [line.get("digest") for line in fake.pull_lines_sent if "completed" in line]
        assert digests[0] != digests[1]  # the fake really interleaved the layers
        # A layer's line every 40 ms of clock, a figure per layer every 250 ms: about 1 in 6 goes out.
        assert sum(1 for n in ctx.notes if n.completed is not None) < len(digests) / 3


async def test_pull_errors(fake: FakeOllama, local_for: Any) -> None:
    local = await local_for(fake.url)
    with pytest.raises(SidecarError) as err:
        await pull(local, "no-such-model:7b", Ctx())
    assert err.value.kind == "model_not_found"
    assert "no-such-model:7b" in err.value.message and "recommend_models" in err.value.message
    fake.pull_errors["gemma3:1b"] = "max retries exceeded: unexpected EOF"
    ctx = Ctx()
    with pytest.raises(SidecarError) as err:
        await pull(local, "gemma3:1b", ctx)
    assert err.value.kind == "provider_error" and "max retries exceeded" in err.value.message
    assert ctx.notes and ctx.notes[0].status == "pulling manifest"
    fake.enqueue(
        ndjson_reply([{"status": "pulling manifest"}, {"status": "verifying sha256 digest"}]),
        path="/api/pull",
    )
    with pytest.raises(SidecarError) as err:
        await pull(local, "gemma3:4b", Ctx())
    assert err.value.kind == "provider_error" and "ended before" in err.value.message
    assert fake.installed == ["llama3.2:latest"]


async def test_two_pulls_share_one_download(fake: FakeOllama, local_for: Any) -> None:
    fake.pull_delay_s = 0.005
    local = await local_for(fake.url)
    first, second = Ctx(1), Ctx(2)
    results: list[OllamaPullResult] = []

    async def run(model: str, ctx: Ctx) -> None:
        results.append(await pull(local, model, ctx))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "qwen2.5-coder:1.5b", first)
            await first.wait_for(3)
            tg.start_soon(run, "ollama:Qwen2.5-Coder:1.5b", second)  # the same model, spelled otherwise
    assert len(fake.pull_requests()) == 1
    assert sorted(r.status for r in results) == ["success", "success"]
    assert_progress_is_sane(first.notes, fake)
    assert second.notes[-1].status == "success"
    # The late joiner started from where the download was, not from the beginning.
    assert second.notes[0].status != "pulling manifest" or len(second.notes) < len(first.notes)
    assert len(second.notes) < len(first.notes)


async def test_a_download_outlives_its_first_requester_while_another_waits(
    fake: FakeOllama, local_for: Any
) -> None:
    fake.pull_delay_s = 0.01
    local = await local_for(fake.url)
    first, second = Ctx(1), Ctx(2)
    outcome: list[Any] = []
    first_scope = anyio.CancelScope()

    async def run_first() -> None:
        with first_scope:
            await pull(local, "gemma3:1b", first)
        outcome.append("first cancelled" if first_scope.cancelled_caught else "first finished")

    async def run_second() -> None:
        outcome.append(await pull(local, "gemma3:1b", second))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_first)
            await first.wait_for(2)
            tg.start_soon(run_second)
            await second.wait_for(2)
            first_scope.cancel()
    assert outcome[0] == "first cancelled"
    assert isinstance(outcome[1], OllamaPullResult) and outcome[1].status == "success"
    assert len(fake.pull_requests()) == 1
    # The fake counts a stream once its last write returns, which can be after the client read it.
    assert fake.wait_for_completed_streams(1) and fake.disconnects == 0
    assert second.notes[-1].status == "success"
    assert "gemma3:1b" in fake.installed


async def test_cancelling_the_only_pull_closes_the_download_at_once(fake: FakeOllama, local_for: Any) -> None:
    fake.pull_delay_s = 0.2
    local = await local_for(fake.url)
    ctx = Ctx()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pull, local, "gemma3:1b", ctx)
            await ctx.wait_for(2)
            tg.cancel_scope.cancel()
        assert await anyio.to_thread.run_sync(fake.wait_for_disconnect, 2.0)
    assert local.hub.active == []
    assert "gemma3:1b" not in fake.installed
    # A new pull starts a new download.
    fake.pull_delay_s = 0.0
    assert (await pull(local, "gemma3:1b", Ctx())).status == "success"
    assert len(fake.pull_requests()) == 2


async def test_a_failed_shared_download_fails_every_waiter(fake: FakeOllama, local_for: Any) -> None:
    fake.pull_delay_s = 0.01
    fake.pull_errors["gemma3:1b"] = "digest mismatch"
    local = await local_for(fake.url)
    errors: list[str] = []

    async def run(ctx: Ctx) -> None:
        try:
            await pull(local, "gemma3:1b", ctx)
        except SidecarError as exc:
            errors.append(exc.kind)

    first, second = Ctx(1), Ctx(2)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, first)
            await first.wait_for(1)
            tg.start_soon(run, second)
    assert errors == ["provider_error", "provider_error"]
    assert len(fake.pull_requests()) == 1


# --- recommend_models -------------------------------------------------------------------------------


async def recommend(local: LocalService, **kw: Any) -> RecommendResult:
    result = await local.recommend_models(RecommendParams(**kw), Ctx())
    assert isinstance(result, RecommendResult)
    return result


async def test_recommend_marks_what_ollama_has(fake: FakeOllama, local_for: Any) -> None:
    result = await recommend(await local_for(fake.url))
    assert result.tier == "medium"
    assert result.hardware.total_ram_bytes == 16 * GiB and result.hardware.usable_memory_bytes == 12 * GiB
    assert result.ollama_running is True and result.memory_source == "system_ram"
    assert result.recommendations and all(r.model.startswith("ollama:") for r in result.recommendations)
    installed = {r.model for r in result.recommendations if r.installed}
    assert installed <= {"ollama:llama3.2:3b"}
    everything = await recommend(await local_for(fake.url), use="general", limit=50)
    llama = next(r for r in everything.recommendations if r.model == "ollama:llama3.2:3b")
    assert (
        llama.installed
        and llama.download_bytes == 0
        and llama.runs_on == "cpu"
        and llama.quantization == "Q4_K_M"
    )
    assert all(not r.installed for r in everything.recommendations if r.model != "ollama:llama3.2:3b")


async def test_recommend_without_ollama_says_so(local_for: Any) -> None:
    result = await recommend(await local_for(closed_port_url()))
    assert result.ollama_running is False
    assert result.note is not None and "not reachable" in result.note
    assert not any(r.installed for r in result.recommendations)


async def test_recommend_suggests_configured_cloud_models_when_nothing_fits(
    fake: FakeOllama, local_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    none = await recommend(await local_for(fake.url, hw=TINY))
    assert none.recommendations == [] and none.cloud_suggestions == []
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-valid")
    store = MemoryStore({"anthropic": "sk-ant-test"})
    some = await recommend(await local_for(fake.url, hw=TINY, store=store))
    assert some.cloud_suggestions and {s.split(":")[0] for s in some.cloud_suggestions} <= {
        "openai",
        "anthropic",
    }
    assert some.cloud_suggestions[0].startswith("openai:")
    broken = MemoryStore(fail=SidecarError("keychain_unavailable", "no keychain"))
    monkeypatch.delenv("OPENAI_API_KEY")
    still = await recommend(await local_for(fake.url, hw=TINY, store=broken))
    assert still.cloud_suggestions == []


async def test_recommend_rejects_an_unknown_use(fake: FakeOllama, local_for: Any) -> None:
    with pytest.raises(SidecarError) as err:
        await recommend(await local_for(fake.url), use="painting")
    assert err.value.kind == "invalid_request" and err.value.field == "use"
