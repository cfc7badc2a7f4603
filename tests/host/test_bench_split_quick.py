"""bench_split runs (quick mode) and prints its CPU ratio. Not a timed test: figures are recorded
from full runs in BENCHMARKS.md."""
import re
import subprocess
import sys

import hostenv


def test_bench_split_quick_prints_the_cpu_ratio():
    result = subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "bench" / "bench_split.py"), "--quick"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"^sampling step\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", result.stdout, re.M)
    assert match, result.stdout
    assert float(match.group(3)) > 0
    offloaded = re.search(r"# CPU: compute cpu, donor cpu, ([\d.]+) MiB", result.stdout)
    assert offloaded and float(offloaded.group(1)) > 0, result.stdout
