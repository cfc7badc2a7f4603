"""The figures the GPU probes and bench_split.py compute from what they measure (bench/gpu_figures.py):
the copy / kernel overlap of a profile, and where a plan's bytes are."""
import sys
import types

import hostenv

sys.path.insert(0, str(hostenv.REPO_ROOT / "bench"))
import gpu_figures  # noqa: E402

MiB = 2**20


def kernel(ts, dur, stream=7):
    return {"ph": "X", "cat": "kernel", "name": "gemm", "ts": ts, "dur": dur, "args": {"stream": stream}}


def copy(ts, dur, stream=13, size=MiB, source="Pinned"):
    return {"ph": "X", "cat": "gpu_memcpy", "name": f"Memcpy HtoD ({source} -> Device)", "ts": ts, "dur": dur,
            "args": {"stream": stream, "bytes": size}}


def test_copies_on_a_side_stream_during_kernels_count_as_overlapped():
    events = [kernel(0, 100), kernel(100, 100), copy(50, 40), copy(180, 40)]
    figures = gpu_figures.copy_kernel_overlap(events)
    assert figures["copies"] == 2 and figures["copy_us"] == 80
    # The first copy lies inside a kernel; the second runs 20 us beside one and 20 us after both.
    assert figures["overlapped_copy_us"] == 60 and figures["overlap_fraction"] == 0.75
    assert figures["kernel_busy_us"] == 200


def test_copies_serialised_with_the_kernels_on_one_stream_overlap_nothing():
    events = [kernel(0, 100, stream=7), copy(100, 50, stream=7), kernel(150, 100, stream=7)]
    figures = gpu_figures.copy_kernel_overlap(events)
    assert figures["overlapped_copy_us"] == 0 and figures["overlap_fraction"] == 0


def test_a_kernel_on_the_copys_own_stream_is_not_overlap_even_if_timestamps_touch():
    events = [kernel(0, 100, stream=13), copy(50, 100, stream=13), kernel(120, 10, stream=7)]
    assert gpu_figures.copy_kernel_overlap(events)["overlapped_copy_us"] == 10


def test_overlapping_kernels_on_several_streams_are_counted_once():
    events = [kernel(0, 100, stream=7), kernel(20, 100, stream=8), copy(0, 200, stream=13)]
    assert gpu_figures.copy_kernel_overlap(events)["overlapped_copy_us"] == 120


def test_bytes_are_split_by_source_and_other_events_ignored():
    events = [copy(0, 10, size=100 * MiB), copy(20, 10, size=MiB, source="Pageable"),
              {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pinned)", "ts": 40, "dur": 10,
               "args": {"bytes": 5 * MiB}},
              {"ph": "X", "cat": "cpu_op", "name": "aten::copy_", "ts": 0, "dur": 500},
              {"ph": "i", "cat": "kernel", "name": "instant", "ts": 3}]
    events.append(copy(60, 10, size=2 * MiB, source="Unknown"))
    figures = gpu_figures.copy_kernel_overlap(events)
    assert figures["htod_bytes"] == 103 * MiB and figures["pinned_htod_bytes"] == 100 * MiB
    assert figures["pageable_htod_bytes"] == MiB and figures["kernels"] == 0


def test_a_profile_without_copies_has_no_overlap_fraction():
    figures = gpu_figures.copy_kernel_overlap([kernel(0, 10)])
    assert figures["copies"] == 0 and figures["overlap_fraction"] is None


def test_planned_bytes_fold_donor_slots_into_their_device():
    plan = types.SimpleNamespace(device_bytes={"cuda:0": 10, "cuda:0 (donor)": 5, "cpu": 7, "cuda:1": 0})
    slot_device = lambda slot: slot.removesuffix(" (donor)")  # noqa: E731 (distorch/logic/split_request.py's rule)
    assert gpu_figures.planned_bytes_by_device(plan, slot_device) == {"cuda:0": 15, "cpu": 7}


def test_placed_bytes_and_pinning_read_the_tensors_themselves():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    plan = types.SimpleNamespace(assignment={"0": "cuda:0", "1": "cpu"})
    assert gpu_figures.placed_bytes(model, plan) == {"cpu": (16 + 4 + 8 + 2) * 4}
    pinning = gpu_figures.donor_pinning(model, {"1": "cpu"})
    assert pinning == {"tensors": 2, "pinned": 0, "unpinned_examples": ["1.weight", "1.bias"]}
    assert gpu_figures.largest_offloaded_module(model, {"0": "cpu", "1": "cpu"}) == 20 * 4


def test_synthetic_conditioning_has_each_familys_shapes_and_is_seeded():
    import torch

    positive, negative = gpu_figures.synthetic_conditioning(torch, "flux", context_tokens=8)
    assert positive[0][0].shape == (1, 8, 4096) and positive[0][1]["pooled_output"].shape == (1, 768)
    assert positive[0][1]["guidance"] == 3.5 and not torch.equal(positive[0][0], negative[0][0])
    again, _ = gpu_figures.synthetic_conditioning(torch, "flux", context_tokens=8)
    assert torch.equal(positive[0][0], again[0][0])
    sd15, _ = gpu_figures.synthetic_conditioning(torch, "sd15")
    assert sd15[0][0].shape == (1, 77, 768) and sd15[0][1] == {}
    assert gpu_figures.empty_latent(torch, "flux", 1024)["samples"].shape == (1, 16, 128, 128)
