"""Every benchmark runs (quick mode) and prints its figures. Not timed tests: figures are recorded
from full runs in BENCHMARKS.md."""
import re
import subprocess
import sys

import hostenv
from pytest_distorch import comfyui_gguf_or_skip


def run_quick(script: str, timeout: int = 600) -> str:
    """Run ``bench/<script> --quick``; its stdout, or a failure showing what it printed."""
    result = subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "bench" / script), "--quick"],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_bench_loaders_quick_prints_ratios():
    out = run_quick("bench_loaders.py")
    rows = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^(load|sampling step)\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", out, re.M)}
    assert set(rows) == {"load", "sampling step"}, out
    assert all(ratio > 0 for ratio in rows.values())


def test_bench_memory_route_quick_prints_ratios():
    out = run_quick("bench_memory_route.py")
    ratios = dict(re.findall(r"^ratio (p50|p99) ([\d.]+)$", out, re.M))
    assert set(ratios) == {"p50", "p99"} and all(float(v) > 0 for v in ratios.values()), out
    assert re.search(r"^/internal/memory\s+[\d.]+\s+[\d.]+", out, re.M), out


def test_bench_split_quick_prints_the_cpu_ratio():
    out = run_quick("bench_split.py")
    match = re.search(r"^sampling step\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert match, out
    assert float(match.group(3)) > 0
    offloaded = re.search(r"# CPU: compute cpu, donor cpu, ([\d.]+) MiB", out)
    assert offloaded and float(offloaded.group(1)) > 0, out


def test_bench_modes_quick_prints_ratios():
    out = run_quick("bench_modes.py", timeout=900)
    rows = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^([a-z][a-z0-9 ,/]+?)\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", out, re.M)}
    assert {"cold switch / core checkpoint", "cached switch / cold switch", "detect, fp32 / fp16 file",
            "load, fp32 / fp16 file"} <= set(rows), out
    assert all(ratio >= 0 for ratio in rows.values()), out
    assert rows["cold switch / core checkpoint"] > 0 and rows["load, fp32 / fp16 file"] > 0, out
    assert rows["cached switch / cold switch"] < 0.5, "a cached switch is not faster than a cold one"
    assert re.search(r"^reload p50 [\d.]+ ms, p95 [\d.]+ ms", out, re.M), out


def test_bench_cache_pass_quick_prints_ratios():
    out = run_quick("bench_cache_pass.py")
    rows = dict(re.findall(r"^(core|pack, between passes|pack, after an unload)\s+[\d.]+\s+([\d.]+)$", out, re.M))
    assert set(rows) == {"core", "pack, between passes", "pack, after an unload"}, out
    assert float(rows["core"]) == 1.0 and all(float(v) > 0 for v in rows.values())


def test_bench_lora_ram_quick_prints_the_peak_ratio():
    out = run_quick("bench_lora_ram.py")
    rows = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^(RSS before the load|peak RSS, load \+ forward|peak RSS, whole process)"
                                 r"\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", out, re.M)}
    assert set(rows) == {"RSS before the load", "peak RSS, load + forward", "peak RSS, whole process"}, out
    assert all(ratio > 0 for ratio in rows.values()), out
    assert re.search(r"^# per-forward LoRA patches: split [1-9]\d*, lowvram \d+; outputs finite: True$", out, re.M), out


def test_bench_gguf_quick_prints_the_byte_and_step_ratios():
    comfyui_gguf_or_skip()
    out = run_quick("bench_gguf.py")
    ratios = {(m.group(1), m.group(2)): float(m.group(3)) for m in re.finditer(
        r"^bytes ratio (Q8_0|Q4_0) / fp16, (same allocation|same layers) ([\d.]+)$", out, re.M)}
    assert len(ratios) == 4 and all(0 < ratio < 1 for ratio in ratios.values()), out
    # Offloaded GGUF layers cross quantized: the same layers move about 34/64 (Q8_0) and 18/64 (Q4_0)
    # of their fp16 bytes.
    assert ratios[("Q4_0", "same layers")] < ratios[("Q8_0", "same layers")] < 0.75, out
    assert re.search(r"^#   fp16: counted == plan;", out, re.M), out
    steps = dict(re.findall(r"^(Q8_0|Q4_0)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s", out, re.M))
    assert set(steps) == {"Q8_0", "Q4_0"} and all(float(v) > 0 for v in steps.values()), out
    assert "no bytes cross a link here" in out, out


def test_bench_queue_quick_prints_affinity_figures():
    out = run_quick("bench_queue.py")
    rows = {m.group(1).strip(): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^([a-z][a-z ()]+?)\s+([\d.]+)\s+([\d.]+)", out, re.M)}
    assert {"wall time (s)", "mode loads from disk", "mode switches", "worst delay (positions)"} <= set(rows), out
    off, on = rows["mode loads from disk"]
    assert on < off, out  # alternating modes: affinity reads the disk less


def test_bench_vae_tiling_quick_shows_tiled_decoding_uses_less_ram():
    out = run_quick("bench_vae_tiling.py")
    match = re.search(r"^peak RAM growth \(MiB\)\s+(\d+)\s+(\d+)\s+([\d.]+)$", out, re.M)
    assert match and int(match.group(2)) < int(match.group(1)), out


# bench_routing.py's quick mode runs in tests/host/test_routing.py, on that module's servers.
