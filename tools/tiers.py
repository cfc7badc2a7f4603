"""Which tests each tier of `make test` runs (tools/run_tiers.py runs the tiers; tests/conftest.py
applies this). Standard library only.

`make test` runs the full suite on today's host (ComfyUI 0.33.0) and, beside it, the
compatibility tier on the floor host (0.3.75): every unit test (the in-process harness patches the
real comfy.model_management and PromptQueue) and the server tests of what touches host internals.
What it leaves out runs on 0.33.0 only, and the run says so in one line.
"""
from __future__ import annotations

TIER_VARIABLE = "DISTORCH_TIER"  # "full" (or unset) / "compat"
TIERS = ("full", "compat")
COMPAT_HOST_FILES = (
    "test_comfy_execution_suite.py",  # ComfyUI's own suite, with the pack vs the bare host
    "test_core_unchanged.py",  # core workflows and the mm functions as the host has them
    "test_memory_flow.py",  # /free, Manager's buttons, keep_loaded: the unload flow's patches
    "test_memory_safety.py",  # OOM and failed loads leave the host's accounting as it was
    "test_split_e2e.py",  # the split patcher built through clone() on the host's ModelPatcher
    "test_split_gpu.py", "test_stream_overlap_gpu.py",  # GPU-only (the GPU kit runs both hosts)
    "test_gguf_distorch.py", "test_gguf_e2e.py",  # beside ComfyUI-GGUF's patcher
    "test_multigpu_compat.py",  # MultiGPU's node names and saved workflows
    "test_queue_priorities.py", "test_routes_queue.py",  # the PromptQueue wrappers
    "test_loaders_e2e.py", "test_place_nodes.py", "test_diffusers_loader.py",  # the host's loaders
    "test_smoke.py", "test_example_workflow.py",
)


# Run on the floor host only, named here so the full tier on 0.33.0 says it leaves them out: the GPU
# check's dry run rehearses both hosts itself, from the 0.3.75 environment (tools/gpu_check.py);
# the benchmarks' quick modes and the soak go where the time is (the compatibility tier ends about
# 12 minutes before the full one on the 2-core VM), and neither depends on the host's version.
FLOOR_ONLY_FILES = ("test_gpu_check_dry_run.py", "test_bench_quick.py", "test_soak.py")

# Run first in the compatibility tier. The soak and the full tier's routing cluster take turns on a
# lock (tests/host/conftest.py ram_heavy); in file order the soak ran at about 12 to 14 minutes,
# just when the full tier reached its routing tests, which then waited for it on the critical path.
COMPAT_RUN_FIRST = ("test_soak.py",)


def tier_order(tier: str, names: list[str]) -> list[int]:
    """The order to run collected tests in (indices into ``names``, their file names): file order,
    except that the compatibility tier starts with COMPAT_RUN_FIRST."""
    first = COMPAT_RUN_FIRST if tier == "compat" else ()
    return sorted(range(len(names)), key=lambda index: 0 if names[index] in first else 1)


# Unit test files that import neither ComfyUI nor torch (the grammar, the planner, the report rules,
# the schemas, the tooling): the host cannot change them, so beside the compatibility tier they run
# there only (about 25 s less on the full tier's run, the longer one). tests/unit/test_tiers.py
# checks that collecting them imports neither.
HOST_INDEPENDENT_UNIT_FILES = (
    "test_allocation.py", "test_allocation_properties.py", "test_assets.py", "test_bootstrap.py",
    "test_devices.py", "test_diffusers_folder.py", "test_gguf_skip.py", "test_memory.py",
    "test_memory_reporter.py", "test_modes_runtime_parts.py", "test_modes_schema_file.py",
    "test_modes_validation.py", "test_packaging.py", "test_placement.py", "test_planner.py",
    "test_readme_files.py", "test_residency.py", "test_retention.py", "test_route_request_models.py",
    "test_scheduler.py", "test_share_explanation.py", "test_sighup.py", "test_split_request.py",
    "test_static.py", "test_tiers.py",
)


