"""Local models: `ollama_status`, `ollama_list`, `ollama_pull`, `ollama_delete`, `recommend_models`.

`ollama_status` reports rather than fails: Ollama not running is `running: false` with a hint.
The other Ollama methods raise `ollama_unavailable` then. Pulls are shared per model by a
`PullHub` whose `run()` the server starts. `recommend_models` measures the machine in a worker
thread and needs no network: when Ollama is down, nothing shows as installed and the note says so.

Must not know: stdin/stdout, JSON-RPC, Ollama's wire format, psutil.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import anyio
import anyio.abc

from sidecar import logs
from sidecar.core import recommend
from sidecar.core.catalog import PriceBook
from sidecar.core.pull_progress import Progress
from sidecar.errors import ProviderError, SidecarError, invalid_request
from sidecar.infra import hardware
from sidecar.infra.keystore import KeyResolver
from sidecar.providers.http import Timeouts
from sidecar.providers.ollama import OllamaClient
from sidecar.providers.registry import ProviderRegistry
from sidecar.services.context import CallContext, Handler
from sidecar.services.pulls import PullHub
from sidecar.wire.base import Empty
from sidecar.wire.local import (
    GpuInfo,
    HardwareInfo,
    ModelParams,
    OllamaDeleteResult,
    OllamaListResult,
    OllamaPullResult,
    OllamaStatusResult,
    PullProgressParams,
    Recommendation,
    RecommendParams,
    RecommendResult,
)

PROGRESS: Final = "ollama_pull/progress"
# recommend_models must answer quickly even when OLLAMA_HOST points somewhere unreachable.
LISTING_TIMEOUTS: Final = Timeouts(connect_s=2.0, read_s=5.0, write_s=5.0)
_log = logs.get_logger("local")


def ollama_name(model: str) -> str:
    """The name Ollama knows: `ollama:llama3.2:3b` (a recommend_models reference) -> `llama3.2:3b`."""
    model = model.strip()
    rest = model.removeprefix("ollama:")
    return rest if rest else model


class LocalService:
    def __init__(
        self,
        providers: ProviderRegistry,
        keys: KeyResolver,
        prices: PriceBook,
        *,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], recommend.HardwareInfo] = hardware.probe,
    ) -> None:
        spec = providers.spec("ollama")
        self.providers = providers
        self.keys = keys
        self.prices = prices
        self.client = OllamaClient(providers.http, spec.base_url, spec.id)
        self.hub = PullHub(self.client.pull, clock)
        self._probe = probe

    def handlers(self) -> dict[str, Handler]:
        return {
            "ollama_status": self.status,
            "ollama_list": self.list_models,
            "ollama_pull": self.pull,
            "ollama_delete": self.delete,
            "recommend_models": self.recommend_models,
        }

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host shared downloads for the server's lifetime (`serve` starts it)."""
        await self.hub.run(task_status=task_status)

    # -- Ollama ---------------------------------------------------------------------------------

    async def status(self, params: Empty, ctx: CallContext) -> OllamaStatusResult:
        base = self.client.base_url
        try:
            version = await self.client.version()
        except SidecarError as exc:
            if exc.kind == "ollama_unavailable":
                hint = exc.message
            elif exc.kind in ("timeout", "network_error"):
                hint = f"{exc.message} Is Ollama running at {base}? Start it with `ollama serve`."
            else:
                hint = (
                    f"Something answers at {base}, but not as Ollama does: {exc.message} Check OLLAMA_HOST."
                )
            return OllamaStatusResult(running=False, base_url=base, hint=hint)
        try:
            loaded = await self.client.loaded()
        except SidecarError as exc:
            _log.info("ollama /api/ps failed", kind=exc.kind)
            loaded = []
        return OllamaStatusResult(running=True, base_url=base, version=version, loaded=loaded)

    async def list_models(self, params: Empty, ctx: CallContext) -> OllamaListResult:
        return OllamaListResult(models=await self.client.installed())

    async def pull(self, params: ModelParams, ctx: CallContext) -> OllamaPullResult:
        name = ollama_name(params.model)
        request_id = ctx.request_id

        async def report(p: Progress) -> None:
            await ctx.notify(
                PROGRESS,
                PullProgressParams(
                    request_id=request_id,
                    status=p.status,
                    digest=p.digest,
                    total=p.total,
                    completed=p.completed,
                ),
            )

        try:
            await self.hub.pull(recommend.normalize_ollama_name(name), name, report)
        except ProviderError as exc:
            if exc.kind == "model_not_found":
                raise ProviderError(
                    "model_not_found",
                    f"Ollama found no model named '{name}' to download. Check the name and tag "
                    "(https://ollama.com/library lists them), or pick one from recommend_models.",
                    provider=exc.provider or "ollama",
                    status=exc.status,
                ) from None
            raise
        return OllamaPullResult(model=name, status="success")

    async def delete(self, params: ModelParams, ctx: CallContext) -> OllamaDeleteResult:
        name = ollama_name(params.model)
        try:
            await self.client.delete(name)
        except ProviderError as exc:
            if exc.kind == "model_not_found":
                raise ProviderError(
                    "model_not_found",
                    f"Ollama has no model '{name}' installed, so there is nothing to delete. "
                    "ollama_list shows the installed models.",
                    provider=exc.provider or "ollama",
                    status=exc.status,
                ) from None
            raise
        return OllamaDeleteResult(model=name, deleted=True)

    # -- recommendations ------------------------------------------------------------------------

    async def recommend_models(self, params: RecommendParams, ctx: CallContext) -> RecommendResult:
        if params.use is not None and params.use not in recommend.USES:
            raise invalid_request(
                f"Unknown use '{params.use}'; use one of: {', '.join(recommend.USES)} (or leave it out).",
                field="use",
            )
        measured: list[recommend.HardwareInfo] = []
        installed: list[str] | None = None

        async def measure() -> None:
            measured.append(await anyio.to_thread.run_sync(self._probe, abandon_on_cancel=True))

        async def listing() -> None:
            nonlocal installed
            try:
                installed = [m.name for m in await self.client.installed(LISTING_TIMEOUTS)]
            except SidecarError as exc:
                _log.info("ollama listing for recommend_models failed", kind=exc.kind)

        async with anyio.create_task_group() as tg:
            tg.start_soon(measure)
            tg.start_soon(listing)
        hw = measured[0]
        cloud = await self._cloud_models()
        try:
            rec = recommend.recommend(hw, installed or [], cloud, use=params.use, limit=params.limit)
        except ValueError as exc:
            raise invalid_request(str(exc), field="use") from None
        note = rec.note
        if installed is None:
            note += (
                f" Ollama is not reachable at {self.client.base_url}, so no model shows as installed; "
                "start it with `ollama serve` before downloading one."
            )
        return RecommendResult(
            hardware=_hardware(hw, rec.usable_memory_bytes),
            tier=rec.tier,
            recommendations=[_recommendation(r) for r in rec.recommendations],
            catalog_date=rec.catalog_date,
            note=note,
            memory_source=rec.memory_source,
            ollama_running=installed is not None,
            cloud_suggestions=list(rec.cloud_suggestions),
            too_large=[_recommendation(r) for r in rec.too_large],
        )

    async def _cloud_models(self) -> list[str]:
        """Catalog models of the built-in providers that have a key (keychain trouble = no key)."""
        models: list[str] = []
        for spec in self.providers.specs.values():
            if spec.custom or not spec.needs_key:
                continue
            try:
                configured, _, _ = await self.keys.describe_source(
                    spec.id, spec.key_env, account=spec.keychain_account
                )
            except SidecarError:
                configured = False
            if configured:
                models.extend(info.ref for info, _ in self.prices.models_for(spec.id))
        return models


