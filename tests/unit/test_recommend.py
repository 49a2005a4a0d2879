"""The tier rule, the catalog and the ranking, with probe results of made-up machines; nvidia-smi parsing."""

from __future__ import annotations

import re
import subprocess
import sys

import msgspec
import pytest

from sidecar.core.recommend import (
    CATALOG,
    CATALOG_DATE,
    GB,
    RUNTIME_OVERHEAD_BYTES,
    USES,
    CatalogModel,
    GiB,
    GpuInfo,
    HardwareInfo,
    Recommendation,
    apple_gpu_working_set,
    memory_budget,
    normalize_ollama_name,
    ram_budget,
    recommend,
    tier_for,
)
from sidecar.infra.hardware import parse_nvidia_smi

MiB = 1024 * 1024
CLOUD = [
    "openai:gpt-4o-mini",
    "anthropic:claude-haiku-4-5",
    "openai:gpt-4o-mini",
    "gemini:gemini-2.5-flash",
    "x",
]


def machine(
    ram_gib: float,
    *,
    gpus: tuple[GpuInfo, ...] = (),
    unified: bool = False,
    disk: int | None = 500 * GB,
    available: int | None = None,
) -> HardwareInfo:
    total = int(ram_gib * GiB)
    return HardwareInfo(
        total_ram_bytes=total,
        available_ram_bytes=total // 2 if available is None else available,
        cpu_cores_physical=4,
        cpu_cores_logical=8,
        cpu_arch="arm64" if unified else "x86_64",
        os="macos" if unified else "linux",
        free_disk_bytes=disk,
        gpus=gpus,
        unified_memory=unified,
    )


def nvidia(total_mib: int, name: str = "NVIDIA GeForce RTX 4090") -> GpuInfo:
    return GpuInfo(name=name, memory_total_bytes=total_mib * MiB, memory_free_bytes=None, kind="nvidia")


def apple(ram_gib: int) -> HardwareInfo:
    gpu = GpuInfo(
        name="Apple M2 Max",
        memory_total_bytes=apple_gpu_working_set(ram_gib * GiB),
        memory_free_bytes=None,
        kind="apple_unified",
    )
    return machine(ram_gib, gpus=(gpu,), unified=True)


SMALL = machine(4)
MEDIUM = machine(16)
LARGE = machine(64, gpus=(nvidia(24564),))  # an RTX 4090 as nvidia-smi reports it
MAC32 = apple(32)
BY_NAME = {m.model: m for m in CATALOG}


def models(rec: Recommendation) -> list[str]:
    return [r.model for r in rec.recommendations]


def check_invariants(hw: HardwareInfo, rec: Recommendation, limit: int = 6) -> None:
    usable = memory_budget(hw).usable_bytes
    assert len(rec.recommendations) <= limit
    assert len(set(models(rec))) == len(rec.recommendations)
    for r in rec.recommendations:
        assert r.model.startswith("ollama:")
        assert r.fits
        assert r.memory_bytes <= usable
        assert f"{usable / GiB:.1f} GiB usable" in r.why
        assert f"~{r.memory_bytes / GiB:.1f} GiB" in r.why
        if r.installed:
            assert (r.download_bytes, r.cost_to_get) == (0, "already installed")
        else:
            assert r.download_bytes == BY_NAME[r.model].download_bytes > 0
            assert r.cost_to_get.endswith(" download")
            assert hw.free_disk_bytes is None or r.download_bytes + GiB <= hw.free_disk_bytes
        if r.fits_comfortably:
            assert r.memory_bytes <= 0.8 * usable
    comfortable = [r.fits_comfortably for r in rec.recommendations]
    assert comfortable == sorted(comfortable, reverse=True) or any(r.installed for r in rec.recommendations)
    for r in rec.too_large:
        assert not r.fits and not r.fits_comfortably
    assert rec.note.startswith(f"{rec.tier.capitalize()} tier: {usable / GiB:.1f} GiB usable")
    assert rec.catalog_date == CATALOG_DATE