def tier_selection(tier: str, paths: list[str], floor_host: bool = True) -> list[bool]:
    """Which collected test files a tier keeps: all of them (less, on another host than the floor,
    the floor-only ones and, for the full tier of `make test`, the host-independent unit tests,
    which the compatibility tier beside it runs; a plain pytest run keeps those), or for the
    compatibility tier the unit tests, the COMPAT_HOST_FILES and the floor-only ones."""
    names = [path.rsplit("/", 1)[-1] for path in paths]
    if tier != "compat":
        beside_compat = tier == "full"  # run_tiers runs the compatibility tier beside it
        return [floor_host or not (name in FLOOR_ONLY_FILES or (
                    beside_compat and "/unit/" in path and name in HOST_INDEPENDENT_UNIT_FILES))
                for path, name in zip(paths, names)]
    return [("/unit/" in path) or name in COMPAT_HOST_FILES or name in FLOOR_ONLY_FILES
            for path, name in zip(paths, names)]


# -- shards: the full tier as several pytest runs side by side (DISTORCH_FULL_SHARDS) ------------
# A shard is a set of whole test files (a module's servers start once), the unit tests one group.
SHARD_VARIABLE = "DISTORCH_SHARD"  # "1/2": the first of two shards; unset: the whole tier
UNIT_GROUP = "unit"
# Seconds per file in the full tier on ComfyUI 0.33.0 (pytest --durations=0, 2-core VM, 2026-12-07;
# a session server's start is counted where it is first used). Only the balance of the shards
# depends on them: a file missing here weighs DEFAULT_FILE_SECONDS.
FILE_SECONDS = {
    "test_bench_quick.py": 176, "test_memory_flow.py": 157, "test_comfy_execution_suite.py": 154,
    "test_memory_safety.py": 133, "test_convert_browser.py": 117, "test_routing.py": 95,
    "test_mode_options.py": 78, "test_memory_panel_browser.py": 78, "test_modes_e2e.py": 74,
    "test_retention_settings_browser.py": 69, "test_soak.py": 60, "test_allocation_preview_browser.py": 48,
    UNIT_GROUP: 47, "test_modes_browser.py": 44, "test_multigpu_compat.py": 31, "test_gguf_distorch.py": 23,
    "test_example_workflows_browser.py": 22, "test_allocation_preview_vue_browser.py": 22,
    "test_walkthrough_browser.py": 18, "test_diffusers_loader.py": 18, "test_memory_telemetry.py": 15,
    "test_queue_priorities.py": 14, "test_place_nodes.py": 14, "test_loaders_e2e.py": 13, "test_bad_input.py": 9,
    "test_split_e2e.py": 8, "test_routes_garbage.py": 4, "test_core_unchanged.py": 4,
}
DEFAULT_FILE_SECONDS = 3


def parse_shard(text: str) -> tuple[int, int] | None:
    """"2/3" -> (2, 3); "" -> None. Raises ValueError naming the form for anything else."""
    if not text:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"{SHARD_VARIABLE}={text!r}: use INDEX/COUNT, e.g. 1/2") from None
    if not 1 <= index <= count:
        raise ValueError(f"{SHARD_VARIABLE}={text!r}: INDEX must be 1 to COUNT")
    return index, count


def shard_group(path: str) -> str:
    return UNIT_GROUP if "/unit/" in path else path.rsplit("/", 1)[-1]


def assign_shards(groups: list[str], count: int) -> dict[str, int]:
    """Group -> shard (1..count): heaviest first onto the lightest shard, ties by name, so every
    shard's run, collecting the same files, computes the same assignment."""
    loads = [0.0] * count
    assignment = {}
    for group in sorted(set(groups), key=lambda g: (-FILE_SECONDS.get(g, DEFAULT_FILE_SECONDS), g)):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        assignment[group] = lightest + 1
        loads[lightest] += FILE_SECONDS.get(group, DEFAULT_FILE_SECONDS)
    return assignment


def shard_selection(paths: list[str], shard: tuple[int, int] | None) -> list[bool]:
    """Which of these (already tier-selected) test paths the shard runs: all without a shard."""
    if shard is None:
        return [True] * len(paths)
    index, count = shard
    assignment = assign_shards([shard_group(path) for path in paths], count)
    return [assignment[shard_group(path)] == index for path in paths]
