"""The benchmark runs (quick mode) and prints its ratios. Not a timed test: figures are recorded
from full runs in BENCHMARKS.md."""
import re
import subprocess
import sys

import hostenv


def test_bench_loaders_quick_prints_ratios():
    result = subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "bench" / "bench_loaders.py"), "--quick"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^(load|sampling step)\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", result.stdout, re.M)}
    assert set(rows) == {"load", "sampling step"}, result.stdout
    assert all(ratio > 0 for ratio in rows.values())


def test_bench_memory_route_quick_prints_ratios():
    result = subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "bench" / "bench_memory_route.py"), "--quick"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ratios = dict(re.findall(r"^ratio (p50|p99) ([\d.]+)$", result.stdout, re.M))
    assert set(ratios) == {"p50", "p99"} and all(float(v) > 0 for v in ratios.values()), result.stdout
    assert re.search(r"^/internal/memory\s+[\d.]+\s+[\d.]+", result.stdout, re.M), result.stdout
