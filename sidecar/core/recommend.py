"""Which local Ollama models suit this machine: the tier rule, a curated catalog, and the ranking.

Pure policy. It is handed a `HardwareInfo` (measured by `sidecar.infra.hardware.probe`, or built by
hand in a test), the names of the installed Ollama models and the configured cloud models, and
returns plain frozen dataclasses that a service converts to wire types.

How much memory a model may use (`memory_budget`):

* NVIDIA GPU(s) with at least 3 GiB usable: the sum of their VRAM minus 0.5 GiB each (CUDA context,
  the desktop). A model larger than that would run partly on the CPU, several times slower, so it
  does not count as fitting. Smaller cards are ignored and the machine is treated as CPU-only.
* Apple Silicon: the unified memory the GPU may wire (Metal's `recommendedMaxWorkingSetSize`),
  which macOS sets to about 2/3 of RAM up to 36 GiB and about 3/4 above (`apple_gpu_working_set`).
* Otherwise system RAM minus what the OS and the user's apps need: max(2 GiB, 25 % of RAM).

The tier rule (`tier_for`), on that usable memory:

* ``low``    < 7 GiB: 1-4B models (a 4 GiB or 8 GiB laptop, a 4-6 GB GPU, an 8 GB Mac).
* ``medium`` 7-20 GiB: 7-14B models (an 8-16 GB GPU, 16-32 GiB of RAM, a 16-24 GB Mac).
  7 GiB, not 8, so that an 8 GB card (about 7.5 GiB usable) runs 8B models on the GPU.
* ``high``   >= 20 GiB: 20-32B models (a 24 GB GPU gives 23.5 GiB, a 32 GB Mac 21.3 GiB, both
  enough for gpt-oss:20b or a 27B model at 4-bit).

Memory a model needs (`CatalogModel.memory_bytes`), at Ollama's default 4096-token context:
download size x 1.15 (KV cache and compute buffers, which grow with the model) + 0.5 GiB (runtime,
CUDA or Metal context). gpt-oss uses x 1.05: most of its layers use a 128-token sliding window,
so its KV cache is a fraction of a dense model's. Recent Ollama raises the default context to 32k
on GPUs with 24 GiB or more; the 20 % comfort margin is meant for that (a note says so).

Ranking (`recommend`): a model fits when its memory need is at most the usable memory and it is
installed or its download leaves 1 GiB free on the disk where Ollama keeps models. It fits
comfortably when it needs at most 80 % of the usable memory and, on a CPU-only machine, has at most
9B active parameters (a larger dense model answers at a few words a second). Score = need / usable,
+1 if comfortable, +0.25 if installed: the largest comfortable model wins, an installed one gets a
bonus worth a quarter of the machine. Without a `use`, the list first takes the best model for
each use not yet covered (general, coding, reasoning, vision, fast), then fills by score.

Must not know: psutil, subprocesses, files, the network, Ollama's HTTP API, wire types.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

GiB: Final = 1024**3
GB: Final = 1000**3
MB: Final = 1000**2

Tier = Literal["low", "medium", "high"]
GpuKind = Literal["nvidia", "apple_unified"]
MemorySource = Literal["nvidia", "apple_unified", "system_ram"]

USES: Final[tuple[str, ...]] = ("general", "coding", "reasoning", "vision", "fast")

MEDIUM_TIER_MIN_BYTES: Final = 7 * GiB
HIGH_TIER_MIN_BYTES: Final = 20 * GiB

NVIDIA_RESERVE_BYTES: Final = GiB // 2  # per GPU: CUDA context, the desktop
MIN_USEFUL_GPU_BYTES: Final = 3 * GiB  # enough for a 3B model; smaller cards are ignored
OS_RESERVE_MIN_BYTES: Final = 2 * GiB
OS_RESERVE_FRACTION: Final = 0.25
APPLE_SMALL_MAX_BYTES: Final = 36 * GiB  # up to this much RAM the GPU may use 2/3, above it 3/4

MEMORY_FACTOR: Final = 1.15
RUNTIME_OVERHEAD_BYTES: Final = GiB // 2
DEFAULT_CONTEXT_TOKENS: Final = 4096
COMFORT_FRACTION: Final = 0.8
CPU_COMFORT_ACTIVE_PARAMS_B: Final = 9.0
INSTALLED_BONUS: Final = 0.25
COMFORT_BONUS: Final = 1.0
DISK_HEADROOM_BYTES: Final = GiB
MAX_CLOUD_SUGGESTIONS: Final = 3
OLLAMA_LARGE_CONTEXT_VRAM_BYTES: Final = 23 * GiB  # "24 GiB" in Ollama's docs; 24 GB cards report a bit less


# --- what the probe measures ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuInfo:
    """One GPU. For `apple_unified`, `memory_total_bytes` is the share of RAM the GPU may use."""

    name: str
    memory_total_bytes: int
    memory_free_bytes: int | None
    kind: GpuKind


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareInfo:
    """What `sidecar.infra.hardware.probe` measured. `None` = could not be measured."""

    total_ram_bytes: int
    available_ram_bytes: int
    cpu_cores_physical: int | None
    cpu_cores_logical: int
    cpu_arch: str  # "x86_64", "arm64", or what the OS reports
    os: str  # "linux", "macos", "windows", or what the OS reports
    free_disk_bytes: int | None  # where Ollama keeps models
    gpus: tuple[GpuInfo, ...] = ()
    unified_memory: bool = False
    models_dir: str = ""


def apple_gpu_working_set(total_ram_bytes: int) -> int:
    """The RAM an Apple Silicon GPU may wire: about 2/3 up to 36 GiB of RAM, about 3/4 above.

    This mirrors Metal's `recommendedMaxWorkingSetSize` (16 GiB -> 10.7, 32 -> 21.3, 64 -> 48),
    which is also the limit Ollama and llama.cpp plan GPU offload against on a Mac.
    """
    if total_ram_bytes <= APPLE_SMALL_MAX_BYTES:
        return total_ram_bytes * 2 // 3
    return total_ram_bytes * 3 // 4


# --- the budget and the tier ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """The memory a model can run in at full speed, and where it is."""

    usable_bytes: int
    source: MemorySource
    description: str  # how a sentence names it: "NVIDIA GPU memory", ...


def ram_budget(total_ram_bytes: int) -> int:
    """System RAM left for a model on a CPU-only machine: RAM minus max(2 GiB, 25 %)."""
    reserve = max(OS_RESERVE_MIN_BYTES, int(total_ram_bytes * OS_RESERVE_FRACTION))
    return max(0, total_ram_bytes - reserve)


def memory_budget(hw: HardwareInfo) -> MemoryBudget:
    """Usable memory: NVIDIA VRAM, else Apple unified memory, else RAM with room for the OS."""
    nvidia = [g for g in hw.gpus if g.kind == "nvidia"]
    vram = sum(max(0, g.memory_total_bytes - NVIDIA_RESERVE_BYTES) for g in nvidia)
    if nvidia and vram >= MIN_USEFUL_GPU_BYTES:
        where = "NVIDIA GPU memory" if len(nvidia) == 1 else f"memory of {len(nvidia)} NVIDIA GPUs"
        return MemoryBudget(vram, "nvidia", where)
    apple = [g for g in hw.gpus if g.kind == "apple_unified"]
    if apple:
        return MemoryBudget(apple[0].memory_total_bytes, "apple_unified", "unified memory the GPU may use")
    if hw.unified_memory:
        return MemoryBudget(
            apple_gpu_working_set(hw.total_ram_bytes), "apple_unified", "unified memory the GPU may use"
        )
    return MemoryBudget(ram_budget(hw.total_ram_bytes), "system_ram", "system RAM, after room for the OS")


def tier_for(hw: HardwareInfo) -> Tier:
    """``low`` below 7 GiB usable, ``medium`` 7-20 GiB, ``high`` from 20 GiB (module docstring)."""
    usable = memory_budget(hw).usable_bytes
    if usable >= HIGH_TIER_MIN_BYTES:
        return "high"
    if usable >= MEDIUM_TIER_MIN_BYTES:
        return "medium"
    return "low"


# --- the catalog ---------------------------------------------------------------------------------

CATALOG_DATE: Final = "2025-08"
"""When the catalog's sizes were taken from ollama.com/library (Ollama shows decimal GB)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogModel:
    """One curated Ollama model. `memory_bytes` is derived, see the module docstring."""

    name: str  # the Ollama tag to pull, e.g. "llama3.2:3b"
    uses: tuple[str, ...]
    parameter_size: str  # as Ollama's /api/tags `details.parameter_size` shows it
    active_parameters_b: float  # billions used per token (= total for dense models)
    quantization: str
    download_bytes: int
    context_length: int  # the model's maximum, in tokens
    description: str
    aliases: tuple[str, ...] = ()  # other tags of the same blob, e.g. "llama3.2:latest"
    memory_factor: float = MEMORY_FACTOR
    memory_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        need = int(self.download_bytes * self.memory_factor) + RUNTIME_OVERHEAD_BYTES
        object.__setattr__(self, "memory_bytes", need)

    @property
    def model(self) -> str:
        return f"ollama:{self.name}"


