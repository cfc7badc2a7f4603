import pytest
from hypothesis import given, strategies as st

from distorch.logic.devices import DeviceNameError, canonical_device, device_names


def test_names_for_every_backend():
    names = device_names({"cuda": 2, "xpu": 1, "npu": 1, "mlu": 1, "directml": 1}, has_mps=True)
    assert names == ["cpu", "cuda:0", "cuda:1", "xpu:0", "npu:0", "mlu:0", "directml:0", "mps"]


def test_cpu_only_machine():
    assert device_names({}) == ["cpu"]


@pytest.mark.parametrize("text, expected", [
    ("cpu", "cpu"), (" CPU ", "cpu"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1"), ("mps", "mps"),
    ("mlu:0", "mlu:0"), ("directml", "directml:0"), ("npu:0", "npu:0"),
])
def test_parse_canonical_names(text, expected):
    available = device_names({"cuda": 2, "mlu": 1, "directml": 1, "npu": 1}, has_mps=True)
    assert canonical_device(text, available) == expected


@pytest.mark.parametrize("text, fragment", [
    ("cuda:7", "not present on this machine"),
    ("mps", "not present on this machine"),
    ("gpu", "is not a device name"),
    ("cuda:-1", "is not a device name"),
    ("cpu:0", "takes no index"),
    ("", "is not a device name"),
])
def test_bad_names_say_what_exists(text, fragment):
    with pytest.raises(DeviceNameError) as caught:
        canonical_device(text, ["cpu", "cuda:0"], "compute_device")
    message = str(caught.value)
    assert message.startswith("compute_device:") and fragment in message
    assert "cpu" in message


@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(text):
    available = ["cpu", "cuda:0", "mps"]
    try:
        assert canonical_device(text, available) in available
    except DeviceNameError as error:
        assert str(error)
