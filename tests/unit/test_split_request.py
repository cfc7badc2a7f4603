"""Node inputs -> split request -> budgets (pure)."""
import pytest

from distorch.logic.allocation import AllocationError
from distorch.logic.planner import ModuleInfo, compute_floor, plan_placement
from distorch.logic.split_request import donor_slot, slot_device, split_request

GiB, MiB = 2**30, 2**20
AVAILABLE = ["cpu", "cuda:0", "cuda:1"]


def test_zero_and_empty_mean_no_split():
    assert split_request("cuda:0", AVAILABLE, 0.0, "cpu", "") is None
    assert split_request("cuda:0", AVAILABLE, 0, "cpu", None) is None
    assert split_request("cuda:0", AVAILABLE, 4.0, "cpu", "0") is None  # the expert '0' wins: no split


def test_simple_form_is_rest_on_compute_and_gib_on_the_donor():
    request = split_request("cuda:0", AVAILABLE, 4.0, "cpu", "")
    assert request.describe() == "cuda:0,*;cpu,4gb"
    assert request.input_name == "virtual_vram_gb/donor_device"
    budgets = request.budgets(10 * GiB)
    assert budgets == {"cuda:0": 6 * GiB, "cpu": 4 * GiB}


def test_rest_on_compute_gets_room_for_what_must_stay_and_two_layers():
    request = split_request("cuda:0", AVAILABLE, 4.0, "cuda:1", "")
    budgets = request.budgets(10 * GiB, floor=(1 * GiB, 100 * MiB))
    assert budgets == {"cuda:0": 6 * GiB + 200 * MiB, "cuda:1": 4 * GiB}
    # More virtual VRAM than the model: the compute device still keeps what must stay there.
    greedy = split_request("cuda:0", AVAILABLE, 64.0, "cpu", "").budgets(10 * GiB, floor=(1 * GiB, 100 * MiB))
    assert greedy["cuda:0"] == 1 * GiB + 200 * MiB


def test_simple_form_donor_is_held_to_its_size_within_two_layers():
    modules = [ModuleInfo(f"block.{i}", 10 * MiB) for i in range(20)]  # 200 MiB
    request = split_request("cuda:0", AVAILABLE, 0.1, "cpu", "")  # 102.4 MiB on the donor
    budgets = request.budgets(200 * MiB, floor=compute_floor(modules))
    plan = plan_placement(modules, "cuda:0", budgets)
    assert 102.4 * MiB - 20 * MiB <= plan.device_bytes["cpu"] <= 102.4 * MiB


def test_donor_that_is_the_compute_device_gets_its_own_slot():
    request = split_request("cpu", ["cpu"], 0.5, "cpu", "")
    assert request.describe() == "cpu,*;cpu,0.5gb"
    budgets = request.budgets(2 * GiB)
    assert budgets == {"cpu": int(1.5 * GiB), "cpu (donor)": GiB // 2}
    assert donor_slot("cpu", "cpu") == "cpu (donor)" and slot_device("cpu (donor)") == "cpu"
    assert donor_slot("cpu", "cuda:0") == "cpu" and slot_device("cuda:1") == "cuda:1"


def test_expert_allocation_overrides_the_simple_inputs():
    request = split_request("cuda:0", AVAILABLE, 4.0, "cpu", "cuda:0,25%;cuda:1,75%")
    assert request.input_name == "allocation" and request.describe() == "cuda:0,25%;cuda:1,75%"
    # shares: the last donor takes whatever the whole layers leave
    assert request.budgets(100 * MiB) == {"cuda:0": 25 * MiB, "cuda:1": 100 * MiB}


def test_fraction_form_uses_the_donor_device_input():
    request = split_request("cuda:0", AVAILABLE, 0.0, "cuda:1", "0.8")
    assert request.budgets(100) == {"cuda:0": 80, "cuda:1": 100}
    same = split_request("cpu", ["cpu"], 0.0, "cpu", "0.25")
    assert same.budgets(100) == {"cpu": 25, "cpu (donor)": 100}


def test_shares_plan_whole_layers_with_the_last_donor_taking_the_remainder():
    modules = [ModuleInfo(f"block.{i}", 10 * MiB) for i in range(10)]
    for text in ("0.5", "cuda:0,50%;cpu,50%", "cuda:0,50%;cuda:1,25%;cpu,25%"):
        request = split_request("cuda:0", AVAILABLE, 0.0, "cpu", text)
        plan = plan_placement(modules, "cuda:0", request.budgets(100 * MiB, floor=compute_floor(modules)))
        assert plan.device_bytes["cuda:0"] == 40 * MiB  # 50 % minus room for one offloaded layer
        assert sum(plan.device_bytes.values()) == 100 * MiB


def test_free_memory_caps_implicit_compute_shares_but_not_explicit_bytes():
    ratio = split_request("cuda:0", AVAILABLE, 0.0, "cpu", "cuda:0,50%;cpu,50%")
    assert ratio.budgets(100 * MiB, compute_room=10 * MiB) == {"cuda:0": 10 * MiB, "cpu": 100 * MiB}
    explicit = split_request("cuda:0", AVAILABLE, 0.0, "cpu", "cuda:0,60mb;cpu,*")
    assert explicit.budgets(100 * MiB, compute_room=10 * MiB)["cuda:0"] == 60 * MiB
    assert ratio.budgets(100 * MiB, compute_room=-5)["cuda:0"] == 0


@pytest.mark.parametrize("compute, vram, donor, allocation, words", [
    ("cuda:0", -1.0, "cpu", "", ["virtual_vram_gb", "-1.0", "0 (no split)"]),
    ("cuda:0", float("nan"), "cpu", "", ["virtual_vram_gb", "nan"]),
    ("cuda:0", "lots", "cpu", "", ["virtual_vram_gb", "'lots'", "GiB"]),
    ("cuda:0", 2.0, "cuda:7", "", ["donor_device", "cuda:7", "Devices here: cpu, cuda:0, cuda:1"]),
    ("cuda:0", 0.0, "cpu", "cuda:3,2gb;cpu,*", ["allocation", "cuda:3", "cpu, cuda:0, cuda:1"]),
    ("cuda:0", 0.0, "cpu", "cuda:1,2gb;cpu,*", ["allocation", "compute device cuda:0 no share", "cuda:0,*"]),
    ("cuda:0", 0.0, "cpu", "cuda:0,2xb;cpu,*", ["allocation", "unknown unit 'xb'"]),
])
def test_errors_name_the_input_the_value_and_what_is_allowed(compute, vram, donor, allocation, words):
    with pytest.raises(AllocationError) as caught:
        split_request(compute, AVAILABLE, vram, donor, allocation)
    for word in words:
        assert word in str(caught.value)