# --- the tier rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hw", "tier", "source", "usable_gib"),
    [
        (machine(4), "low", "system_ram", 2.0),
        (machine(8), "low", "system_ram", 6.0),
        (machine(16), "medium", "system_ram", 12.0),
        (machine(32), "high", "system_ram", 24.0),
        (machine(64, gpus=(nvidia(24564),)), "high", "nvidia", 23.49),
        (machine(32, gpus=(nvidia(8192, "RTX 4060"),)), "medium", "nvidia", 7.5),
        (machine(16, gpus=(nvidia(6144, "RTX 3060 Laptop"),)), "low", "nvidia", 5.5),
        (machine(128, gpus=(nvidia(24564), nvidia(24564))), "high", "nvidia", 46.98),
        (machine(16, gpus=(nvidia(2048, "MX450"),)), "medium", "system_ram", 12.0),  # too small to count
        (apple(8), "low", "apple_unified", 5.33),
        (apple(16), "medium", "apple_unified", 10.67),
        (apple(32), "high", "apple_unified", 21.33),
        (apple(64), "high", "apple_unified", 48.0),
    ],
)
def test_tier_rule(hw: HardwareInfo, tier: str, source: str, usable_gib: float) -> None:
    budget = memory_budget(hw)
    assert tier_for(hw) == tier
    assert budget.source == source
    assert budget.usable_bytes / GiB == pytest.approx(usable_gib, abs=0.01)


def test_tier_thresholds_are_7_and_20_gib_of_usable_memory() -> None:
    def with_vram(usable: int) -> HardwareInfo:
        total = usable + GiB // 2
        return machine(
            8, gpus=(GpuInfo(name="g", memory_total_bytes=total, memory_free_bytes=0, kind="nvidia"),)
        )

    assert tier_for(with_vram(7 * GiB - 1)) == "low"
    assert tier_for(with_vram(7 * GiB)) == "medium"
    assert tier_for(with_vram(20 * GiB - 1)) == "medium"
    assert tier_for(with_vram(20 * GiB)) == "high"


def test_apple_working_set_is_two_thirds_up_to_36_gib_then_three_quarters() -> None:
    assert apple_gpu_working_set(16 * GiB) == 16 * GiB * 2 // 3
    assert apple_gpu_working_set(36 * GiB) == 24 * GiB
    assert apple_gpu_working_set(48 * GiB) == 36 * GiB
    assert apple_gpu_working_set(192 * GiB) == 144 * GiB


def test_unified_memory_without_a_gpu_entry_still_uses_the_working_set() -> None:
    hw = machine(32, unified=True)
    assert memory_budget(hw).usable_bytes == apple_gpu_working_set(32 * GiB)
    assert memory_budget(hw).source == "apple_unified"


def test_ram_budget_leaves_the_os_two_gib_or_a_quarter() -> None:
    assert ram_budget(2 * GiB) == 0
    assert ram_budget(4 * GiB) == 2 * GiB
    assert ram_budget(16 * GiB) == 12 * GiB
    assert ram_budget(64 * GiB) == 48 * GiB


# --- the catalog ---------------------------------------------------------------------------------


def test_catalog_is_dated_and_covers_sizes_and_uses() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", CATALOG_DATE)
    assert len(CATALOG) >= 8
    for use in USES:
        assert sum(use in m.uses for m in CATALOG) >= 3, use
    needs = sorted(m.memory_bytes for m in CATALOG)
    assert needs[0] < 2 * GiB and needs[-1] > 40 * GiB
    assert any(7 * GiB <= n < 20 * GiB for n in needs)


def test_catalog_entries_are_complete_and_names_unique() -> None:
    all_names = [normalize_ollama_name(n) for m in CATALOG for n in (m.name, *m.aliases)]
    assert len(all_names) == len(set(all_names))
    for m in CATALOG:
        assert ":" in m.name and m.model == f"ollama:{m.name}"
        assert m.uses and set(m.uses) <= set(USES)
        assert re.fullmatch(r"\d+(\.\d+)?B", m.parameter_size)
        assert 0 < m.active_parameters_b <= float(m.parameter_size[:-1])
        assert m.quantization and m.description and m.context_length >= 4096
        assert 500 * 1000**2 < m.download_bytes < 100 * GB


def test_memory_need_is_download_times_factor_plus_half_a_gib() -> None:
    for m in CATALOG:
        assert m.memory_bytes == int(m.download_bytes * m.memory_factor) + RUNTIME_OVERHEAD_BYTES
    llama = BY_NAME["ollama:llama3.1:8b"]
    assert llama.memory_factor == 1.15
    assert llama.memory_bytes / GiB == pytest.approx(5.75, abs=0.01)
    assert isinstance(llama, CatalogModel)


def test_names_are_normalized_like_ollama_lists_them() -> None:
    assert normalize_ollama_name("ollama:Llama3.2") == "llama3.2:latest"
    assert normalize_ollama_name("phi4-mini") == "phi4-mini:latest"
    assert normalize_ollama_name("qwen2.5-coder:7b") == "qwen2.5-coder:7b"
    assert normalize_ollama_name("hf.co/org/model") == "hf.co/org/model:latest"
    assert normalize_ollama_name("localhost:5000/me/model") == "localhost:5000/me/model:latest"


