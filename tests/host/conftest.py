"""Fixtures that start real ComfyUI servers (with and without the pack) for a test session."""
from __future__ import annotations

import fcntl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import hostenv
from pytest_distorch import comfyui_gguf_or_skip
from comfy_host import ComfyHost



@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The synthetic models, generated on first use (tools/make_models.py)."""
    out = hostenv.models_dir()
    subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "tools" / "make_models.py"),
                    "--comfyui", str(hostenv.comfyui_dir()), "--out", str(out)], check=True)
    return out


def _start(tmp_path_factory, model_cache, with_pack: bool, name: str):
    comfyui = hostenv.comfyui_dir()
    if not (comfyui / "main.py").exists():
        pytest.fail(f"no ComfyUI at {comfyui}: run `make test` (or tools/bootstrap.py), or set COMFYUI_PATH")
    host = ComfyHost(comfyui, tmp_path_factory.mktemp(name), model_cache,
                     hostenv.REPO_ROOT if with_pack else None)
    host.start()
    return host


@pytest.fixture(scope="module")
def ram_heavy():
    """Held for a module that starts several servers or makes one grow (the routing cluster, the
    soak). make test runs two tiers at once on one machine: with two such modules at the same time
    the splits found no free RAM and the routing cluster routed for eviction. A lock file shared by
    every pytest run on the machine makes them take turns."""
    with open(Path(tempfile.gettempdir()) / "distorch-ram-heavy.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory, model_cache):
    """A ComfyUI server with comfyui-distorch in custom_nodes/."""
    host = _start(tmp_path_factory, model_cache, True, "host-with-pack")
    yield host
    host.stop()


@pytest.fixture(scope="session")
def comfy_core(tmp_path_factory, model_cache):
    """The same ComfyUI without the pack, for side-by-side comparisons."""
    host = _start(tmp_path_factory, model_cache, False, "host-core-only")
    yield host
    host.stop()


@pytest.fixture(scope="session")
def modes_files(tmp_path_factory, model_cache):
    """A model root for modes A / B and the modes.yaml the modes server watches."""
    import modes_setup

    root = modes_setup.make_model_root(tmp_path_factory.mktemp("modes-root"), model_cache)
    modes_file = tmp_path_factory.mktemp("modes-config") / "modes.yaml"
    modes_file.write_text(modes_setup.modes_yaml(root))
    return root, modes_file


@pytest.fixture(scope="session")
def comfy_modes(tmp_path_factory, model_cache, modes_files):
    """A ComfyUI server with the pack and DISTORCH_MODES pointing at a temporary modes.yaml."""
    comfyui = hostenv.comfyui_dir()
    if not (comfyui / "main.py").exists():
        pytest.fail(f"no ComfyUI at {comfyui}: run `make test` (or tools/bootstrap.py), or set COMFYUI_PATH")
    _, modes_file = modes_files
    host = ComfyHost(comfyui, tmp_path_factory.mktemp("host-modes"), model_cache, hostenv.REPO_ROOT,
                     env={"DISTORCH_MODES": str(modes_file)})
    host.start()
    yield host
    host.stop()


@pytest.fixture(scope="session")
def comfy_gguf(tmp_path_factory, model_cache):
    """A server with the pack and ComfyUI-GGUF (city96's GGUF loaders, a third-party pack) side by
    side in custom_nodes/, as users run them. Skipped, naming where it was looked for, when no copy
    of ComfyUI-GGUF is there (CI has ../shared/vendor/ComfyUI-GGUF). Modules from 64 KiB up may go
    to the donor (DISTORCH_TINY_BYTES; the default 1 MiB would keep every layer of the synthetic
    Q8_0 UNet on the compute device, so nothing would split)."""
    gguf_pack = comfyui_gguf_or_skip()
    comfyui = hostenv.comfyui_dir()
    if not (comfyui / "main.py").exists():
        pytest.fail(f"no ComfyUI at {comfyui}: run `make test` (or tools/bootstrap.py), or set COMFYUI_PATH")
    host = ComfyHost(comfyui, tmp_path_factory.mktemp("host-gguf"), model_cache, hostenv.REPO_ROOT,
                     extra_custom_nodes=(gguf_pack,), env={"DISTORCH_TINY_BYTES": "65536"})
    host.start()
    yield host
    host.stop()


HOOKS_PACK = Path(__file__).parent / "packs" / "distorch_test_hooks"


@pytest.fixture(scope="session")
def comfy_hooks(tmp_path_factory, model_cache, modes_files):
    """A server with the pack, modes (a modes.yaml of its own) and the test-only hooks pack
    (tests/host/packs/distorch_test_hooks: another pack's on_prompt handler, a switch that makes
    the memory walk slow or fail). ``host.hooks_dir`` holds what the hooks record."""
    import modes_setup

    comfyui = hostenv.comfyui_dir()
    if not (comfyui / "main.py").exists():
        pytest.fail(f"no ComfyUI at {comfyui}: run `make test` (or tools/bootstrap.py), or set COMFYUI_PATH")
    root, _ = modes_files
    config = tmp_path_factory.mktemp("hooks-config")
    (config / "modes.yaml").write_text(modes_setup.modes_yaml(root))
    host = ComfyHost(comfyui, tmp_path_factory.mktemp("host-hooks"), model_cache, hostenv.REPO_ROOT,
                     env={"DISTORCH_MODES": str(config / "modes.yaml"), "DISTORCH_TEST_HOOKS_DIR": str(config)},
                     extra_custom_nodes=(HOOKS_PACK,))
    host.hooks_dir = config
    host.start()
    yield host
    host.stop()


@pytest.fixture(scope="session")
def bare_console_errors() -> dict:
    """The console errors of a fresh browser on a server without the pack, per URL, measured by
    the first browser module that asks (Browser.baseline_console_errors)."""
    return {}


@pytest.fixture(scope="module")
def browser():
    """One Debian chromium per browser-test module (a skip naming the package where it is missing,
    a failure in CI); each module opens its pages on its own server."""
    from ui_browser import Browser, chromium_path

    chromium_path()
    session = Browser()
    yield session
    session.close()
