"""The preview's "why" line: why the compute device keeps another share than requested."""
from distorch.logic.planner import ModuleInfo, plan_placement
from distorch.logic.split_request import requested_bytes, share_explanation, split_request

MIB = 2**20


def layers(count: int, size: int = 10 * MIB) -> list[ModuleInfo]:
    return [ModuleInfo(f"block.{i}", size) for i in range(count)]


def explain(modules, allocation: str, room: int | None = None, in_flight: int = 1) -> tuple[str, dict]:
    request = split_request("cpu", ["cpu", "cuda:0"], allocation=allocation)
    total = sum(m.bytes for m in modules)
    budgets = request.budgets(total, room, (0, max(m.bytes for m in modules)), in_flight)
    plan = plan_placement(modules, "cpu", budgets, tiny_bytes=0, in_flight=in_flight)
    asked = requested_bytes(request, total)["cpu"]
    return share_explanation("cpu", asked, plan.device_bytes["cpu"], total, budgets["cpu"], plan.reserve_bytes,
                             0, in_flight), plan.device_bytes


def test_a_fraction_keeps_room_for_the_layer_in_flight_and_says_so():
    # 10 layers of 10 MiB, 80 % asked: 70 MiB kept + 10 MiB free to run an offloaded layer
    why, held = explain(layers(10), "0.8")
    assert held["cpu"] == 70 * MIB
    assert why == "80% requested on cpu, 70% kept: 10% reserved to run the offloaded layers (one at a time)"


def test_whole_layers_account_for_the_rest():
    # 85 % of 100 MiB = 85 MiB budget: 70 MiB of layers + 10 MiB room; the 5 MiB left cannot hold a layer
    why, _ = explain(layers(10), "0.85")
    assert why == ("85% requested on cpu, 70% kept: 10% reserved to run the offloaded layers (one at a time), "
                   "5% because layers move whole (the next one did not fit)")


def test_more_layers_in_flight_reserve_more():
    why, held = explain(layers(10), "0.8", in_flight=3)
    assert held["cpu"] == 50 * MIB
    assert "30% reserved to run the offloaded layers (up to 3 at once)" in why


def test_free_memory_below_the_request_is_named():
    why, held = explain(layers(10), "0.8", room=40 * MIB)
    assert held["cpu"] == 30 * MIB
    assert why.startswith("80% requested on cpu, 30% kept: 40% more than cpu has free after ComfyUI's reserve, "
                          "10% reserved")


def test_a_rest_share_keeps_more_when_the_donor_takes_whole_layers_only():
    # cpu,* with 25 MiB on the donor: the donor takes two whole layers (20 MiB), so 80 % stays
    why, held = explain(layers(10), "cpu,*;cuda:0,25mb")
    assert held == {"cpu": 80 * MIB, "cuda:0": 20 * MIB}
    assert why == "75% requested on cpu, 80% kept: the donors take at most what they were given, and layers move whole"


def test_a_donor_given_less_than_the_room_kept_for_streamed_layers_gets_nothing_and_the_line_says_so():
    # cpu,* with 15 MiB on the donor: cpu keeps room for 2 layers of 10 MiB (one in flight, one
    # because layers are whole), so its budget (85 + 20 MiB) holds the whole model
    why, held = explain(layers(10), "cpu,*;cuda:0,15mb")
    assert held == {"cpu": 100 * MIB}
    assert why == ("85% requested on cpu, 100% kept: nothing moved, as cpu keeps room to run the layers it would "
                   "stream in (20% of the model), more than the 15% the donors were given; give them more")


def test_pinned_modules_above_the_request_are_named():
    assert share_explanation("cuda:0", 10, 30, 100, 10, 0, 30) == (
        "10% requested on cuda:0, 30% kept: embeddings, norms and small modules (30%) always stay on the compute device")


def test_no_line_when_the_share_is_what_was_asked():
    # agreeing to the percent: nothing to explain
    assert share_explanation("cpu", 70 * MIB, 70 * MIB + 1000, 100 * MIB, 90 * MIB, 10 * MIB, 0) == ""
    assert share_explanation("cpu", 0, 0, 0, 0, 0, 0) == ""