# --- ranking on made-up machines -----------------------------------------------------------------


def test_small_machine_gets_only_the_smallest_models() -> None:
    rec = recommend(SMALL, set(), CLOUD)
    check_invariants(SMALL, rec)
    assert rec.tier == "low"
    assert rec.recommendations and rec.cloud_suggestions == ()
    assert all(r.memory_bytes <= 2 * GiB for r in rec.recommendations)
    assert all(r.runs_on == "cpu" for r in rec.recommendations)
    assert models(rec)[0] in {"ollama:qwen2.5-coder:1.5b", "ollama:gemma3:1b"}
    too_large = {r.model: r for r in rec.too_large}
    assert "ollama:llama3.2:3b" in too_large
    assert too_large["ollama:llama3.2:3b"].why == (
        "Needs ~2.7 GiB; you have 2.0 GiB usable (system RAM, after room for the OS)."
    )


def test_medium_machine_prefers_comfortable_8b_models_and_spreads_uses() -> None:
    rec = recommend(MEDIUM, set(), CLOUD)
    check_invariants(MEDIUM, rec)
    assert rec.tier == "medium"
    assert rec.usable_memory_bytes == 12 * GiB
    assert models(rec)[:2] == ["ollama:deepseek-r1:8b", "ollama:llama3.1:8b"]
    assert all(r.fits_comfortably for r in rec.recommendations)
    covered = {u for r in rec.recommendations for u in r.uses}
    assert covered == set(USES)
    assert rec.recommendations[0].why == (
        "Needs ~6.1 GiB; you have 12.0 GiB usable (system RAM, after room for the OS), "
        "so it runs on the CPU with room to spare."
    )
    assert rec.recommendations[0].cost_to_get == "5.2 GB download"
    # 12-14B dense models fit in 12 GiB but are slow on a CPU: never ahead of the 8B ones
    assert "ollama:qwen2.5:14b" not in models(rec)


def test_large_nvidia_machine_runs_20_to_30b_models_on_the_gpu() -> None:
    rec = recommend(LARGE, set(), CLOUD)
    check_invariants(LARGE, rec)
    assert rec.tier == "high" and rec.memory_source == "nvidia"
    assert models(rec)[:2] == ["ollama:gemma3:27b", "ollama:gpt-oss:20b"]
    assert all(r.runs_on == "gpu" for r in rec.recommendations)
    assert "fully on the GPU" in rec.recommendations[0].why
    assert {u for r in rec.recommendations for u in r.uses} == set(USES)
    seventy = next(r for r in rec.too_large if r.model == "ollama:llama3.3:70b")
    assert "mostly on the CPU" in seventy.why
    assert "OLLAMA_CONTEXT_LENGTH" in rec.note  # Ollama's 32k default context on >= 24 GiB
    # the tight 30-32B models are still reachable with a bigger limit
    wide = recommend(LARGE, set(), CLOUD, limit=20)
    tight = [r for r in wide.recommendations if not r.fits_comfortably]
    assert {"ollama:qwen3:30b", "ollama:qwen2.5-coder:32b"} <= {r.model for r in tight}
    assert all("tightly" in r.why for r in tight)


def test_apple_silicon_32_gib_uses_its_unified_memory() -> None:
    rec = recommend(MAC32, set(), CLOUD, limit=20)
    check_invariants(MAC32, rec, limit=20)
    assert rec.tier == "high" and rec.memory_source == "apple_unified"
    assert rec.usable_memory_bytes == apple_gpu_working_set(32 * GiB)
    assert models(rec)[0] == "ollama:gpt-oss:20b"
    assert "unified memory the GPU may use" in rec.recommendations[0].why
    assert all(r.runs_on == "gpu" for r in rec.recommendations)
    assert "ollama:gemma3:27b" in models(rec)  # 18.7 of 21.3 GiB: fits, tightly
    assert {"ollama:qwen2.5-coder:32b", "ollama:llama3.3:70b"} <= {r.model for r in rec.too_large}
    assert "OLLAMA_CONTEXT_LENGTH" not in rec.note


def test_cpu_only_big_machine_prefers_moe_models() -> None:
    hw = machine(64)
    rec = recommend(hw, set(), CLOUD, limit=20)
    check_invariants(hw, rec, limit=20)
    by = {r.model: r for r in rec.recommendations}
    assert models(rec)[0] in {"ollama:qwen3:30b", "ollama:qwen3-coder:30b"}
    assert by["ollama:gpt-oss:20b"].fits_comfortably
    assert not by["ollama:gemma3:27b"].fits_comfortably
    assert "answers slowly" in by["ollama:gemma3:27b"].why


