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


# -- ComfyUI-GGUF tests --------------------------------------------------------------------------
# Tests that need ComfyUI-GGUF (city96's pack, a third-party checkout) skip where none is found,
# saying how to run them. pytest reports a fixture's skip at each test's own line, so 18 tests
# would give 18 lines: their reports are folded into one line, at the place that says where the
# checkout is looked for (tools/hostenv.py comfyui_gguf_candidates).
GGUF_MISSING = "ComfyUI-GGUF not found"


def gguf_skip_reason(candidates) -> str:
    return (f"{GGUF_MISSING} (looked in: {', '.join(map(str, candidates))}); to run these tests, set "
            "COMFYUI_GGUF_PATH=<a checkout of city96/ComfyUI-GGUF> (git clone "
            "https://github.com/city96/ComfyUI-GGUF)")


def comfyui_gguf_or_skip() -> Path:
    """The ComfyUI-GGUF checkout the tests use; the calling test is skipped when there is none."""
    import hostenv

    folder = hostenv.comfyui_gguf_dir()
    if folder is None:
        pytest.skip(gguf_skip_reason(hostenv.comfyui_gguf_candidates()))
    return folder


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3 and \
            str(longrepr[2]).removeprefix("Skipped: ").startswith(GGUF_MISSING):
        import inspect

        import hostenv

        line = inspect.getsourcelines(hostenv.comfyui_gguf_candidates)[1]
        report.longrepr = (inspect.getsourcefile(hostenv), line, longrepr[2])
