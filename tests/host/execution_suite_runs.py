"""Runs of ComfyUI's own execution suite (``tests/execution`` of the host tree) in throw-away
copies of the tree, for tests/host/test_comfy_execution_suite.py; the pack copy's run can start in
the background when the host tests begin (tests/host/conftest.py)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hostenv
from comfy_host import PACK_DIR_NAME, free_port

SUITE = "tests/execution"
PLUGIN_DIR = Path(__file__).resolve().parent / "execution_suite"
RUN_TIMEOUT_S = 30 * 60  # 3 to 4 min per run on a 2-core machine
FAILED = ("failed", "error")
# Host tests that fail on the bare host too, with the reason; they are not the pack's to fix.
# None on ComfyUI 0.3.75 with tools/requirements-host.txt (all 232 pass; the host logs
# "IMPORT FAILED: nodes_audio.py" because torchaudio is not installed, which no test uses).
KNOWN_HOST_FAILURES: dict[str, str] = {}
# Top-level folders that are not copied: the server writes output/, temp/ and user/ (fresh ones
# are made), models/ is linked, custom_nodes/ is rebuilt from links.
_NOT_COPIED = {".git", "models", "custom_nodes", "output", "temp", "user"}


def host_copy(source: Path, dest: Path, pack: Path | None) -> Path:
    """The host tree in ``dest``. The code is copied, not linked: folder_paths.py finds
    custom_nodes/, output/ and user/ next to its own real path, so a linked file would lead back
    into the cache."""
    shutil.copytree(source, dest, symlinks=True, ignore=lambda folder, names: (
        [n for n in names if n == "__pycache__" or (Path(folder) == source and n in _NOT_COPIED)]))
    if (source / "models").exists():
        (dest / "models").symlink_to(source / "models", target_is_directory=True)
    custom = dest / "custom_nodes"
    custom.mkdir()
    for entry in sorted((source / "custom_nodes").iterdir()) if (source / "custom_nodes").is_dir() else []:
        if entry.name != "__pycache__" and entry.resolve() != hostenv.REPO_ROOT.resolve():
            (custom / entry.name).symlink_to(entry)
    if pack is not None:
        (custom / PACK_DIR_NAME).symlink_to(pack, target_is_directory=True)
    return dest


class SuiteRun:
    """One run of the host's pytest on ``tests`` inside ``tree``, started when made; ``result()``
    waits for it."""

    def __init__(self, tree: Path, tests: list[str], log: Path, outcomes: Path):
        self.tree, self.log, self.outcomes = tree, log, outcomes
        env = dict(os.environ, DISTORCH_SUITE_OUTCOMES=str(outcomes), PYTHONUNBUFFERED="1")
        # The suite starts its servers as plain `python main.py`: this interpreter's must come first.
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_DIR), env.get("PYTHONPATH")]))
        env.pop("PYTEST_ADDOPTS", None)
        outcomes.unlink(missing_ok=True)
        command = [sys.executable, "-m", "pytest", *tests, "-p", "outcomes_plugin", "-p", "no:cacheprovider", "-q",
                   "--port", str(free_port())]
        with open(log, "ab") as out:
            out.write(f"\n==== {' '.join(command)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(command, cwd=tree, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # its servers join the group: one kill ends all
        self.deadline = time.monotonic() + RUN_TIMEOUT_S

    def result(self) -> tuple[dict, dict]:
        """({test id: outcome}, {test id: message}) once the run has ended."""
        try:
            self.process.wait(timeout=max(self.deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the host's execution suite did not finish in {RUN_TIMEOUT_S} s in {self.tree}:\n"
                        f"{tail(self.log)}")
        if not self.outcomes.exists():
            pytest.fail(f"the host's pytest exited with {self.process.returncode} without results in {self.tree}:\n"
                        f"{tail(self.log)}")
        data = json.loads(self.outcomes.read_text())
        return data["outcomes"], data["messages"]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_suite(tree: Path, tests: list[str], log: Path, outcomes: Path) -> tuple[dict, dict]:
    """Run the host's pytest on ``tests`` inside ``tree`` and wait: ({test id: outcome}, {test id: message})."""
    return SuiteRun(tree, tests, log, outcomes).result()


# The pack copy's run, started in the background when the host tests begin (tests/host/conftest.py)
# and read by this module, which runs last: it takes about 3 minutes on the 2-core VM, most of it
# waiting on its own servers, and the other host tests run meanwhile.
EARLY_RUN = pytest.StashKey[SuiteRun]()


def start_pack_run(work: Path) -> SuiteRun | None:
    """The pack copy's full run, started now; None where this module would run the bare copy too
    (no stored record for this tree) or the tree has no suite (the module then says why)."""
    comfyui = hostenv.comfyui_dir()
    if not (comfyui / SUITE).exists() or stored_bare(comfyui) is None:
        return None
    tree = host_copy(comfyui, work / "pack", hostenv.REPO_ROOT)
    return SuiteRun(tree, [SUITE], work / "pack.log", work / "pack.json")


def tail(log: Path, lines: int = 80) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


STORED_DIR = PLUGIN_DIR
MODE_VARIABLE = "DISTORCH_EXECUTION_SUITE"  # "" (stored bare outcomes where there are), both, record


def tree_version(tree: Path) -> str:
    """The version a ComfyUI tree says it is (its comfyui_version.py), or "" if it says none."""
    try:
        text = (tree / "comfyui_version.py").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return ""


def stored_path(version: str) -> Path:
    return STORED_DIR / f"bare-{version}.json"


def stored_bare(tree: Path) -> dict | None:
    """The stored bare outcomes for this tree's version, or None (none stored, or ``both``/``record``)."""
    version = tree_version(tree)
    if not version or os.environ.get(MODE_VARIABLE, "") in ("both", "record"):
        return None
    path = stored_path(version)
    return json.loads(path.read_text()) if path.is_file() else None
