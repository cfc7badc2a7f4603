"""Shared test set-up (import paths are in pyproject's [tool.pytest.ini_options])."""


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped where none is present")
    config.addinivalue_line("markers", "host: starts a real ComfyUI server")
