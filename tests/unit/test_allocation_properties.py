"""Property tests: the allocation grammar and the split request against arbitrary input.

For any text the parser returns a valid allocation (or None, "no split") or raises ONE
AllocationError whose message names the input and, where a token is at fault, points at it
("at character N ('token')" with the token really at N). Never another exception type: the
node's VALIDATE_INPUTS and the /distorch/plan route only turn ValueErrors into messages.
"""
import math
import re
from decimal import Decimal

from hypothesis import example, given, settings, strategies as st

from distorch.logic.allocation import UNITS, Allocation, AllocationError, parse_allocation
from distorch.logic.split_request import GIB, SplitRequest, split_request

AVAILABLE = ["cpu", "cuda:0", "cuda:1", "xpu:0", "npu:0", "mlu:0", "directml:0", "mps"]
# Names a user may write for them (case and the index-less forms the parser accepts).
SPELLINGS = {"cpu": ["cpu", "CPU", " cpu"], "cuda:0": ["cuda:0", "cuda", "CUDA:0"], "cuda:1": ["cuda:1"],
             "xpu:0": ["xpu", "xpu:0"], "npu:0": ["npu:0", "npu", "NPU:0"], "mlu:0": ["mlu", "mlu:0", "MLU"],
             "directml:0": ["directml", "directml:0", "DirectML:0"], "mps": ["mps", "MPS", "mps "]}
SETTINGS = settings(max_examples=300, deadline=None)


def plain(value: float) -> str:
    """A float as digits without an exponent (the grammar has none), exact."""
    return format(Decimal(repr(value)), "f")


def located(message: str, raw: str):
    """(position, token) when the message points at a token of ``raw``, else None."""
    match = re.search(r" at character (\d+) \('(.*)'\) of '" + re.escape(raw) + r"'\. Write", message, re.S)
    return (int(match.group(1)) - 1, match.group(2)) if match else None


def outcome(text, available=AVAILABLE, input_name="allocation"):
    """Parse; an AllocationError is checked for a clear message and returned. Any other exception
    propagates and fails the test."""
    try:
        result = parse_allocation(text, available, input_name)
    except AllocationError as error:
        message = str(error)
        assert message.startswith(f"{input_name}: "), message
        where = located(message, "" if text is None else str(text))
        if where is not None:
            position, token = where
            assert str(text)[position:].startswith(token), (message, position, token)
        return error
    assert_valid(result, available)
    return result


def assert_valid(result, available=AVAILABLE):
    if result is None:
        return
    assert isinstance(result, Allocation)
    if result.form == "fraction":
        assert 0 < result.fraction <= 1 and result.shares == ()
        return
    assert result.form in ("bytes", "ratio") and result.shares, result
    devices = [share.device for share in result.shares]
    assert len(set(devices)) == len(devices) and set(devices) <= set(available)
    kinds = [share.kind for share in result.shares]
    assert kinds.count("rest") <= 1
    if result.form == "bytes":
        assert "percent" not in kinds
        for share in result.shares:
            if share.kind == "bytes":
                assert math.isfinite(share.amount) and share.amount >= 0 and share.amount == int(share.amount)
    else:
        assert "bytes" not in kinds
        total = sum(share.amount for share in result.shares if share.kind == "percent")
        assert all(0 <= share.amount <= 100 for share in result.shares)
        assert total <= 100.0001 and ("rest" in kinds or abs(total - 100) <= 0.0001)


