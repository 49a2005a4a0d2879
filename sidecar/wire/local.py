"""Wire types of the local-model methods: Ollama management and `recommend_models`.

Must not know: Ollama's own wire format, psutil, the protocol layer.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from sidecar.wire.base import Params, Wire


class OllamaLoaded(Wire):
    name: str
    size: int | None = None
    size_vram: int | None = None
    expires_at: str | None = None


class OllamaStatusResult(Wire):
    running: bool
    base_url: str
    version: str | None = None
    loaded: list[OllamaLoaded] = msgspec.field(default_factory=list)
    hint: str | None = None


class OllamaModel(Wire):
    name: str
    model: str
    size: int
    modified_at: str | None = None
    digest: str | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None


class OllamaListResult(Wire):
    models: list[OllamaModel]


class ModelParams(Params):
    model: Annotated[str, msgspec.Meta(min_length=1)]


class OllamaPullResult(Wire):
    model: str
    status: str


class OllamaDeleteResult(Wire):
    model: str
    deleted: bool


class PullProgressParams(Wire):
    request_id: int | str
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class RecommendParams(Params):
    use: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=50)] = 6


class GpuInfo(Wire):
    name: str
    memory_total_bytes: int
    kind: str
    memory_free_bytes: int | None = None


class HardwareInfo(Wire):
    total_ram_bytes: int
    available_ram_bytes: int
    cpu_cores_physical: int | None
    cpu_cores_logical: int | None
    cpu_arch: str
    os: str
    free_disk_bytes: int | None
    usable_memory_bytes: int
    gpus: list[GpuInfo] = msgspec.field(default_factory=list)
    unified_memory: bool = False


class Recommendation(Wire):
    model: str
    uses: list[str]
    why: str
    installed: bool
    download_bytes: int
    cost_to_get: str
    memory_bytes: int
    fits_comfortably: bool
    description: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    runs_on: str | None = None  # "gpu" or "cpu"


class RecommendResult(Wire):
    hardware: HardwareInfo
    tier: str
    recommendations: list[Recommendation]
    catalog_date: str
    note: str | None = None
    memory_source: str | None = None  # "nvidia", "apple_unified" or "system_ram"
    ollama_running: bool | None = None
    cloud_suggestions: list[str] = msgspec.field(default_factory=list)
    too_large: list[Recommendation] = msgspec.field(default_factory=list)
