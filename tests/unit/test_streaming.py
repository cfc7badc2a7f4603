"""Start-up check of asynchronous copies: a no-op off CUDA; a failed check turns the host's offload
streams off, recorded and restorable; on CUDA (marked gpu) it must pass."""
import pytest
import torch

from distorch.host import transfer_checks as streaming


def test_no_cuda_compute_needs_no_check(mm, monkeypatch):
    monkeypatch.setattr(mm, "NUM_STREAMS", 2)
    checks = streaming.TransferChecks()
    assert checks.check_streams("cpu", mm) is False
    assert mm.NUM_STREAMS == 2 and checks.streams_in_use == {}  # nothing of the host changed


def test_a_failed_stream_check_turns_streams_off_once_and_restore_brings_them_back(mm, monkeypatch, caplog):
    """No CUDA here: the copy check's verdict is injected (what a broken driver answers), the
    host module is the real one."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(streaming, "stream_copy_works", lambda device: calls.append(device) or (False, "injected"))
    monkeypatch.setattr(mm, "NUM_STREAMS", 2)
    checks = streaming.TransferChecks()
    with caplog.at_level("WARNING", logger="distorch"):
        assert checks.check_streams("cuda:0", mm) is False
        assert checks.check_streams("cuda:0", mm) is False  # checked once per device
    assert mm.NUM_STREAMS == 0 and len(calls) == 1
    assert len([r for r in caplog.records if "side-stream copies to cuda:0 failed" in r.getMessage()]) == 1
    checks.restore()
    assert mm.NUM_STREAMS == 2 and checks.streams_in_use == {}
    checks.restore()  # nothing left to undo
    assert mm.NUM_STREAMS == 2


def test_the_planner_reads_num_streams_after_the_stream_check(mm, monkeypatch):
    """A failed check sets NUM_STREAMS to 0 before the plan reads it: room for one layer in flight,
    not NUM_STREAMS + 1."""
    from distorch.logic.planner import ModuleInfo
    from distorch.logic.split_request import split_request
    from distorch.host.split_loaded import plan_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(streaming, "stream_copy_works", lambda device: (False, "injected"))
    monkeypatch.setattr(mm, "NUM_STREAMS", 2)
    modules = [ModuleInfo(f"blocks.{i}", 4 * 2**20) for i in range(8)]
    request = split_request("cuda:0", ["cpu", "cuda:0"], 0, "cpu", "cuda:0,20mb;cpu,32mb")
    checks = streaming.TransferChecks()
    plan = plan_for(modules, request, None, checks)
    assert mm.NUM_STREAMS == 0
    assert plan.reserve_bytes == 4 * 2**20 and len(plan.modules_on("cuda:0")) == 4  # one 4 MiB layer in flight
    checks.restore()
    assert mm.NUM_STREAMS == 2
    with_streams = plan_for(modules, request, None)  # a preview: no check, NUM_STREAMS as it is
    assert with_streams.reserve_bytes == 3 * 4 * 2**20 and len(with_streams.modules_on("cuda:0")) == 2


@pytest.mark.gpu
def test_side_stream_copy_round_trips_on_cuda(mm):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ok, why = streaming.stream_copy_works(torch.device("cuda:0"))
    assert ok, why
    streams = mm.NUM_STREAMS
    checks = streaming.TransferChecks()
    assert checks.check_streams("cuda:0", mm) is (streams > 0) and mm.NUM_STREAMS == streams