def test_full_disk_recommends_only_what_is_installed() -> None:
    hw = machine(16, disk=500 * 1000**2)
    rec = recommend(hw, {"llama3.2:latest", "mistral:7b"}, CLOUD)
    check_invariants(hw, rec)
    assert models(rec) == ["ollama:llama3.2:3b"]
    assert rec.recommendations[0].installed and rec.recommendations[0].download_bytes == 0
    assert rec.recommendations[0].why.endswith("Already installed.")
    assert "would fit in memory but not on disk (500 MB free" in rec.note
    assert rec.cloud_suggestions == ()
    assert "does not fit the 500 MB free" in rec.too_large[0].why


def test_full_disk_and_nothing_installed_suggests_cloud_models() -> None:
    rec = recommend(machine(16, disk=0), set(), CLOUD)
    assert rec.recommendations == ()
    assert rec.cloud_suggestions == (
        "openai:gpt-4o-mini",
        "anthropic:claude-haiku-4-5",
        "gemini:gemini-2.5-flash",
    )
    assert "No local model can be installed" in rec.note
    assert "815 MB download" in rec.note
    assert "openai:gpt-4o-mini, anthropic:claude-haiku-4-5, gemini:gemini-2.5-flash" in rec.note


def test_nothing_fits_in_memory_suggests_cloud_models() -> None:
    tiny = machine(2)
    rec = recommend(tiny, set(), CLOUD)
    assert rec.tier == "low" and rec.recommendations == ()
    assert rec.note.startswith("Low tier: 0.0 GiB usable")
    assert "No local model in the catalog fits this machine: the smallest needs ~1.4 GiB" in rec.note
    assert rec.cloud_suggestions[0] == "openai:gpt-4o-mini"
    assert rec.too_large[0].model == "ollama:gemma3:1b"


def test_nothing_fits_and_no_cloud_provider_says_to_add_a_key() -> None:
    rec = recommend(machine(2), set(), [])
    assert rec.recommendations == () and rec.cloud_suggestions == ()
    assert "add an API key" in rec.note


def test_unknown_free_disk_does_not_block_downloads() -> None:
    rec = recommend(machine(16, disk=None), set(), CLOUD)
    assert rec.recommendations and not any(r.installed for r in rec.recommendations)


# --- use filter, installed bonus, limits ---------------------------------------------------------


@pytest.mark.parametrize("use", USES)
def test_use_filter_keeps_only_that_use(use: str) -> None:
    for hw in (SMALL, MEDIUM, LARGE, MAC32):
        rec = recommend(hw, set(), CLOUD, use=use)
        check_invariants(hw, rec)
        assert rec.recommendations or (hw is SMALL and use == "vision")  # gemma3:4b needs 4 GiB
        assert all(use in r.uses for r in rec.recommendations + rec.too_large)


def test_use_filter_with_nothing_fitting_names_the_use() -> None:
    rec = recommend(machine(3), set(), CLOUD, use="vision")
    assert rec.recommendations == ()
    assert "No local vision model in the catalog fits" in rec.note


def test_coding_on_a_medium_gpu() -> None:
    hw = machine(32, gpus=(nvidia(16376, "RTX 4080"),))
    rec = recommend(hw, set(), CLOUD, use="coding")
    assert models(rec)[0] == "ollama:qwen2.5-coder:14b"
    assert "ollama:gpt-oss:20b" in models(rec)  # 14.2 of 15.5 GiB: fits on a 16 GB card, tightly


def test_installed_bonus_lifts_a_model_but_not_over_a_much_larger_one() -> None:
    plain = recommend(MEDIUM, set(), CLOUD, use="general")
    assert models(plain).index("ollama:llama3.1:8b") < models(plain).index("ollama:gemma3:4b")

    bonus = recommend(MEDIUM, {"ollama:gemma3:latest"}, CLOUD, use="general")
    assert models(bonus)[0] == "ollama:gemma3:4b"
    first = bonus.recommendations[0]
    assert first.installed and first.download_bytes == 0 and first.cost_to_get == "already installed"

    tiny = recommend(MEDIUM, {"gemma3:1b"}, CLOUD, use="general")
    assert models(tiny)[0] == "ollama:llama3.1:8b"
    assert models(tiny).index("ollama:gemma3:1b") > 0


