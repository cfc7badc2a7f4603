"""Shared test set-up (import paths are in pyproject's [tool.pytest.ini_options])."""
from hypothesis import HealthCheck, settings

# Property tests check what is generated, not how fast: on a shared 2-core machine the host's test
# servers make example generation slow, which must not fail a correct test.
settings.register_profile("distorch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("distorch")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped where none is present, a failure with "
                                       "DISTORCH_REQUIRE_GPU=1 (tools/pytest_distorch.py)")
    config.addinivalue_line("markers", "host: starts a real ComfyUI server")
