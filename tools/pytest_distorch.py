"""pytest plugin: collect the repository root as a plain folder, not a package.

The root's __init__.py is the pack's registration for ComfyUI and only imports inside a ComfyUI
process; pytest would otherwise import it while collecting tests/.
"""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path, parent):
    if Path(path) == REPO_ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None
