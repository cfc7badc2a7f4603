"""The modes benchmark runs (quick mode) and prints every ratio. Not a timed test: figures are
recorded from full runs in BENCHMARKS.md."""
import re
import subprocess
import sys

import hostenv


def test_bench_modes_quick_prints_ratios():
    result = subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "bench" / "bench_modes.py"), "--quick"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^([a-z][a-z0-9 ,/]+?)\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", result.stdout, re.M)}
    assert {"cold switch / core checkpoint", "cached switch / cold switch", "detect, fp32 / fp16 file",
            "load, fp32 / fp16 file"} <= set(rows), result.stdout
    assert all(ratio >= 0 for ratio in rows.values()), result.stdout
    assert rows["cold switch / core checkpoint"] > 0 and rows["load, fp32 / fp16 file"] > 0, result.stdout
    assert rows["cached switch / cold switch"] < 0.5, "a cached switch is not faster than a cold one"
    assert re.search(r"^reload p50 [\d.]+ ms, p95 [\d.]+ ms", result.stdout, re.M), result.stdout