# ---- generators ---------------------------------------------------------------------------
GRAMMAR_CHARS = "cpudamlxnirtsgkbKGBM0123456789.,;:%* \t-+eE"
device_tokens = st.one_of(
    st.sampled_from([s for spellings in SPELLINGS.values() for s in spellings]),
    st.sampled_from(["gpu", "cuda:7", "cpu:0", "mps:0", "cuda:-1", "cuda:00", "", " ", "directml:x", "m", "gb"]),
    st.text(alphabet=GRAMMAR_CHARS, max_size=8),
)
numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e4, allow_nan=False).map(lambda x: f"{x:.4f}"),
    st.sampled_from(["", ".5", "5.", "1e3", "-1", "9" * 400, "0" * 50 + "1", "1" + "0" * 320, "nan", "inf"]),
)
units = st.one_of(st.sampled_from(sorted(UNITS)), st.sampled_from(["", "%", "x", "gbb", "mps", "mlu", "MiB ", " g"]),
                  st.text(alphabet="kmgtbi%", max_size=3))
amount_tokens = st.one_of(st.just("*"), st.builds(lambda n, u: n + u, numbers, units),
                          st.text(alphabet=GRAMMAR_CHARS, max_size=6))
entries = st.builds(lambda d, sep, a: f"{d}{sep}{a}", device_tokens, st.sampled_from([",", ", ", " , ", "", ",,"]),
                    amount_tokens)
grammar_texts = st.builds(lambda es, sep, tail: sep.join(es) + tail, st.lists(entries, min_size=1, max_size=4),
                          st.sampled_from([";", "; ", " ;"]), st.sampled_from(["", ";", " ", ";;"]))


@st.composite
def valid_bytes_texts(draw):
    """A valid bytes-form string and the bytes each device must get (binary units)."""
    devices = draw(st.lists(st.sampled_from(AVAILABLE), min_size=1, max_size=5, unique=True))
    rest = draw(st.sampled_from([None, *range(len(devices))]))
    parts, expected = [], {}
    for index, device in enumerate(devices):
        spelling = draw(st.sampled_from(SPELLINGS[device]))
        if index == rest:
            parts.append(f"{spelling},*")
            expected[device] = None
            continue
        number = draw(st.integers(0, 4096))
        unit = draw(st.sampled_from(sorted(UNITS)))
        case = draw(st.sampled_from([str.lower, str.upper]))
        parts.append(f"{spelling},{number}{draw(st.sampled_from(['', ' ']))}{case(unit)}")
        expected[device] = number * UNITS[unit]
    return ";".join(parts), expected


@st.composite
def mutated(draw):
    """A valid string with one character inserted, deleted or replaced."""
    text = draw(st.one_of(valid_bytes_texts().map(lambda pair: pair[0]),
                          st.sampled_from(["cuda:0,25%;cpu,75%", "mps,30%;cpu,*", "0.8", "directml,1.5gb;cpu,*",
                                           "npu:0,512mb;mlu:0,*", "cuda:1,2.5g;cuda:0,3.0gib;cpu,*"])))
    index = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(GRAMMAR_CHARS + "é\x00\n'\\"))
    how = draw(st.sampled_from(["insert", "delete", "replace"]))
    if how == "insert":
        return text[:index] + char + text[index:]
    if how == "delete":
        return text[:index] + text[index + 1:]
    return text[:index] + char + text[index + 1:]


# ---- properties: any input ----------------------------------------------------------------
@SETTINGS
@given(st.one_of(st.text(max_size=60), st.text(alphabet=GRAMMAR_CHARS, max_size=60)))
@example("cpu,1" + "0" * 400 + "gb")  # overflowed to an OverflowError (inf bytes)
@example(";")                           # no entry at all: split_request then hit an IndexError
@example(" ; ;")
@example("cpu, lots")                   # the error pointed at the space, not at 'lots'
def test_any_text_parses_or_fails_with_one_located_error(text):
    outcome(text)


@SETTINGS
@given(grammar_texts)
def test_near_grammar_text_parses_or_fails_with_one_located_error(text):
    outcome(text)


@SETTINGS
@given(mutated())
def test_one_mutation_of_a_valid_string_parses_or_fails_with_one_located_error(text):
    outcome(text)


