import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

import distorch
import hostenv

ROOT = Path(__file__).resolve().parents[2]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_single_sourced():
    assert pyproject()["project"]["version"] == distorch.__version__


def test_registry_metadata_present():
    comfy = pyproject()["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]


def test_runtime_requirements_do_not_drag_in_test_tools_or_the_host():
    runtime = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    runtime = [line for line in runtime if line]
    for forbidden in ("pytest", "hypothesis", "torch", "comfyui"):
        assert not any(line.lower().startswith(forbidden) for line in runtime), forbidden
    assert sorted(runtime) == sorted(pyproject()["project"]["dependencies"])


# -- Registry metadata ---------------------------------------------------------------------------
# comfy-cli (registry/config_parser.py) keeps a field only when it has this shape; otherwise it warns
# and publishes the field empty. These tests hold the same rules, so a bad value fails here first.
VERSION_PART = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
OS_PREFIXES = ("Microsoft", "POSIX", "MacOS", "OS Independent")
ACCELERATORS = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend",
                "GPU :: Apple Metal"}


def version_tuple(text):
    return tuple(int(part) for part in text.split("."))


def test_requires_comfyui_is_the_tested_range():
    spec = pyproject()["tool"]["comfy"]["requires-comfyui"]
    parts = [part.strip() for part in spec.split(",")]
    assert all(VERSION_PART.match(part) for part in parts), spec
    bounds = dict(VERSION_PART.match(part).groups() for part in parts)
    # The floor is the default test host; the ceiling the newest tree the suite has run on.
    assert bounds[">="] == hostenv.HOST_COMFYUI_VERSION
    assert bounds["<="] == "0.33.0"
    assert version_tuple(bounds[">="]) < version_tuple(bounds["<="])


def test_classifiers_are_ones_the_registry_keeps_and_name_only_what_ran():
    classifiers = pyproject()["project"]["classifiers"]
    systems = [c.removeprefix("Operating System :: ") for c in classifiers if c.startswith("Operating System :: ")]
    accelerators = [c.removeprefix("Environment :: ") for c in classifiers if c.startswith("Environment ::")]
    assert systems and all(s.startswith(OS_PREFIXES) for s in systems)
    assert all(a in ACCELERATORS for a in accelerators)
    # Tested on Linux, on the CPU only: no GPU classifier until a GPU run has passed.
    assert systems == ["POSIX :: Linux"]
    assert accelerators == []


# -- What the registry archive holds ---------------------------------------------------------------
# comfy-cli zips the git-tracked files that no line of .comfyignore matches (gitignore syntax, read
# with pathspec's gitwildmatch). pathspec is not in the test environment, so this is a matcher for
# the part of that syntax the file uses, and the file is held to that part: a line outside it fails
# the test instead of being read differently from comfy-cli.
SUPPORTED_LINE = re.compile(r"^/?[A-Za-z0-9._*-]+(/[A-Za-z0-9._*-]+)*/?$")

KEPT_PATHS = [
    "__init__.py", "registration.py", "model_management_mgpu.py", "device_utils.py",
    "requirements.txt", "pyproject.toml", "README.md", "modes.yaml.example",
    "nodes/loaders.py", "distorch/__init__.py", "distorch/logic/planner.py", "distorch/host/runtime.py",
    "routes/memory.py", "modes/schema.py", "web/distorch.js", "web/docs/DisTorchUNETLoader.md",
    "schemas/internal_memory.schema.json", "example_workflows/distorch_split_txt2img.json",
    "docs/internals.md", "docs/comfyui-versions.md", "BENCHMARKS.md", "CHANGELOG.md",
]
RUNTIME_FOLDERS = ("nodes/", "distorch/", "routes/", "modes/", "web/", "schemas/", "example_workflows/")
MAKE_RUN_PATHS = [
    "Makefile", "tools/bootstrap.py", "tools/hostenv.py", "tools/run_host.py", "tools/comfy_host.py",
    "tools/make_models.py", "tools/make_gguf.py", "tools/make_diffusers.py",
    "tools/requirements-host.txt", "tools/requirements-test.txt",
]
LEFT_OUT_PATHS = [
    "tests/unit/test_packaging.py", "tests/host/conftest.py", "tests/conftest.py",
    "bench/bench_split.py", "bench/common.py", ".ci/run",
    "docs/memory-panel.png", "docs/walkthrough-split-preview.png",
    "tools/pytest_distorch.py", "tools/gpu_check.py", "tools/gpu_kit.py", "tools/device_site.py",
    "tools/node_reference.py", "tools/frame_workflow.py", "tools/requirements-gpu-kit-0.33.txt",
    "nodes/__pycache__/loaders.cpython-311.pyc", ".run/output/x.png",
]


