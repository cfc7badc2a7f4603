"""pytest plugin (loaded by pyproject's addopts):

- collect the repository root as a plain folder, not a package: the root's __init__.py is the
  pack's registration for ComfyUI and only imports inside a ComfyUI process; pytest would
  otherwise import it while collecting tests/;
- skip ``gpu``-marked tests where there is no CUDA device, or fail them under DISTORCH_REQUIRE_GPU=1.
"""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path, parent):
    if Path(path) == REPO_ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None


# -- GPU tests -----------------------------------------------------------------------------------
# Tests marked ``gpu`` need a CUDA device. Where none is present they are skipped, naming why;
# with DISTORCH_REQUIRE_GPU=1 (the GPU check on a lent GPU machine sets it) that skip is a failure,
# so a run that was meant to prove something on a GPU cannot pass by proving nothing.
REQUIRE_GPU_VARIABLE = "DISTORCH_REQUIRE_GPU"
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"


def gpu_verdict(cuda_available: bool, required: str | None) -> tuple[str, str]:
    """What becomes of a ``gpu``-marked test: ("run", ""), ("skip", why) or ("fail", why)."""
    if cuda_available:
        return "run", ""
    if (required or "").strip() == "1":
        return "fail", f"{NO_CUDA}, and {REQUIRE_GPU_VARIABLE}=1 requires one"
    return "skip", NO_CUDA


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is None:
        return
    import torch  # only once a GPU test is about to run

    verdict, why = gpu_verdict(torch.cuda.is_available(), os.environ.get(REQUIRE_GPU_VARIABLE))
    if verdict == "fail":
        pytest.fail(why, pytrace=False)
    if verdict == "skip":
        pytest.skip(why)
