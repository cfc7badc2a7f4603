"""The split streams its offloaded layers: with the host's offload streams the test DiT's split
step is measurably faster than with them off (--disable-async-offload), and a profile shows the
host-to-device copies running while kernels run. Two probe runs of tests/host/gpu_stream_probe.py
(one process each). Marked ``gpu``: skipped where there is no CUDA device, a failure under
DISTORCH_REQUIRE_GPU=1."""
import pytest

from gpu_reports import run_probe

pytestmark = [pytest.mark.gpu, pytest.mark.host]
MiB = 2**20
# "Measurably faster": overlapping copies with compute must save at least this share of the step
# (the probe's model and image size make copy and compute times comparable, so overlap can save
# up to about half).
FASTER_BY = 0.10
# Share of the copy time that must run beside kernels with streams on, and the most that may with
# streams off (one stream: copies and kernels cannot overlap; the margin is clock granularity).
OVERLAP_ON, OVERLAP_OFF = 0.25, 0.02


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streams")
    return {setting: run_probe("gpu_stream_probe.py", folder / f"stream-probe-{setting}.json",
                               "--streams", setting, "--device", "cuda:0", timeout=900)
            for setting in ("on", "off")}


def test_the_hosts_offload_streams_stay_on_after_the_splits_stream_check(reports):
    on = reports["on"]
    assert on["num_streams"] > 0, "the stream check turned the host's offload streams off"
    assert on["streams_in_use"] is True


def test_disable_async_offload_leaves_no_stream_in_use(reports):
    off = reports["off"]
    assert off["num_streams"] == 0 and off["streams_in_use"] is False


def test_the_split_step_is_measurably_faster_with_offload_streams(reports):
    on, off = reports["on"]["step_s"], reports["off"]["step_s"]
    assert on <= (1 - FASTER_BY) * off, f"step with streams {on:.4f} s, without {off:.4f} s"


def test_host_to_device_copies_run_while_kernels_run(reports):
    profile = reports["on"]["profile"]
    assert profile["copies"] > 0, "the profile holds no host-to-device copy (is CUPTI recording?)"
    assert profile["overlap_fraction"] >= OVERLAP_ON, (
        f"only {profile['overlap_fraction']:.1%} of the copy time ran beside kernels")


def test_without_streams_the_copies_do_not_overlap_kernels(reports):
    """The overlap figure can tell serial copies from streamed ones (else the test above proves nothing)."""
    profile = reports["off"]["profile"]
    assert profile["copies"] > 0, "the profile holds no host-to-device copy (is CUPTI recording?)"
    assert profile["overlap_fraction"] <= OVERLAP_OFF, f"{profile['overlap_fraction']:.1%} overlap on one stream"


@pytest.mark.parametrize("setting", ["on", "off"])
def test_each_step_copies_the_offloaded_bytes_from_pinned_memory(reports, setting):
    report = reports[setting]
    profile = report["profile"]
    per_forward = profile["htod_bytes"] / report["forwards_profiled"]
    assert report["donors"]["pinned"] == report["donors"]["tensors"] > 0, "CPU donor tensors not pinned"
    assert abs(per_forward - report["offloaded_bytes"]) <= 0.02 * report["offloaded_bytes"] + 16 * MiB, (
        f"{per_forward / MiB:.1f} MiB copied per forward, {report['offloaded_bytes'] / MiB:.1f} MiB offloaded")
    # The latents and the text context are copied from pageable memory too: a few MiB a step.
    assert profile["pageable_htod_bytes"] <= 0.01 * profile["htod_bytes"], (
        f"{profile['pageable_htod_bytes'] / MiB:.1f} MiB of {profile['htod_bytes'] / MiB:.1f} MiB copied from "
        "pageable memory")
