"""Start-up check of asynchronous copies: a no-op off CUDA; on CUDA (marked gpu) it must pass."""
import types

import pytest
import torch

from distorch import streaming


def test_no_cuda_compute_needs_no_check():
    host = types.SimpleNamespace(NUM_STREAMS=2, MAX_PINNED_MEMORY=1)
    assert streaming.check_transfers("cpu", ["cpu"], host) is False
    assert host.NUM_STREAMS == 2  # nothing of the host changed


@pytest.mark.gpu
def test_side_stream_copy_round_trips_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ok, why = streaming.stream_copy_works(torch.device("cuda:0"))
    assert ok, why
    host = types.SimpleNamespace(NUM_STREAMS=2, MAX_PINNED_MEMORY=1)
    assert streaming.check_transfers("cuda:0", ["cpu"], host) is True and host.NUM_STREAMS == 2
