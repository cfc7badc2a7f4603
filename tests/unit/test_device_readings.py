"""device_utils' memory readings: the real ones this machine gives (cpu, RAM) and, with stand-ins
shaped like torch's backend modules and nvidia-ml-py, the backends it lacks."""
import types

import pytest

GIB = 1 << 30


@pytest.fixture(scope="module")
def du(pack_module):
    return pack_module("device_utils")


class FakeBackend:
    """torch.xpu / torch.npu / torch.cuda as far as the readings use them."""

    def __init__(self, free, total, reserved=0, allocated=0, name="Fake GPU"):
        self.free, self.total, self.reserved, self.allocated, self.name = free, total, reserved, allocated, name
        self.calls = []
        self.emptied = []
        self.selected = None

    def mem_get_info(self, index):
        self.calls.append(("mem_get_info", index))
        return self.free, self.total

    def memory_reserved(self, index):
        return self.reserved

    def memory_allocated(self, index):
        return self.allocated

    def get_device_name(self, index):
        return f"{self.name} #{index}"

    def device(self, index):
        backend = self

        class Select:
            def __enter__(self):
                backend.selected = index

            def __exit__(self, *exc):
                backend.selected = None

        return Select()

    def empty_cache(self):
        self.emptied.append(self.selected)


def test_cpu_and_ram_are_real_readings(du):
    ram = du.read_ram()
    assert ram.total > ram.available > 0 and ram.process_rss > 10 * (1 << 20)
    cpu = du.read_device("cpu", ram=ram)
    assert (cpu.total, cpu.free, cpu.source) == (ram.total, ram.available, "psutil")
    devices, _ = du.read_all_devices()
    assert devices[0].device == "cpu"


@pytest.mark.parametrize("kind", ["xpu", "npu", "mlu"])
def test_torch_backend_readings(du, kind):
    backend = FakeBackend(free=6 * GIB, total=16 * GIB, reserved=9 * GIB, allocated=8 * GIB)
    reading = du.read_device(f"{kind}:1", backends={kind: backend}, nvml=None)
    assert reading.device == f"{kind}:1" and reading.name == "Fake GPU #1" and reading.source == "torch"
    assert (reading.total, reading.free, reading.used) == (16 * GIB, 6 * GIB, 10 * GIB)
    assert (reading.torch_reserved, reading.torch_allocated) == (9 * GIB, 8 * GIB)
    assert reading.state.value == "MODERATE"
    assert backend.calls == [("mem_get_info", 1)]


def test_cuda_prefers_nvml(du):
    handles = {}

    class FakeNvml:
        def nvmlInit(self):
            pass

        def nvmlDeviceGetHandleByIndex(self, index):
            handles["index"] = index
            return index

        def nvmlDeviceGetMemoryInfo(self, handle):
            return types.SimpleNamespace(total=80 * GIB, free=70 * GIB, used=10 * GIB)

        def nvmlDeviceGetName(self, handle):
            return b"NVIDIA H100"

    backend = FakeBackend(free=1, total=2, reserved=5 * GIB, allocated=4 * GIB)
    reading = du.read_device("cuda:1", backends={"cuda": backend}, nvml=du.NvmlReader(FakeNvml()))
    assert (reading.name, reading.source, reading.total, reading.free) == ("NVIDIA H100", "nvml", 80 * GIB, 70 * GIB)
    assert reading.torch_reserved == 5 * GIB and handles["index"] == 1
    assert backend.calls == []  # no cudaMemGetInfo: it would create a context on every GPU


def test_cuda_falls_back_to_torch_when_nvml_is_missing(du):
    class BrokenNvml:
        def nvmlInit(self):
            raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    backend = FakeBackend(free=3 * GIB, total=8 * GIB)
    reading = du.read_device("cuda:0", backends={"cuda": backend}, nvml=du.NvmlReader(BrokenNvml()))
    assert reading.source == "torch" and reading.total == 8 * GIB


def test_nvml_on_this_machine_answers_none_without_a_driver(du):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has an NVIDIA driver")
    assert du.NvmlReader().memory(0) is None


def test_directml_and_missing_backends_report_no_figures(du):
    reading = du.read_device("directml:0", nvml=None)
    assert (reading.total, reading.source, reading.state.value) == (0, "none", "UNKNOWN")


def test_mps_reports_unified_memory(du):
    mps = types.SimpleNamespace(driver_allocated_memory=lambda: 3 * GIB, current_allocated_memory=lambda: 2 * GIB)
    ram = du.RamReading(total=32 * GIB, available=20 * GIB)
    reading = du.read_device("mps", backends={"mps": mps}, ram=ram)
    assert (reading.total, reading.free, reading.torch_reserved, reading.torch_allocated) == (
        32 * GIB, 20 * GIB, 3 * GIB, 2 * GIB)


def test_empty_device_cache_selects_each_device(du):
    backend = FakeBackend(0, 0)
    fake_torch = types.SimpleNamespace(xpu=backend)
    assert du.empty_device_cache("xpu:2", torch_module=fake_torch)
    assert du.empty_device_cache("xpu:0", torch_module=fake_torch)
    assert backend.emptied == [2, 0]
    assert not du.empty_device_cache("cpu", torch_module=fake_torch)
    assert not du.empty_device_cache("npu:0", torch_module=fake_torch)  # backend absent


def test_logged_change_writes_one_line(du, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="distorch"):
        with du.logged_change("test block"):
            data = bytearray(64 << 20)
            del data
    (record,) = [r for r in caplog.records if r.getMessage().startswith("test block: RAM")]
    assert "process" in record.getMessage()


def test_release_freed_ram_runs_here(du):
    import sys

    assert du.release_freed_ram() is sys.platform.startswith("linux")