@SETTINGS
@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=8)), st.sampled_from(["allocation", "modes.a.allocation"]))
def test_non_text_values_are_read_as_text(value, input_name):
    outcome(value, input_name=input_name)


# ---- properties: round trips and units ----------------------------------------------------
@SETTINGS
@given(valid_bytes_texts(), st.integers(0, 2**45))
def test_valid_bytes_form_gives_the_binary_sizes_written(case, model_bytes):
    text, expected = case
    allocation = outcome(text)
    assert isinstance(allocation, Allocation) and allocation.form == "bytes"
    assert [s.device for s in allocation.shares] == list(expected)
    written = {s.device: s.amount for s in allocation.shares if s.kind == "bytes"}
    assert written == {d: b for d, b in expected.items() if b is not None}
    budgets = allocation.budgets(model_bytes, "cpu")
    assert list(budgets) == list(expected) and all(isinstance(b, int) and b >= 0 for b in budgets.values())
    if None in expected.values():  # '*' takes exactly what the sizes leave (or nothing)
        assert sum(budgets.values()) == max(model_bytes, sum(written.values()))


@SETTINGS
@given(valid_bytes_texts())
def test_a_trailing_semicolon_changes_nothing(case):
    text, _ = case
    assert parse_allocation(text + ";", AVAILABLE) == parse_allocation(text, AVAILABLE)


@SETTINGS
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=4), st.booleans(),
       st.integers(0, 2**40))
@example([1e-05], True, 100)
@example([33.33333333333333], True, 3)
def test_ratio_form_covers_the_model(percents, with_rest, model_bytes):
    devices = AVAILABLE[: len(percents)]
    if sum(percents) > 100:
        percents = [p * 100 / sum(percents) * 0.999 for p in percents]
    text = ";".join(f"{d},{plain(p)}%" for d, p in zip(devices, percents)) + (";mps,*" if with_rest else "")
    allocation = outcome(text)
    if isinstance(allocation, AllocationError):  # no rest and not exactly 100 %
        assert not with_rest and "add up to" in str(allocation)
        return
    budgets = allocation.budgets(model_bytes, devices[0])
    assert all(isinstance(b, int) and b >= 0 for b in budgets.values())
    assert abs(sum(budgets.values()) - model_bytes) <= len(budgets)


@SETTINGS
@given(st.one_of(st.floats(0, 1, allow_nan=False), st.sampled_from([1e-05, 1e-300, 5e-324, 0.1, 1.0])))
@example(0.0)
def test_fraction_form_splits_the_model(value):
    text = plain(value)
    allocation = outcome(text)
    if value == 0:  # '0', '0.0', '0.000': all mean "no split"
        assert allocation is None
        return
    assert allocation.form == "fraction" and allocation.fraction == value
    budgets = allocation.budgets(1000, "cuda:0", "cpu")
    assert sum(budgets.values()) == 1000 and min(budgets.values()) >= 0


@example("0.000")
@example(".0")
@given(st.builds(lambda zeros, dot: "0" * zeros + dot, st.integers(1, 5), st.sampled_from(["", ".", ".0", ".000"])))
def test_every_spelling_of_zero_means_no_split(text):
    assert parse_allocation(text, AVAILABLE) is None


@SETTINGS
@given(st.sampled_from(["mps", "MPS", "mlu", "mlu:0", "directml", "directml:0", "npu:0", "npu", "xpu"]),
       st.integers(1, 10**6), st.sampled_from(sorted(UNITS) + ["%"]), st.sampled_from(["", ";cpu,*"]))
def test_device_names_with_unit_letters_are_never_units(device, number, unit, tail):
    if unit == "%":
        number = number % 100 + 1
        tail = ";cpu,*"
    allocation = outcome(f"{device},{number}{unit}{tail}")
    assert isinstance(allocation, Allocation), allocation
    share = allocation.shares[0]
    canonical = {"mps": "mps", "mlu": "mlu:0", "directml": "directml:0", "npu": "npu:0", "xpu": "xpu:0"}
    assert share.device == canonical.get(device.lower(), device.lower())
    assert share.amount == (number if unit == "%" else number * UNITS[unit])


