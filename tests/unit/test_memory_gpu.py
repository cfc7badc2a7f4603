"""Memory readings and cache clearing on a real CUDA device (skipped where there is none)."""
import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def du(pack_module):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return pack_module("device_utils")


def test_cuda_readings_agree_with_torch(du):
    reading = du.read_device("cuda:0")
    free, total = torch.cuda.mem_get_info(0)
    assert reading.total == total
    assert abs(reading.free - free) < 512 << 20  # other processes may move a little in between
    assert reading.source in ("nvml", "torch") and reading.name
    block = torch.empty(256 << 20, dtype=torch.uint8, device="cuda:0")
    assert du.read_device("cuda:0").torch_allocated >= block.nelement()
    del block


def test_every_held_device_gets_its_cache_cleared(du):
    for index in range(torch.cuda.device_count()):
        block = torch.empty(128 << 20, dtype=torch.uint8, device=f"cuda:{index}")
        del block
        assert torch.cuda.memory_reserved(index) >= 128 << 20
        assert du.empty_device_cache(f"cuda:{index}")
        assert torch.cuda.memory_reserved(index) < 128 << 20, f"cuda:{index} kept its cache"
