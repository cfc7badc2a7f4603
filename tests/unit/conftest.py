"""Unit-test helpers: import the pack's own modules (which use relative imports) without running
its ``__init__.py`` (that registers nodes and needs a running ComfyUI)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest

import hostenv
from pytest_distorch import comfyui_gguf_or_skip

PACKAGE = "distorch_pack_under_test"


def import_pack_module(name: str):
    """``import_pack_module("device_utils")`` -> the pack's device_utils as a package submodule."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, hostenv.REPO_ROOT / "__init__.py", submodule_search_locations=[str(hostenv.REPO_ROOT)])
        package = importlib.util.module_from_spec(spec)  # deliberately not executed
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture(scope="session")
def pack_module():
    return import_pack_module


@pytest.fixture(scope="session")
def mm():
    """The real comfy.model_management of the test host, imported in-process (CPU)."""
    comfyui = hostenv.comfyui_dir()
    if not (comfyui / "main.py").exists():
        pytest.fail(f"no ComfyUI at {comfyui}: run tools/bootstrap.py or set COMFYUI_PATH")
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management

    return comfy.model_management


@pytest.fixture(scope="session")
def comfyui_gguf(mm):
    """ComfyUI-GGUF (the third-party pack) imported in-process as a package over the real host
    (``.loader``, ``.nodes``), without its ``__init__``; skipped, naming where it was looked for,
    when no copy is there."""
    folder = comfyui_gguf_or_skip()
    name = "comfyui_gguf_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        sys.modules[name] = importlib.util.module_from_spec(spec)  # deliberately not executed
    return types.SimpleNamespace(folder=folder, loader=importlib.import_module(f"{name}.loader"),
                                 nodes=importlib.import_module(f"{name}.nodes"))


@pytest.fixture(scope="session")
def synthetic_models():
    """The synthetic models folder (tools/make_models.py writes what is missing, .gguf UNets too)."""
    import subprocess

    out = hostenv.models_dir()
    subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "tools" / "make_models.py"),
                    "--comfyui", str(hostenv.comfyui_dir()), "--out", str(out)], check=True)
    return out
