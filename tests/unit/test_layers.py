"""The pack's structure, checked: the layer contracts in pyproject.toml (import-linter, imports
inside functions included) and no mutable state at module level (the runtime owns it)."""
from __future__ import annotations

import contextvars
import dataclasses
import enum
import inspect
import logging
import re
import subprocess
import sys
import types
import typing
from pathlib import Path, PurePath

import pytest

import hostenv

# Modules that cannot be imported without a running ComfyUI's PromptServer (they are checked by
# reading their source instead: see test_the_registration_modules_keep_nothing_but_the_runtime).
NEEDS_A_SERVER = {"__init__"}


@pytest.fixture
def linked_pack(tmp_path):
    """A folder in which ``comfyui_distorch`` is the repository."""
    def link(root: Path) -> Path:
        folder = tmp_path / "lint"
        folder.mkdir(exist_ok=True)
        (folder / "comfyui_distorch").symlink_to(root, target_is_directory=True)
        return folder
    return link


def run_contracts(folder: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), str(config), "--no-cache"], cwd=folder, env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold(linked_pack):
    result = run_contracts(linked_pack(hostenv.REPO_ROOT), hostenv.REPO_ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "KEPT" in result.stdout


def test_an_engine_module_importing_a_node_module_breaks_the_contract(linked_pack, tmp_path):
    """The check can fail: a copy of the pack whose planner imports nodes/ inside a function."""
    import shutil

    copy = tmp_path / "pack"
    # Links are copied as links and dot folders left out: after `make run`, .run/custom_nodes links
    # back to the repository, and following it would copy the copy into itself until the disk is full.
    shutil.copytree(hostenv.REPO_ROOT, copy, symlinks=True,
                    ignore=shutil.ignore_patterns(".*", "tests", "docs", "bench", "tools", "*.png", "node_modules",
                                                  "test-artifacts", "__pycache__"))
    planner = copy / "distorch" / "logic" / "planner.py"
    planner.write_text(planner.read_text() + "\n\ndef _sneaky():\n    from ...nodes import loaders  # noqa\n")
    result = run_contracts(linked_pack(copy), copy / "pyproject.toml")
    assert result.returncode != 0, result.stdout
    assert "The engine (distorch/) imports nothing above it BROKEN" in result.stdout
    assert "comfyui_distorch.distorch is not allowed to import comfyui_distorch.nodes" in result.stdout
    assert "comfyui_distorch.distorch.logic is not allowed to import torch" in result.stdout  # pure: through nodes/


# ---- module-level state ------------------------------------------------------------------------

def pack_modules() -> list[str]:
    root = hostenv.REPO_ROOT
    names = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in {"tests", "tools", "bench", "docs", "web", "example_workflows"} or \
                any(part.startswith(".") for part in relative.parts):
            continue
        name = ".".join(relative.with_suffix("").parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        if name not in NEEDS_A_SERVER:
            names.append(name)
    return names


_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
_IMMUTABLE = (str, bytes, int, float, complex, bool, type(None), range, re.Pattern, enum.Enum,
              types.MappingProxyType, contextvars.ContextVar, logging.Logger, typing.TypeVar, PurePath)


def immutable(value) -> bool:
    if type(value) is object or inspect.isclass(value) or type(value).__name__ == "_Feature":
        return True  # a sentinel, a class, a __future__ feature
    if isinstance(value, (tuple, frozenset)):
        return all(immutable(item) for item in value)
    if isinstance(value, types.MappingProxyType):
        return all(immutable(item) for item in value.values())
    if isinstance(value, _IMMUTABLE):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value).__dataclass_params__.frozen
    return False


def state_problem(name: str, value) -> str | None:
    """Why the global ``name`` is mutable state, or None."""
    if name.startswith("__") or inspect.ismodule(value) or inspect.isclass(value) or callable(value):
        return None
    if isinstance(value, typing.TYPE_CHECKING.__class__) or immutable(value):
        return None
    if isinstance(value, (dict, list, set)) and _CONSTANT.match(name):
        return None  # a table named as a constant (written once, at import)
    return f"{name} = {type(value).__name__} object"


def test_no_module_level_mutable_state(mm, pack_module):
    problems = {}
    for name in pack_modules():
        try:
            module = pack_module(name)
        except ImportError as exc:
            pytest.fail(f"{name} cannot be imported in-process: {exc}")
        found = [problem for attribute, value in vars(module).items()
                 if (problem := state_problem(attribute, value)) is not None
                 and getattr(value, "__module__", None) != "typing"]
        if found:
            problems[name] = found
    assert not problems, f"module-level state outside the runtime: {problems}"


def test_the_state_check_catches_a_holder():
    """The check can fail: the shapes of the holders the runtime replaced."""
    class Holder:
        pass

    assert state_problem("_holder", Holder()) is not None
    assert state_problem("_NVML", Holder()) is not None
    assert state_problem("_reported", set()) is not None
    assert state_problem("_service", None) is None and state_problem("TABLE", {"a": 1}) is None


def test_the_registration_modules_keep_nothing_but_the_runtime():
    source = (hostenv.REPO_ROOT / "__init__.py").read_text()
    assigned = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_, ]*)=", source, re.M))
    names = {part.strip() for group in assigned for part in group.split(",")}
    assert names == {"WEB_DIRECTORY", "__all__", "RUNTIME", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"}, names
