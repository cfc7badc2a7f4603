import tomllib
from pathlib import Path

import distorch

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
