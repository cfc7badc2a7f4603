import pytest
from hypothesis import given, strategies as st

from distorch.logic.planner import ModuleInfo, PlanError, plan_placement

MiB = 2**20


def layers(*sizes_mib, kind="layer"):
    return [ModuleInfo(f"block.{i}", int(size * MiB), kind) for i, size in enumerate(sizes_mib)]


def test_exact_fit_needs_no_reserve():
    plan = plan_placement(layers(10, 10, 5, 15), "cuda:0", {"cuda:0": 40 * MiB, "cpu": 0})
    assert set(plan.assignment.values()) == {"cuda:0"} and plan.reserve_bytes == 0


def test_everything_fits_on_the_compute_device():
    plan = plan_placement(layers(10, 10, 10), "cuda:0", {"cuda:0": 100 * MiB, "cpu": 100 * MiB})
    assert set(plan.assignment.values()) == {"cuda:0"}
    assert plan.reserve_bytes == 0


def test_leading_layers_stay_and_room_is_kept_for_the_largest_offloaded_one():
    # 36 MiB: block.0 + block.1 (20) + room for block.3 (15) = 35 fits; adding block.2 would need 45
    plan = plan_placement(layers(10, 10, 5, 15), "cuda:0", {"cuda:0": 36 * MiB, "cpu": 100 * MiB})
    assert plan.modules_on("cuda:0") == ["block.0", "block.1"]
    assert plan.modules_on("cpu") == ["block.2", "block.3"]
    assert plan.reserve_bytes == 15 * MiB
    assert plan.device_bytes == {"cuda:0": 20 * MiB, "cpu": 20 * MiB}


def test_embeddings_norms_and_tiny_modules_stay_on_compute():
    modules = [ModuleInfo("embed", 50 * MiB, "embedding"), ModuleInfo("norm", 1024, "norm"),
               ModuleInfo("bias_only", 4096)] + layers(30, 30)
    plan = plan_placement(modules, "cuda:0", {"cuda:0": 90 * MiB, "cpu": 100 * MiB})
    assert {"embed", "norm", "bias_only"} <= set(plan.modules_on("cuda:0"))
    assert plan.modules_on("cpu") == ["block.0", "block.1"]


def test_donors_fill_in_the_order_given():
    plan = plan_placement(layers(10, 10, 10, 10), "cuda:0",
                          {"cuda:0": 20 * MiB, "cuda:1": 10 * MiB, "cpu": 100 * MiB})
    assert plan.modules_on("cuda:0") == ["block.0"]
    assert plan.modules_on("cuda:1") == ["block.1"]
    assert plan.modules_on("cpu") == ["block.2", "block.3"]


def test_over_budget_names_the_shortfall():
    with pytest.raises(PlanError, match=r"2 modules \(20.0 MiB\) have no room"):
        plan_placement(layers(10, 10, 10, 10), "cuda:0", {"cuda:0": 20 * MiB, "cpu": 10 * MiB})


def test_compute_budget_too_small_to_run_an_offloaded_layer():
    with pytest.raises(PlanError, match="no room to run offloaded layers"):
        plan_placement(layers(30), "cuda:0", {"cuda:0": 10 * MiB, "cpu": 100 * MiB})


def test_streams_reserve_room_for_each_layer_in_flight():
    model = layers(10, 10, 10, 10, 5, 15)  # 60 MiB
    budgets = {"cuda:0": 58 * MiB, "cpu": 100 * MiB}
    # Three layers in flight (2 offload streams + the running one): 3 x 15 MiB must stay free.
    plan = plan_placement(model, "cuda:0", budgets, in_flight=3)
    assert plan.modules_on("cuda:0") == ["block.0"] and plan.reserve_bytes == 45 * MiB
    # With synchronous copies the same budget keeps more, with room for one 15 MiB layer.
    plan = plan_placement(model, "cuda:0", budgets)
    assert plan.modules_on("cuda:0") == ["block.0", "block.1", "block.2", "block.3"]
    assert plan.reserve_bytes == 15 * MiB


def test_a_model_that_fits_whole_needs_no_room_for_layers_in_flight():
    plan = plan_placement(layers(2, 2), "cuda:0", {"cuda:0": 4 * MiB, "cpu": 0}, in_flight=3)
    assert plan.modules_on("cuda:0") == ["block.0", "block.1"] and plan.reserve_bytes == 0


def test_table_lists_each_device():
    plan = plan_placement(layers(10, 10, 5, 15), "cuda:0", {"cuda:0": 36 * MiB, "cpu": 100 * MiB})
    table = plan.table()
    assert "cuda:0" in table and "cpu" in table and "to run offloaded layers: 15.0 MiB" in table


@given(st.lists(st.integers(1, 64), min_size=1, max_size=30), st.integers(0, 2048), st.integers(0, 2048),
       st.integers(1, 4))
def test_plans_are_complete_and_within_budget(sizes, compute_mib, donor_mib, in_flight):
    modules = layers(*sizes)
    budgets = {"cuda:0": compute_mib * MiB, "cpu": donor_mib * MiB}
    try:
        plan = plan_placement(modules, "cuda:0", budgets, tiny_bytes=0, in_flight=in_flight)
    except PlanError:
        # Greedy packing may refuse a tight fit, but never a model the compute device holds whole.
        assert sum(sizes) > compute_mib
        return
    assert set(plan.assignment) == {m.name for m in modules}
    for device, held in plan.device_bytes.items():
        assert held == sum(m.bytes for m in modules if plan.assignment[m.name] == device)
        assert held <= budgets[device]
    assert plan.device_bytes["cuda:0"] + plan.reserve_bytes <= budgets["cuda:0"]
    # The run kept is the longest that fits with room for the layers after it (checked by brute force).
    kept = len(plan.modules_on("cuda:0"))
    for longer in range(kept + 1, len(sizes) + 1):
        room = in_flight * max(sizes[longer:], default=0)
        assert sum(sizes[:longer]) + room > compute_mib, (kept, longer)