def ignore_lines():
    text = (ROOT / ".comfyignore").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def line_matches(line, path):
    """Whether one gitignore line leaves out ``path`` (a file, relative, '/'-separated): the line
    matches the file itself or a folder it sits in. A line with a '/' before its end is anchored at
    the root; one without matches a name at any depth; a trailing '/' matches folders only; '*'
    matches within one name."""
    dir_only = line.endswith("/")
    body = line.rstrip("/")
    anchored = "/" in body
    pattern = [fnmatch.translate(part) for part in body.lstrip("/").split("/")]
    names = path.split("/")
    # Folders a file sits in are names[:k] for k < len(names); the file itself is k == len(names).
    last = len(names) - 1 if dir_only else len(names)
    starts = [0] if anchored else range(len(names))
    for start in starts:
        end = start + len(pattern)
        if end <= last and all(re.match(p, name) for p, name in zip(pattern, names[start:end])):
            return True
    return False


def left_out(path, lines=None):
    return any(line_matches(line, path) for line in (lines if lines is not None else ignore_lines()))


def tracked_files():
    try:
        result = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in result.stdout.splitlines() if line] if result.returncode == 0 else []


def test_comfyignore_uses_only_the_syntax_this_test_reads():
    lines = ignore_lines()
    assert lines
    assert [line for line in lines if not SUPPORTED_LINE.match(line) or "**" in line] == []


def test_the_matcher_reads_gitignore_lines_as_git_does():
    assert line_matches("/tests/", "tests/unit/a.py") and not line_matches("/tests/", "tests")
    assert not line_matches("/tests/", "nodes/tests/a.py")
    assert line_matches("__pycache__/", "nodes/__pycache__/a.pyc") and not line_matches("__pycache__/", "__pycache__")
    assert line_matches("/docs/*.png", "docs/a.png") and not line_matches("/docs/*.png", "docs/sub/a.png")
    assert not line_matches("/docs/*.png", "web/docs/a.png") and not line_matches("/docs/*.png", "docs/a.md")
    assert line_matches("/tools/gpu_kit.py", "tools/gpu_kit.py") and not line_matches("/tools/gpu_kit.py", "tools/gpu_kit.pyc")
    assert line_matches("*.pyc", "a/b.pyc") and line_matches("b.py", "a/b.py")


@pytest.mark.parametrize("path", LEFT_OUT_PATHS)
def test_archive_leaves_out_tests_bench_ci_test_tools_and_screenshots(path):
    assert left_out(path)


@pytest.mark.parametrize("path", KEPT_PATHS + MAKE_RUN_PATHS)
def test_archive_keeps_what_the_pack_its_docs_and_make_run_need(path):
    assert not left_out(path)


def test_every_tracked_file_lands_on_the_right_side():
    files = tracked_files()
    if not files:
        pytest.skip("not a git checkout: comfy-cli archives git-tracked files, and there are none here")
    lines = ignore_lines()
    kept = {path for path in files if not left_out(path, lines)}
    runtime = [path for path in files if path.startswith(RUNTIME_FOLDERS) or "/" not in path and path != ".gitignore"]
    assert [path for path in runtime if path not in kept] == []
    assert [path for path in MAKE_RUN_PATHS if path not in kept] == []
    assert [path for path in kept if path.startswith(("tests/", "bench/", ".ci/"))] == []
    assert [path for path in kept if path.startswith("docs/") and path.endswith(".png")] == []
    # Each named tool is a tracked file (a renamed tool would otherwise slip back into the archive).
    named = [line.lstrip("/") for line in lines if line.startswith("/tools/")]
    assert named and [path for path in named if path not in files] == []
