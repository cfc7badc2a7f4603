"""Memory readings and cache clearing on a real CUDA device (marked ``gpu``: skipped where there is
none, a failure under DISTORCH_REQUIRE_GPU=1, see tools/pytest_distorch.py)."""
import pytest
import torch

gpu = pytest.mark.gpu
MiB = 2**20
# Other processes, and the driver itself, may move free memory a little between two readings.
CHURN = 256 * MiB


@pytest.fixture(scope="module")
def du(pack_module):
    return pack_module("device_utils")


def driver_reserve(index: int) -> int:
    """Memory the driver keeps for itself on board ``index``: NVML's v2 figure where the driver
    gives one, else at most 2 % of the board (CUDA's total leaves it out, NVML's v1 total counts
    it: the two totals differ by this, for no fault of ours)."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
    try:
        reserved = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2).reserved
    except pynvml.NVMLError:
        reserved = 0
    return max(int(reserved), total // 50)


@gpu
def test_cuda_readings_agree_with_mem_get_info_within_the_driver_reserve(du):
    reading = du.read_device("cuda:0")
    free, total = torch.cuda.mem_get_info(0)
    reserve = driver_reserve(0)
    assert reading.source == "nvml" and reading.name, "NVML readings expected on an NVIDIA GPU"
    assert 0 <= reading.total - total <= reserve, (
        f"NVML total {reading.total} vs CUDA's {total}: differ by more than the driver's reserve {reserve}")
    assert abs(reading.free - free) <= reserve + CHURN, (
        f"NVML free {reading.free} vs CUDA's {free}: differ by more than the driver's reserve {reserve} + churn")
    block = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda:0")
    assert du.read_device("cuda:0").torch_allocated >= block.nelement()
    del block


class _HostWithoutTheDevice:
    """A stand-in for comfy.model_management whose current device is not ``cuda:0`` (the CPU), and
    whose own cache clearing does nothing: whatever clears cuda:0 is the pack's pass."""
    current_loaded_models = ()  # no model loaded

    @staticmethod
    def get_torch_device():
        return torch.device("cpu")


@gpu
def test_the_packs_pass_clears_a_held_device_that_is_not_current(pack_module):
    """The host clears only its current device; the pack's pass must clear the others it has seen
    hold a model. With the host's own call a no-op, only the pass can empty cuda:0's cache."""
    control = pack_module("model_management_mgpu").MemoryControl(_HostWithoutTheDevice())
    control.held_devices.add("cuda:0")
    block = torch.empty(128 * MiB, dtype=torch.uint8, device="cuda:0")
    del block
    assert torch.cuda.memory_reserved(0) >= 128 * MiB
    control.soft_empty_cache(lambda *args, **kwargs: None)
    assert torch.cuda.memory_reserved(0) < 128 * MiB, "the pack's cache pass left cuda:0's cache in place"


@gpu
def test_clearing_one_gpu_leaves_another_gpus_cache_alone(du):
    """empty_device_cache('cuda:1') while cuda:0 is torch's current device clears cuda:1 only."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs two CUDA devices, this machine has {torch.cuda.device_count()}")
    torch.cuda.set_device(0)
    blocks = [torch.empty(128 * MiB, dtype=torch.uint8, device=f"cuda:{index}") for index in (0, 1)]
    del blocks
    assert du.empty_device_cache("cuda:1")
    assert torch.cuda.memory_reserved(1) < 128 * MiB, "cuda:1 kept its cache"
    assert torch.cuda.memory_reserved(0) >= 128 * MiB, "clearing cuda:1 cleared the current device cuda:0 too"
    assert torch.cuda.current_device() == 0
    du.empty_device_cache("cuda:0")


def test_the_packs_pass_asks_to_clear_the_held_device_the_stand_in_host_does_not_use(pack_module, monkeypatch):
    """The same pass with the cache clearing recorded, on any machine: the GPU test above relies on
    the stand-in host making cuda:0 a device the pass clears (a pass that read more of the host, or
    skipped this device, fails here first)."""
    patches = pack_module("model_management_mgpu")
    cleared = []
    monkeypatch.setattr(patches.device_utils, "empty_device_cache", lambda device: cleared.append(device) or True)
    control = patches.MemoryControl(_HostWithoutTheDevice())
    control.held_devices.add("cuda:0")
    control.soft_empty_cache(lambda *args, **kwargs: None)
    assert cleared == ["cuda:0"]
