"""ComfyUI's own execution suite, with the pack installed, compared with the bare host.

The host tree ships its execution tests (``tests/execution``: test_execution.py's 176 tests over
four cache settings, plus async nodes, progress isolation and the public progress API; 232 tests
on 0.3.75). Each starts ``python main.py`` from the tree, which loads ``custom_nodes/`` and the
suite's own testing nodes. The suite runs in a throw-away copy of the tree (the cached tree is
never changed) with the pack linked into ``custom_nodes/``. Installing the pack must not change
what core workflows do, so the pack run must pass exactly the tests the bare host passes.

The bare host's outcomes are stored per host version (``execution_suite/bare-<version>.json``,
recorded on the bare tree by ``DISTORCH_EXECUTION_SUITE=record``): the bare run cannot change
without the tree changing, and running it each time cost 3 to 4 minutes per host. A tree without
a stored record (``COMFYUI_PATH`` naming another version), or ``DISTORCH_EXECUTION_SUITE=both``,
runs the bare copy beside the pack copy as before.

Each test runs once. Six of them also assert wall-clock limits (a cached run "< 0.1 s", sleeps
running in parallel "< 8.9 s"), which failed at times on the 2-core machine running two tiers at
once while the outputs were right; the suite is run with the host's own ``--skip-timing-checks``
("useful for CI environments with variable performance", tests/conftest.py of the tree), so those
tests still run their graphs and check their outputs, without the stopwatch. (Before, a differing test
was run again and only a second difference counted, which could hide a failure the pack caused.)
"""
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

pytestmark = pytest.mark.host

SUITE = "tests/execution"
SUITE_OPTIONS = ["--skip-timing-checks"]  # the host's own option (see the module's docstring)
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


def run_suite(tree: Path, tests: list[str], log: Path, outcomes: Path) -> tuple[dict, dict]:
    """Run the host's pytest on ``tests`` inside ``tree``; ({test id: outcome}, {test id: message})."""
    env = dict(os.environ, DISTORCH_SUITE_OUTCOMES=str(outcomes), PYTHONUNBUFFERED="1")
    # The suite starts its servers as plain `python main.py`: this interpreter's must come first.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_DIR), env.get("PYTHONPATH")]))
    env.pop("PYTEST_ADDOPTS", None)
    outcomes.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", *tests, "-p", "outcomes_plugin", "-p", "no:cacheprovider", "-q",
               "--port", str(free_port()), *SUITE_OPTIONS]
    with open(log, "ab") as out:
        out.write(f"\n==== {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(command, cwd=tree, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # its servers join the group: one kill ends all
        try:
            process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"the host's execution suite did not finish in {RUN_TIMEOUT_S} s in {tree}:\n{tail(log)}")
    if not outcomes.exists():
        pytest.fail(f"the host's pytest exited with {process.returncode} without results in {tree}:\n{tail(log)}")
    data = json.loads(outcomes.read_text())
    return data["outcomes"], data["messages"]


def tail(log: Path, lines: int = 80) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _passed(outcomes: dict, test: str) -> bool:
    return outcomes.get(test) == "passed"


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
    """The stored bare outcomes for this tree's version, or None (none stored, stored with other
    options than SUITE_OPTIONS, or ``both``/``record``)."""
    version = tree_version(tree)
    if not version or os.environ.get(MODE_VARIABLE, "") in ("both", "record"):
        return None
    path = stored_path(version)
    stored = json.loads(path.read_text()) if path.is_file() else None
    return stored if stored is not None and stored.get("options") == SUITE_OPTIONS else None


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    comfyui = hostenv.comfyui_dir()
    if not (comfyui / SUITE.split("::")[0]).exists():
        message = f"{comfyui} has no {SUITE} (ComfyUI's own execution tests)"
        if os.environ.get("COMFYUI_PATH"):
            pytest.skip(message + ": COMFYUI_PATH names a tree without them")
        pytest.fail(message + f": the {hostenv.HOST_WHEEL} tree ships them; rebuild it with tools/bootstrap.py")
    work = tmp_path_factory.mktemp("execution-suite")
    stored = stored_bare(comfyui)
    runs = {}
    if stored is not None:
        runs["bare"] = {"tree": None, "outcomes": stored["outcomes"], "messages": stored.get("messages", {}),
                        "log": stored_path(tree_version(comfyui)), "stored": stored}
    for name, pack in (("bare", None), ("pack", hostenv.REPO_ROOT)):
        if name in runs:
            continue
        tree = host_copy(comfyui, work / name, pack)
        outcomes, messages = run_suite(tree, [SUITE], work / f"{name}.log", work / f"{name}.json")
        runs[name] = {"tree": tree, "outcomes": outcomes, "messages": messages, "log": work / f"{name}.log"}
    if os.environ.get(MODE_VARIABLE) == "record":
        record = {"host": tree_version(comfyui), "recorded": time.strftime("%Y-%m-%d"),
                  "python": sys.version.split()[0], "options": SUITE_OPTIONS, "outcomes": runs["bare"]["outcomes"],
                  "messages": runs["bare"]["messages"]}
        stored_path(record["host"]).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return runs


def _described(run: dict, tests) -> str:
    lines = []
    for test in sorted(tests):
        lines.append(f"- {test}: {run['outcomes'].get(test)}")
        message = run["messages"].get(test, "").splitlines()
        errors = [line for line in message if line.startswith("E ")]  # pytest's own summary of the failure
        lines += ["    " + line for line in (errors[-15:] or message[-25:])]
    return "\n".join(lines) + f"\nlog: {run['log']}"


def test_bare_host_passes_its_own_execution_suite(suite):
    bare = suite["bare"]
    if "stored" in bare:
        assert bare["stored"]["host"] == tree_version(hostenv.comfyui_dir())
    assert "passed" in bare["outcomes"].values(), f"no host test passed on the bare host:\n{tail(bare['log'])}"
    failing = {t for t, outcome in bare["outcomes"].items() if outcome in FAILED}
    unexpected = failing - set(KNOWN_HOST_FAILURES)
    assert not unexpected, ("ComfyUI's execution suite fails on the bare host (not the pack's doing; list it in "
                            "KNOWN_HOST_FAILURES with the reason if the host cannot pass it here):\n"
                            + _described(bare, unexpected))


def test_pack_passes_exactly_the_tests_the_bare_host_passes(suite):
    bare, pack = suite["bare"]["outcomes"], suite["pack"]["outcomes"]
    assert set(pack) == set(bare), (f"the suite collected other tests with the pack: only bare "
                                    f"{sorted(set(bare) - set(pack))}, only with the pack {sorted(set(pack) - set(bare))}")
    broken = {t for t in bare if _passed(bare, t) and not _passed(pack, t)}
    assert not broken, ("installing the pack breaks ComfyUI's own execution tests (they pass on the bare host):\n"
                        + _described(suite["pack"], broken))
    mended = {t for t in bare if _passed(pack, t) and not _passed(bare, t)}
    assert not mended, (f"these host tests pass only with the pack (the pack changes core behaviour): "
                        f"{sorted(mended)}")
