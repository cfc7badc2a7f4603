import pytest
from hypothesis import given, strategies as st

from distorch.logic.allocation import UNITS, AllocationError, parse_allocation

AVAILABLE = ["cpu", "cuda:0", "cuda:1", "mps", "mlu:0", "directml:0"]
GiB = 1024 ** 3


def parse(text):
    return parse_allocation(text, AVAILABLE)


@pytest.mark.parametrize("text", ["", "   ", "0", "0.0", None])
def test_empty_or_zero_means_no_split(text):
    assert parse(text) is None


def test_bytes_form_with_rest():
    allocation = parse("cuda:0,2.5gb;cuda:1,3.0g;cpu,*")
    assert allocation.form == "bytes"
    assert allocation.budgets(10 * GiB, "cuda:0") == {"cuda:0": int(2.5 * GiB), "cuda:1": 3 * GiB,
                                                     "cpu": 10 * GiB - int(5.5 * GiB)}


@pytest.mark.parametrize("unit, factor", [("b", 1), ("k", 1024), ("KB", 1024), ("kib", 1024), ("m", 2**20),
                                          ("MiB", 2**20), ("g", GiB), ("GB", GiB), ("t", 1024 * GiB)])
def test_units_are_binary_and_case_insensitive(unit, factor):
    assert parse(f"cpu,2{unit}").budgets(0, "cpu") == {"cpu": 2 * factor}


def test_ratio_form():
    allocation = parse("cuda:0,25%;cpu,75%")
    assert allocation.form == "ratio"
    assert allocation.budgets(400, "cuda:0") == {"cuda:0": 100, "cpu": 300}


def test_ratio_with_rest():
    assert parse("cuda:0,30%;cpu,*").budgets(1000, "cuda:0") == {"cuda:0": 300, "cpu": 700}


def test_legacy_fraction():
    allocation = parse("0.8")
    assert allocation.form == "fraction" and allocation.fraction == 0.8
    assert allocation.budgets(1000, "cuda:0", "cpu") == {"cuda:0": 800, "cpu": 200}
    with pytest.raises(AllocationError, match="donor"):
        allocation.budgets(1000, "cuda:0")


@pytest.mark.parametrize("device", ["mps", "mlu:0", "directml:0", "MPS", "directml"])
def test_device_names_with_unit_letters_are_devices(device):
    allocation = parse(f"{device},1gb;cpu,*")
    assert allocation.shares[0].device == device.lower().replace("directml", "directml:0").replace(":0:0", ":0")
    assert allocation.shares[0].amount == GiB


@pytest.mark.parametrize("text, fragment, token", [
    ("cuda:0,2.5xb;cpu,*", "unknown unit 'xb'", "2.5xb"),
    ("cuda:0,2.5;cpu,*", "has no unit", "2.5"),
    ("cuda:0,lots", "is not an amount", "lots"),
    ("cuda:7,1gb", "not present on this machine", "cuda:7"),
    ("gpu,1gb", "is not a device name", "gpu"),
    ("cuda:0,1gb;cuda:0,2gb", "appears twice", "cuda:0,2gb"),
    ("cuda:0", "not a fraction", "cuda:0"),
    ("cuda:0;cpu,*", "missing ',amount'", "cuda:0"),
    ("1.5", "at most 1", "1.5"),
    ("cuda:0,120%", "above 100", "120%"),
])
def test_errors_point_at_the_token(text, fragment, token):
    with pytest.raises(AllocationError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith("allocation:") and fragment in message and f"('{token}')" in message
    position = int(message.split("at character ")[1].split(" ")[0]) - 1
    assert text[position:].startswith(token)


@pytest.mark.parametrize("text, fragment", [
    ("cuda:0,1gb;cpu,50%", "mixes byte sizes and percentages"),
    ("cuda:0,*;cpu,*", "'*' (the rest) 2 times"),
    ("cuda:0,25%;cpu,50%", "add up to 75%"),
    ("cuda:0,60%;cpu,60%", "add up to 120%"),
])
def test_whole_string_errors(text, fragment):
    with pytest.raises(AllocationError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        parse(text)


# ---- properties -------------------------------------------------------------------------------


@given(st.lists(st.integers(1, 100), min_size=1, max_size=4).filter(lambda xs: sum(xs) <= 100))
def test_ratio_budgets_cover_the_model(percents):
    devices = AVAILABLE[: len(percents)]
    text = ";".join(f"{d},{p}%" for d, p in zip(devices, percents)) + ("" if sum(percents) == 100 else ";directml:0,*")
    allocation = parse(text)
    budgets = allocation.budgets(10**9, devices[0])
    assert abs(sum(budgets.values()) - 10**9) <= len(budgets)


@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_fails_clearly(text):
    try:
        parse(text)
    except AllocationError as error:
        assert str(error).startswith("allocation:")


@given(st.sampled_from(["mps", "mlu:0", "directml:0"]), st.integers(1, 999), st.sampled_from(["m", "mb", "g", "gb"]))
def test_unit_letters_in_device_names_never_change_the_amount(device, number, unit):
    share = parse(f"{device},{number}{unit}").shares[0]
    assert share.device == device and share.amount == number * UNITS[unit]