@SETTINGS
@given(st.sampled_from(["mps", "mlu", "directml", "npu:0", "mlu:0gb", "mps1gb", "1mps", "cpu,1mps"]))
def test_a_device_name_alone_or_glued_to_a_number_is_an_error_not_a_size(text):
    assert isinstance(outcome(text), AllocationError)


# ---- properties: the split request from the node's inputs ---------------------------------
vram_values = st.one_of(
    st.floats(), st.integers(-10, 10**6), st.sampled_from([None, "", "4", "2.5", "lots", "1e400", "1e300", "-0", True]),
    st.text(max_size=8))
donors = st.one_of(st.sampled_from([s for spellings in SPELLINGS.values() for s in spellings]), st.text(max_size=8),
                   st.sampled_from([None, "default", "cuda:9"]))
allocations = st.one_of(st.just(""), st.none(), grammar_texts, mutated(), st.text(max_size=20))


@SETTINGS
@given(st.sampled_from(AVAILABLE), vram_values, donors, allocations, st.integers(0, 2**40),
       st.one_of(st.none(), st.integers(-2**30, 2**40)), st.tuples(st.integers(0, 2**30), st.integers(0, 2**28)),
       st.integers(0, 4))
@example("cuda:0", 1e300, "cpu", "", 10, None, (0, 0), 1)     # OverflowError: 1e300 GiB is inf bytes
@example("cuda:0", "1e300", "cpu", "", 10, None, (0, 0), 1)   # the /distorch/plan route passes text
@example("cuda:0", 0.0, "cpu", ";", 10, None, (0, 0), 1)      # IndexError: no shares
def test_split_request_is_a_request_none_or_one_clear_error(compute, vram, donor, allocation, model_bytes, room,
                                                            floor, in_flight):
    try:
        request = split_request(compute, AVAILABLE, vram, donor, allocation)
    except AllocationError as error:
        message = str(error)
        assert message.split(":", 1)[0] in ("allocation", "virtual_vram_gb", "donor_device"), message
        return
    if request is None:
        return
    assert isinstance(request, SplitRequest) and request.compute == compute
    assert any(s.device == compute for s in request.allocation.shares) or request.allocation.form == "fraction"
    budgets = request.budgets(model_bytes, room, floor, in_flight)
    assert compute in budgets and all(isinstance(b, int) and b >= 0 for b in budgets.values())
    assert request.describe()


@SETTINGS
@given(st.sampled_from(AVAILABLE), st.sampled_from(AVAILABLE),
       st.one_of(st.floats(1e-9, 1e6), st.sampled_from([1e-05, 0.1, 2.5, 1000.0, 123456.789])),
       st.integers(0, 2**45))
@example("cuda:0", "cpu", 1e-05, 10)
@example("cuda:0", "cpu", 2000.0, 10)    # describe() wrote '2e+03gb'
def test_simple_inputs_are_sugar_for_the_bytes_form(compute, donor, gib, model_bytes):
    request = split_request(compute, AVAILABLE, gib, donor, "")
    donor_bytes = int(gib * GIB)
    if donor == compute:  # the donor gets its own planner slot on the compute device
        assert request.allocation.shares[1].device == f"{compute} (donor)"
        return
    assert request.allocation == parse_allocation(f"{compute},*;{donor},{donor_bytes}b", AVAILABLE)
    assert request.budgets(model_bytes) == {compute: max(0, model_bytes - donor_bytes), donor: donor_bytes}
    # What the node shows the user is itself a valid allocation for the same devices.
    described = parse_allocation(request.describe(), AVAILABLE)
    assert [(s.device, s.kind) for s in described.shares] == [(compute, "rest"), (donor, "bytes")]
