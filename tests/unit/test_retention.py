"""The retention budget's pure rules: which entries go, and the settings that set it."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def retention(pack_module):
    return pack_module("distorch.logic.retention")


def test_least_recently_used_go_first(retention):
    items = [retention.Retained(k, k, 10, t) for k, t in (("a", 3.0), ("b", 1.0), ("c", 2.0))]
    assert [v.key for v in retention.over_budget(items, 1, 1000)] == ["b", "c"]
    assert [v.key for v in retention.over_budget(items, 5, 25)] == ["b"]
    assert retention.over_budget(items, 3, 30) == []


def test_the_protected_item_goes_last_and_survives_alone_over_the_byte_bound(retention):
    items = [retention.Retained("old", "old", 10, 2.0), retention.Retained("new", "new", 500, 1.0)]
    assert [v.key for v in retention.over_budget(items, 5, 100, protect="new")] == ["old"]
    assert [v.key for v in retention.over_budget(items, 0, 100, protect="new")] == ["old", "new"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0, 100, allow_nan=False)), max_size=7),
       st.integers(0, 8), st.integers(0, 200), st.booleans())
def test_the_victims_are_the_fewest_least_recently_used(retention, raw, max_models, max_bytes, protect_last):
    """Against brute force: what stays is within the bounds (a protected lone item may pass the
    byte bound), and no smaller set of least-recently-used victims would do."""
    items = [retention.Retained(i, str(i), size, used) for i, (size, used) in enumerate(raw)]
    protect = items[-1].key if items and protect_last else None
    victims = retention.over_budget(items, max_models, max_bytes, protect)
    kept = [i for i in items if i not in victims]

    def fits(rest):
        lone_protected = len(rest) == 1 and rest[0].key == protect
        return len(rest) <= max_models and (sum(i.size_bytes for i in rest) <= max_bytes or lone_protected)

    assert fits(kept)
    order = sorted(items, key=lambda i: (i.key == protect, i.last_used))
    assert victims == order[:len(victims)], "victims are taken in LRU order, protected last"
    if victims:
        assert not fits([i for i in items if i not in victims[:-1]]), "one victim fewer would do"


def test_owners_release_only_what_no_one_else_holds(retention):
    held = retention.RetainedModels(clock=iter(range(100)).__next__)
    held.put("k1", ("m1",))
    assert held.claim("A", "k1") == [] and held.claim("B", "k1") == []
    held.put("k2", ("m2",))
    assert held.claim("A", "k2") == []      # B still holds k1
    assert held.claim("B", "k2") == [("k1", ("m1",))]
    assert held.keys() == ["k2"]
    assert held.claim("A", None) == [] and held.claim("B", None) == [("k2", ("m2",))]
    assert len(held) == 0


def test_letting_go_of_one_output_leaves_an_incomplete_entry(retention):
    """The per-model unload takes one output out of a held load: a load left with other outputs
    is incomplete (never handed to a loader again, smaller), one left with nothing is gone."""
    held = retention.RetainedModels(clock=iter(range(100)).__next__)
    held.put("checkpoint", ("unet", "clip", "vae"), size_bytes=300)
    held.put("vae-only", ("vae",), size_bytes=100)
    held.claim("A", "checkpoint")
    held.claim("B", "vae-only")
    dropped = held.without(lambda output: output == "vae", lambda output: 100)
    assert sorted(dropped) == [("checkpoint", "vae"), ("vae-only", "vae")]
    assert held.keys() == ["checkpoint"]
    (item,) = held.items()
    assert item.size_bytes == 200
    assert held.get("checkpoint") is None, "a loader must not get a load with a part missing"
    assert held.all_outputs() == [("unet", "clip", None)], "the rest stays held (and listed)"
    assert held.without(lambda output: output == "vae", lambda output: 100) == []
    assert held.claim("B", None) == [], "B's load is gone already"
    assert held.pop_incomplete("checkpoint") == ("unet", "clip", None)
    assert len(held) == 0 and held.claim("A", None) == []
    held.put("complete", ("unet",))
    assert held.pop_incomplete("complete") is None and held.get("complete") == ("unet",)


def test_budget_settings_from_the_environment(retention):
    assert retention.budget_from_environment({}) == retention.RetentionBudget()
    budget = retention.budget_from_environment({"DISTORCH_RETAIN_MAX_MODELS": "3", "DISTORCH_RETAIN_RAM_PERCENT": "20"})
    assert (budget.max_models, budget.ram_percent, budget.source) == (3, 20.0, "environment")
    with pytest.raises(retention.BudgetError, match="DISTORCH_RETAIN_MAX_MODELS='three' is not a whole number"):
        retention.budget_from_environment({"DISTORCH_RETAIN_MAX_MODELS": "three"})
    with pytest.raises(retention.BudgetError, match="DISTORCH_RETAIN_RAM_PERCENT: ram_percent must be a number from 0 to 100"):
        retention.budget_from_environment({"DISTORCH_RETAIN_RAM_PERCENT": "150"})
    with pytest.raises(retention.BudgetError, match="max_models must be a whole number"):
        retention.RetentionBudget(True, 10)