def _hardware(hw: recommend.HardwareInfo, usable: int) -> HardwareInfo:
    return HardwareInfo(
        total_ram_bytes=hw.total_ram_bytes,
        available_ram_bytes=hw.available_ram_bytes,
        cpu_cores_physical=hw.cpu_cores_physical,
        cpu_cores_logical=hw.cpu_cores_logical,
        cpu_arch=hw.cpu_arch,
        os=hw.os,
        free_disk_bytes=hw.free_disk_bytes,
        usable_memory_bytes=usable,
        gpus=[
            GpuInfo(
                name=g.name,
                memory_total_bytes=g.memory_total_bytes,
                kind=g.kind,
                memory_free_bytes=g.memory_free_bytes,
            )
            for g in hw.gpus
        ],
        unified_memory=hw.unified_memory,
    )


def _recommendation(r: recommend.RecommendedModel) -> Recommendation:
    return Recommendation(
        model=r.model,
        uses=list(r.uses),
        why=r.why,
        installed=r.installed,
        download_bytes=r.download_bytes,
        cost_to_get=r.cost_to_get,
        memory_bytes=r.memory_bytes,
        fits_comfortably=r.fits_comfortably,
        description=r.description,
        parameter_size=r.parameter_size,
        quantization=r.quantization,
        context_length=r.context_length,
        runs_on=r.runs_on,
    )