def test_installed_models_outside_the_catalog_are_ignored() -> None:
    rec = recommend(MEDIUM, {"mistral:latest", "my-finetune"}, CLOUD)
    assert not any(r.installed for r in rec.recommendations)


def test_limit_and_validation() -> None:
    assert len(recommend(LARGE, set(), CLOUD, limit=2).recommendations) == 2
    assert len(recommend(LARGE, set(), CLOUD, limit=1).recommendations) == 1
    assert len(recommend(LARGE, set(), CLOUD, limit=50).recommendations) > 6
    with pytest.raises(ValueError, match="unknown use 'poetry'"):
        recommend(LARGE, set(), CLOUD, use="poetry")
    with pytest.raises(ValueError, match="limit"):
        recommend(LARGE, set(), CLOUD, limit=0)


def test_available_ram_below_the_top_pick_adds_a_note() -> None:
    hw = machine(16, available=2 * GiB)
    rec = recommend(hw, set(), CLOUD)
    assert (
        f"Only 2.0 GiB of RAM is free right now; close some apps before loading {models(rec)[0]}." in rec.note
    )


def test_results_are_json_friendly_snake_case() -> None:
    rec = recommend(LARGE, {"gpt-oss:20b"}, CLOUD)
    data = msgspec.json.decode(msgspec.json.encode(rec))
    assert data["tier"] == "high" and data["catalog_date"] == CATALOG_DATE
    item = data["recommendations"][0]
    assert set(item) >= {
        "model",
        "uses",
        "why",
        "installed",
        "download_bytes",
        "cost_to_get",
        "fits_comfortably",
    }
    assert all(re.fullmatch(r"[a-z_]+", k) for k in item)
    hw = msgspec.json.decode(msgspec.json.encode(LARGE))
    assert hw["gpus"][0] == {
        "name": "NVIDIA GeForce RTX 4090",
        "memory_total_bytes": 24564 * MiB,
        "memory_free_bytes": None,
        "kind": "nvidia",
    }


def test_policy_and_probe_modules_import_nothing_heavy() -> None:
    code = (
        "import sys, sidecar.core.recommend as r, sidecar.infra.hardware as h; "
        "bad = {'psutil', 'httpx', 'httpx2', 'anyio'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# --- nvidia-smi ----------------------------------------------------------------------------------


def test_parse_nvidia_smi_one_gpu() -> None:
    (gpu,) = parse_nvidia_smi("NVIDIA GeForce RTX 4090, 24564, 23012\n")
    assert gpu == GpuInfo(
        name="NVIDIA GeForce RTX 4090",
        memory_total_bytes=24564 * MiB,
        memory_free_bytes=23012 * MiB,
        kind="nvidia",
    )


def test_parse_nvidia_smi_several_gpus_odd_names_and_missing_figures() -> None:
    out = (
        "NVIDIA A100-SXM4-80GB, 81920, 81050\r\n"
        "Tesla T4, 15360, [N/A]\n"
        "\n"
        "NVIDIA RTX A6000, Rev. 2, 49140, 48000\n"  # a comma in the name
        "NVIDIA GB10, [N/A], [N/A]\n"  # no dedicated memory: not counted
    )
    gpus = parse_nvidia_smi(out)
    assert [g.name for g in gpus] == ["NVIDIA A100-SXM4-80GB", "Tesla T4", "NVIDIA RTX A6000, Rev. 2"]
    assert [g.memory_total_bytes // MiB for g in gpus] == [81920, 15360, 49140]
    assert gpus[1].memory_free_bytes is None


@pytest.mark.parametrize(
    "out",
    [
        "",
        "No devices were found\n",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n",
        "garbage, more garbage, still garbage\n",
    ],
)
def test_parse_nvidia_smi_failures_mean_no_gpu(out: str) -> None:
    assert parse_nvidia_smi(out) == ()


def test_two_nvidia_gpus_add_up() -> None:
    gpus = parse_nvidia_smi("NVIDIA GeForce RTX 3090, 24576, 24000\nNVIDIA GeForce RTX 3090, 24576, 24000\n")
    hw = machine(128, gpus=gpus)
    assert memory_budget(hw).usable_bytes == 2 * (24 * GiB - GiB // 2)
    assert memory_budget(hw).description == "memory of 2 NVIDIA GPUs"
    rec = recommend(hw, set(), CLOUD, use="general", limit=20)
    seventy = next(r for r in rec.recommendations if r.model == "ollama:llama3.3:70b")
    assert not seventy.fits_comfortably  # 46.6 of 47.0 GiB