def _m(
    name: str,
    uses: tuple[str, ...],
    params: str,
    quant: str,
    download_gb: float,
    context: int,
    description: str,
    *,
    active_b: float | None = None,
    aliases: tuple[str, ...] = (),
    memory_factor: float = MEMORY_FACTOR,
) -> CatalogModel:
    return CatalogModel(
        name=name,
        uses=uses,
        parameter_size=params,
        active_parameters_b=active_b if active_b is not None else float(params.rstrip("B")),
        quantization=quant,
        download_bytes=round(download_gb * GB),
        context_length=context,
        description=description,
        aliases=aliases,
        memory_factor=memory_factor,
    )


_K = 1024
CATALOG: Final[tuple[CatalogModel, ...]] = (
    _m("gemma3:1b", ("fast", "general"), "1B", "Q4_K_M", 0.815, 32 * _K,
       "Google's smallest Gemma 3: quick replies, summaries and rewording on any machine."),
    _m("qwen2.5-coder:1.5b", ("coding", "fast"), "1.5B", "Q4_K_M", 0.986, 32 * _K,
       "Small Qwen code model for completions and short code questions."),
    _m("deepseek-r1:1.5b", ("reasoning", "fast"), "1.8B", "Q4_K_M", 1.1, 128 * _K,
       "Smallest DeepSeek-R1 distill: thinks step by step; good at maths, thin on general knowledge."),
    _m("llama3.2:3b", ("general", "fast"), "3.2B", "Q4_K_M", 2.019393189, 128 * _K,
       "Meta's small Llama: a fast all-rounder for chat, summaries and tool calls.",
       aliases=("llama3.2:latest",)),
    _m("phi4-mini:3.8b", ("general", "reasoning", "fast"), "3.8B", "Q4_K_M", 2.5, 128 * _K,
       "Microsoft's Phi-4-mini: strong maths and reasoning for its size, function calling.",
       aliases=("phi4-mini:latest",)),
    _m("gemma3:4b", ("vision", "general", "fast"), "4.3B", "Q4_K_M", 3.3, 128 * _K,
       "Gemma 3 4B: reads images as well as text, 140 languages, fast.",
       aliases=("gemma3:latest",)),
    _m("qwen2.5-coder:7b", ("coding",), "7.6B", "Q4_K_M", 4.7, 32 * _K,
       "Qwen2.5-Coder 7B: code generation, repair and explanation in many languages.",
       aliases=("qwen2.5-coder:latest",)),
    _m("llama3.1:8b", ("general",), "8.0B", "Q4_K_M", 4.9, 128 * _K,
       "Llama 3.1 8B: the dependable general model, long context and tool calling.",
       aliases=("llama3.1:latest",)),
    _m("deepseek-r1:8b", ("reasoning",), "8.2B", "Q4_K_M", 5.2, 128 * _K,
       "DeepSeek-R1-0528 distilled into Qwen3 8B: visible thinking, good at maths and logic.",
       aliases=("deepseek-r1:latest",)),
    _m("gemma3:12b", ("general", "vision"), "12.2B", "Q4_K_M", 8.1, 128 * _K,
       "Gemma 3 12B: a strong writer that also reads images and documents."),
    _m("qwen2.5:14b", ("general",), "14.8B", "Q4_K_M", 9.0, 32 * _K,
       "Qwen2.5 14B: broad knowledge, structured output (JSON), many languages."),
    _m("qwen2.5-coder:14b", ("coding",), "14.8B", "Q4_K_M", 9.0, 32 * _K,
       "Qwen2.5-Coder 14B: noticeably better code than the 7B, still quick on a 12-16 GB GPU."),
    _m("deepseek-r1:14b", ("reasoning",), "14.8B", "Q4_K_M", 9.0, 128 * _K,
       "DeepSeek-R1 distilled into Qwen2.5 14B: careful step-by-step reasoning."),
    _m("gpt-oss:20b", ("reasoning", "general", "coding"), "20.9B", "MXFP4", 14.0, 128 * _K,
       "OpenAI's open-weight MoE (3.6B active): o3-mini-class reasoning, tools, adjustable effort.",
       active_b=3.6, aliases=("gpt-oss:latest",), memory_factor=1.05),
    _m("gemma3:27b", ("general", "vision"), "27.4B", "Q4_K_M", 17.0, 128 * _K,
       "Gemma 3 27B: the largest Gemma 3, top-quality writing and image understanding."),
    _m("qwen3:30b", ("general", "reasoning"), "30.5B", "Q4_K_M", 19.0, 256 * _K,
       "Qwen3 30B-A3B MoE (3.3B active): large-model quality at small-model speed.",
       active_b=3.3),
    _m("qwen3-coder:30b", ("coding",), "30.5B", "Q4_K_M", 19.0, 256 * _K,
       "Qwen3-Coder 30B-A3B MoE: agentic coding and repository-scale context.",
       active_b=3.3, aliases=("qwen3-coder:latest",)),
    _m("qwen2.5-coder:32b", ("coding",), "32.8B", "Q4_K_M", 20.0, 32 * _K,
       "Qwen2.5-Coder 32B: the strongest dense open code model of its generation."),
    _m("deepseek-r1:32b", ("reasoning",), "32.8B", "Q4_K_M", 20.0, 128 * _K,
       "DeepSeek-R1 distilled into Qwen2.5 32B: the best R1 distill that fits one 24 GB GPU."),
    _m("llama3.3:70b", ("general",), "70.6B", "Q4_K_M", 43.0, 128 * _K,
       "Llama 3.3 70B: near-frontier general quality for 48 GB+ of GPU or unified memory.",
       aliases=("llama3.3:latest",)),
)  # fmt: skip


