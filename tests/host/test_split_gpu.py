"""cuda:0 + cpu donor at 25 / 50 / 90 % offload vs the whole model on the GPU (needs CUDA; not
run on CPU-only machines). The probe runs in its own process: the host is imported with its GPU."""
import json
import subprocess
import sys

import pytest
import torch

import hostenv

pytestmark = [pytest.mark.gpu, pytest.mark.host]
MiB = 2**20


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path_factory.mktemp("gpu") / "report.json"
    result = subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "tests" / "host" / "gpu_split_probe.py"),
                             "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("share", ["25", "50", "90"])
def test_split_is_bit_exact_with_the_whole_model_on_the_gpu(report, share):
    whole, split = report["shares"]["0"], report["shares"][share]
    assert split["latent"] == whole["latent"]
    assert split["loaded_size"] == split["planned_compute_bytes"] < whole["loaded_size"]


@pytest.mark.parametrize("share", ["25", "50", "90"])
def test_vram_stays_within_the_plan(report, share):
    whole, split = report["shares"]["0"], report["shares"][share]
    assert split["resident"] <= split["planned_compute_bytes"] + 4 * MiB
    # Working memory beyond the resident weights grows by at most the offloaded layers in flight.
    in_flight = (report["num_streams"] + 2) * split["largest_offloaded"]
    assert split["peak"] - split["planned_compute_bytes"] <= whole["peak"] - whole["model_bytes"] + in_flight + 8 * MiB


def test_no_leak_across_prompts_and_all_freed_on_unload(report):
    entry = report["shares"]["50"]
    after = entry["allocated_after_prompts"]
    assert len(after) == 20 and max(after) - min(after) <= 1 * MiB
    assert entry["allocated_after_unload"] <= 4 * MiB
