"""Running a GPU probe (tests/host/gpu_*_probe.py) from a test, and keeping its report.

A probe runs in a process of its own: the host is imported with its GPU there, and settings such
as --disable-async-offload are read once per process. When DISTORCH_GPU_REPORT_DIR names a folder
(tools/gpu_check.py sets it), each report is copied there too, so the run's figures come back with
its verdicts.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hostenv

REPORT_DIR_VARIABLE = "DISTORCH_GPU_REPORT_DIR"


def run_probe(script: str, out: Path, *args: str, timeout: float = 900) -> dict:
    """Run ``tests/host/<script> --out <out> <args>``; its report. A failed probe fails the caller
    with the end of what it printed."""
    command = [sys.executable, str(hostenv.REPO_ROOT / "tests" / "host" / script), "--out", str(out), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{script} {' '.join(args)} failed:\n{result.stdout[-2000:]}\n"
                                    f"{result.stderr[-4000:]}")
    report = json.loads(out.read_text())
    keep = os.environ.get(REPORT_DIR_VARIABLE)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, Path(keep) / out.name)
    return report