def normalize_ollama_name(name: str) -> str:
    """`ollama:Llama3.2` -> `llama3.2:latest`: no provider prefix, lower case, explicit tag."""
    name = name.strip().lower().removeprefix("ollama:")
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _names_of(m: CatalogModel) -> frozenset[str]:
    return frozenset(normalize_ollama_name(n) for n in (m.name, *m.aliases))


# --- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecommendedModel:
    """One catalog model judged against this machine (in `recommendations` or in `too_large`)."""

    model: str  # "ollama:llama3.2:3b"
    uses: tuple[str, ...]
    description: str
    parameter_size: str
    quantization: str
    context_length: int
    memory_bytes: int
    why: str  # why it fits, or why it does not, with the numbers
    installed: bool
    download_bytes: int  # 0 when installed
    cost_to_get: str  # "2.0 GB download" or "already installed"
    fits: bool
    fits_comfortably: bool
    runs_on: Literal["gpu", "cpu"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recommendation:
    """The answer of `recommend`; with the `HardwareInfo`, what `recommend_models` returns."""

    tier: Tier
    usable_memory_bytes: int
    memory_source: MemorySource
    recommendations: tuple[RecommendedModel, ...]  # best first
    too_large: tuple[RecommendedModel, ...]  # smallest first: what more memory or disk would buy
    cloud_suggestions: tuple[str, ...]  # only when nothing local fits
    note: str  # the tier in a sentence, plus anything the user should know
    catalog_date: str = CATALOG_DATE


# --- ranking -------------------------------------------------------------------------------------


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def _gb(n: int) -> str:
    return f"{n / MB:.0f} MB" if n < GB else f"{n / GB:.1f} GB"


@dataclass(frozen=True, slots=True)
class _Judged:
    item: RecommendedModel
    score: float
    fits_memory: bool


def _judge(m: CatalogModel, budget: MemoryBudget, free_disk: int | None, installed: bool) -> _Judged:
    usable = budget.usable_bytes
    need = m.memory_bytes
    fits_memory = need <= usable
    fits_disk = installed or free_disk is None or m.download_bytes + DISK_HEADROOM_BYTES <= free_disk
    on_cpu = budget.source == "system_ram"
    roomy = need <= usable * COMFORT_FRACTION
    quick = not on_cpu or m.active_parameters_b <= CPU_COMFORT_ACTIVE_PARAMS_B
    fits = fits_memory and fits_disk
    comfortable = fits and roomy and quick
    have = f"you have {_gib(usable)} usable ({budget.description})"

    if not fits_memory:
        why = f"Needs ~{_gib(need)}; {have}."
        if budget.source == "nvidia":
            why += " It would run mostly on the CPU, several times slower."
    elif not fits_disk:
        why = (
            f"Fits in memory (~{_gib(need)} of {_gib(usable)}), but its {_gb(m.download_bytes)} "
            f"download does not fit the {_gb(free_disk or 0)} free where Ollama keeps models."
        )
    elif comfortable:
        where = "on the CPU" if on_cpu else "fully on the GPU"
        why = f"Needs ~{_gib(need)}; {have}, so it runs {where} with room to spare."
    elif not roomy:
        why = (
            f"Needs ~{_gib(need)}; {have}: it fits, but tightly, so keep the context short "
            "and close other memory-hungry apps."
        )
    else:
        why = (
            f"Needs ~{_gib(need)}; {have}: it fits, but a {m.parameter_size} dense model on the CPU "
            "answers slowly (a few words a second)."
        )
    if installed:
        why += " Already installed."

    score = need / usable if usable > 0 else 0.0
    if comfortable:
        score += COMFORT_BONUS
    if installed:
        score += INSTALLED_BONUS
    item = RecommendedModel(
        model=m.model,
        uses=m.uses,
        description=m.description,
        parameter_size=m.parameter_size,
        quantization=m.quantization,
        context_length=m.context_length,
        memory_bytes=need,
        why=why,
        installed=installed,
        download_bytes=0 if installed else m.download_bytes,
        cost_to_get="already installed" if installed else f"{_gb(m.download_bytes)} download",
        fits=fits,
        fits_comfortably=comfortable,
        runs_on="cpu" if on_cpu else "gpu",
    )
    return _Judged(item, score, fits_memory)


def _pick(ranked: list[_Judged], use: str | None, limit: int) -> list[_Judged]:
    """Best first; without a `use`, the best model of each use no pick covers yet is kept first."""
    picked: list[_Judged] = []
    if use is None:
        for u in USES:
            if len(picked) == limit or any(u in p.item.uses for p in picked):
                continue
            best = next((j for j in ranked if u in j.item.uses and j not in picked), None)
            if best is not None:
                picked.append(best)
    picked += [j for j in ranked if j not in picked][: limit - len(picked)]
    return sorted(picked, key=lambda j: (-j.score, j.item.memory_bytes))


def recommend(
    hw: HardwareInfo,
    installed: Iterable[str],
    cloud_models: Sequence[str],
    *,
    use: str | None = None,
    limit: int = 6,
) -> Recommendation:
    """Rank the catalog's models for `hw`.

    `installed`: names as Ollama lists them (`llama3.2:latest`; an `ollama:` prefix is fine);
    installed models outside the catalog are not ranked (their needs are unknown here).
    `cloud_models`: configured providers' models (`openai:gpt-4o-mini`, ...), in the order to
    suggest them; the first three are suggested when nothing local fits.
    Raises ValueError for an unknown `use` or a `limit` below 1.
    """
    if use is not None and use not in USES:
        raise ValueError(f"unknown use {use!r}; expected one of: {', '.join(USES)}")
    if limit < 1:
        raise ValueError("limit must be at least 1")

    budget = memory_budget(hw)
    tier = tier_for(hw)
    have = {normalize_ollama_name(n) for n in installed}
    candidates = [m for m in CATALOG if use is None or use in m.uses]
    judged = [_judge(m, budget, hw.free_disk_bytes, bool(_names_of(m) & have)) for m in candidates]
    ranked = sorted((j for j in judged if j.item.fits), key=lambda j: (-j.score, j.item.memory_bytes))
    picked = _pick(ranked, use, limit)
    unfit = sorted((j for j in judged if not j.item.fits), key=lambda j: j.item.memory_bytes)
    too_large = tuple(j.item for j in unfit[:limit])

    notes = [f"{tier.capitalize()} tier: {_gib(budget.usable_bytes)} usable ({budget.description})."]
    cloud: tuple[str, ...] = ()
    what = f"{use} model" if use else "model"
    if not picked:
        notes.append(_nothing_fits(what, judged, budget, hw.free_disk_bytes))
        cloud = tuple(dict.fromkeys(c for c in cloud_models if c))[:MAX_CLOUD_SUGGESTIONS]
        if cloud:
            notes.append(f"Try a cloud model from your configured providers instead: {', '.join(cloud)}.")
        else:
            notes.append("No cloud provider is configured either: add an API key to use a cloud model.")
    else:
        disk_only = [j for j in unfit if j.fits_memory]
        if disk_only and hw.free_disk_bytes is not None:
            notes.append(
                f"{len(disk_only)} more {what}{'s' if len(disk_only) > 1 else ''} would fit in memory "
                f"but not on disk ({_gb(hw.free_disk_bytes)} free where Ollama keeps models)."
            )
        top = picked[0].item
        if budget.source != "nvidia" and not top.installed and top.memory_bytes > hw.available_ram_bytes:
            notes.append(
                f"Only {_gib(hw.available_ram_bytes)} of RAM is free right now; close some apps "
                f"before loading {top.model}."
            )
        gpu_total = sum(g.memory_total_bytes for g in hw.gpus)
        if budget.source == "nvidia" and gpu_total >= OLLAMA_LARGE_CONTEXT_VRAM_BYTES:
            notes.append(
                "Recent Ollama versions give models a 32k context by default on a GPU this size; if a "
                "large model spills to the CPU (see `ollama ps`), lower OLLAMA_CONTEXT_LENGTH."
            )

    return Recommendation(
        tier=tier,
        usable_memory_bytes=budget.usable_bytes,
        memory_source=budget.source,
        recommendations=tuple(j.item for j in picked),
        too_large=too_large,
        cloud_suggestions=cloud,
        note=" ".join(notes),
    )


def _nothing_fits(what: str, judged: list[_Judged], budget: MemoryBudget, free_disk: int | None) -> str:
    in_memory = [j for j in judged if j.fits_memory]
    if not in_memory:
        smallest = min((j.item.memory_bytes for j in judged), default=0)
        return (
            f"No local {what} in the catalog fits this machine: the smallest needs ~{_gib(smallest)} "
            f"and you have {_gib(budget.usable_bytes)} usable."
        )
    smallest_download = min(j.item.download_bytes for j in in_memory)
    return (
        f"No local {what} can be installed: the smallest that fits in memory is a "
        f"{_gb(smallest_download)} download and only {_gb(free_disk or 0)} is free where Ollama "
        "keeps models (Ollama needs the space, plus 1 GiB to spare)."
    )
