"""Without ComfyUI-GGUF the GGUF tests skip with one line that says how to run them
(tools/pytest_distorch.py)."""
import os
import subprocess
import sys

import hostenv
import pytest_distorch


def test_the_reason_names_the_variable_and_where_it_looked():
    reason = pytest_distorch.gguf_skip_reason(["/nowhere/ComfyUI-GGUF"])
    assert reason.startswith(pytest_distorch.GGUF_MISSING)
    assert "/nowhere/ComfyUI-GGUF" in reason
    assert "COMFYUI_GGUF_PATH=<a checkout of city96/ComfyUI-GGUF>" in reason


def test_many_skipped_tests_report_one_line(tmp_path):
    (tmp_path / "test_needs_gguf.py").write_text(
        "import pytest\n"
        "from pytest_distorch import gguf_skip_reason\n\n"
        "@pytest.fixture\n"
        "def gguf():\n"
        "    pytest.skip(gguf_skip_reason(['/nowhere/ComfyUI-GGUF']))\n\n"
        "@pytest.mark.parametrize('n', range(3))\n"
        "def test_a(gguf, n):\n    pass\n\n"
        "def test_b():\n    pytest.skip(gguf_skip_reason(['/nowhere/ComfyUI-GGUF']))\n\n"
        "def test_other():\n    pytest.skip('another reason')\n")
    env = dict(os.environ, PYTHONPATH=str(hostenv.REPO_ROOT / "tools"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "pytest_distorch", "-p", "no:cacheprovider",
                             "-ra", "-q", "test_needs_gguf.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    gguf = [line for line in skipped if "ComfyUI-GGUF" in line]
    assert len(gguf) == 1 and gguf[0].startswith("SKIPPED [4] ") and "COMFYUI_GGUF_PATH=" in gguf[0], result.stdout
    assert len(skipped) == 2, result.stdout  # other skips keep their own lines
