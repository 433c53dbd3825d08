"""Fixed-point money: exact round trips, and refusal of everything that is not a plain decimal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ErrorCode, QtError
from contracts.money import ASSET_SCALES, MAX_UNITS, check_units, format_amount, parse_amount


@given(asset=st.sampled_from(sorted(ASSET_SCALES)), units=st.integers(min_value=1, max_value=MAX_UNITS))
def test_format_then_parse_is_the_identity(asset: str, units: int) -> None:
    assert parse_amount(asset, format_amount(asset, units)) == units


@given(asset=st.sampled_from(sorted(ASSET_SCALES)), units=st.integers(min_value=0, max_value=10**12))
def test_formatted_amounts_carry_exactly_the_asset_scale(asset: str, units: int) -> None:
    text = format_amount(asset, units)
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert decimals == ASSET_SCALES[asset]


@pytest.mark.parametrize(("asset", "text", "units"), [
    ("USD", "10050.00", 1005000), ("USD", "1", 100), ("USD", "0.5", 50), ("JPY", "150", 150),
    ("BTC", "0.00000001", 1), ("AAPL", "187.42", 1874200), ("SOL", "1.000001", 1000001),
])
def test_parses_plain_decimals(asset: str, text: str, units: int) -> None:
    assert parse_amount(asset, text) == units


@pytest.mark.parametrize("bad", [
    1.5, 100, True, None, "1e3", "-5", "+5", "1.001", "NaN", "inf", "", " 1.00", "1.00 ", "01.00", ".5", "5.",
    "1,000.00", "0x10", "١٢", "0", "0.00",
])
def test_refuses_anything_else(bad: object) -> None:
    with pytest.raises(QtError) as refused:
        parse_amount("USD", bad)
    assert refused.value.code is ErrorCode.INVALID_AMOUNT


def test_unknown_asset_is_its_own_error() -> None:
    with pytest.raises(QtError) as refused:
        parse_amount("DOGE", "1.00")
    assert refused.value.code is ErrorCode.UNKNOWN_ASSET


@pytest.mark.parametrize("bad", [1.0, True, "1", -1, 0])
def test_integer_units_must_be_positive_ints(bad: object) -> None:
    with pytest.raises(QtError) as refused:
        check_units("USD", bad)
    assert refused.value.code is ErrorCode.INVALID_AMOUNT


@pytest.mark.parametrize("asset", sorted(ASSET_SCALES))
def test_the_maximum_is_accepted_and_one_unit_more_is_out_of_range(asset: str) -> None:
    assert parse_amount(asset, format_amount(asset, MAX_UNITS)) == check_units(asset, MAX_UNITS) == MAX_UNITS
    for refused_call in (lambda: parse_amount(asset, format_amount(asset, MAX_UNITS + 1)),
                         lambda: check_units(asset, MAX_UNITS + 1), lambda: check_units(asset, 2**63),
                         lambda: parse_amount(asset, "9" * 20), lambda: parse_amount(asset, "9" * 5000)):
        with pytest.raises(QtError) as refused:
            refused_call()
        assert refused.value.code is ErrorCode.AMOUNT_OUT_OF_RANGE
        assert refused.value.detail["max"] == format_amount(asset, MAX_UNITS)


def test_the_maximum_leaves_room_for_thousands_of_sums_in_int64_and_is_exact_as_a_double() -> None:
    assert 9_000 * MAX_UNITS < 2**63 - 1
    assert MAX_UNITS < 2**53
