"""The one parameter parser: values of every shape, messages that name the parameter and its bound."""

from __future__ import annotations

import math

import pytest

from analysis.errors import InputError
from analysis.params import (
    REQUIRED,
    parse_bool,
    parse_choice,
    parse_float,
    parse_int,
    parse_int_list,
    parse_ranges,
    parse_text,
    parsed_fields,
    track_fields,
    url_int,
)


@pytest.mark.parametrize("value, expected", [(3, 3), ("3", 3), (" 7 ", 7), (4.0, 4), ("1_000", 1000), ("2e2", 200)])
def test_parse_int_accepts_every_spelling_of_a_whole_number(value, expected):
    assert parse_int(value, "Layer", 0, 1000) == expected


@pytest.mark.parametrize("value, shown", [(30, "got 30."), (-1, "got -1."), ("abc", "got 'abc'."), (2.5, "got 2.5."),
                                          (True, "got True."), (float("nan"), "got nan."), ("inf", "got 'inf'.")])
def test_parse_int_names_the_bound_and_the_value(value, shown):
    with pytest.raises(InputError) as info:
        parse_int(value, "Layer", 0, 29, field="tokens-layer")
    assert str(info.value) == f"Layer must be a whole number from 0 to 29; {shown}"
    assert info.value.field == "tokens-layer"


def test_missing_values_default_or_are_required():
    assert parse_int(None, "Width", 1, 9, default=4) == 4
    assert parse_int("  ", "Width", 1, 9, default=None) is None
    with pytest.raises(InputError, match="^Width is required.$"):
        parse_int("", "Width", 1, 9, default=REQUIRED)


def test_one_sided_bounds_read_naturally():
    with pytest.raises(InputError, match=r"Neuron must be a whole number >= 0; got -3\."):
        parse_int(-3, "Neuron", 0, None)
    with pytest.raises(InputError, match=r"Limit must be a whole number <= 1,000; got 5,000\."):
        parse_int(5000, "Limit", None, 1000)


def test_parse_float_open_and_closed_ends():
    assert parse_float("0.5", "Threshold", -1, 1, high_open=True) == 0.5
    assert parse_float(-1, "Threshold", -1, 1, high_open=True) == -1.0
    with pytest.raises(InputError, match=r"Threshold must be a number >= -1 and < 1; got 1\."):
        parse_float(1, "Threshold", -1, 1, high_open=True)
    with pytest.raises(InputError, match="Strength must be a number; got nan"):
        parse_float(math.nan, "Strength")
    with pytest.raises(InputError, match="got 'high'"):
        parse_float("high", "Threshold", -1, 1)


def test_parse_choice_and_bool():
    assert parse_choice(" kl ", "Divergence", ("js", "kl")) == "kl"
    assert parse_choice(None, "Divergence", {"js": 1, "kl": 2}, default="js") == "js"
    with pytest.raises(InputError, match=r"^Divergence must be one of js, kl; got 'xx'\.$"):
        parse_choice("xx", "Divergence", ("js", "kl"))
    assert [parse_bool(v, "graph") for v in ("1", "TRUE", "yes", "off", 0, None)] == [True, True, True, False, False,
                                                                                      False]
    with pytest.raises(InputError, match="graph must be true or false; got 'maybe'"):
        parse_bool("maybe", "graph")


def test_parse_int_list_and_ranges():
    assert parse_int_list("12, 305 7", "Highlight dims", 0, 575) == [12, 305, 7]
    assert parse_int_list("", "Highlight dims", 0, 575) == []
    with pytest.raises(InputError, match=r"Each of Highlight dims must be a whole number from 0 to 575; got 99,999"):
        parse_int_list("1, 99999", "Highlight dims", 0, 575)
    with pytest.raises(InputError, match="at most 64 numbers; got 65"):
        parse_int_list(" ".join(["1"] * 65), "Highlight dims", 0, 575)
    assert parse_ranges("0-3, 12,2", "Layers", 0, 29) == [0, 1, 2, 3, 12]
    assert parse_ranges(None, "Layers", 0, 29) is None
    with pytest.raises(InputError, match="runs backwards; write it as 3-5"):
        parse_ranges("5-3", "Layers", 0, 29)
    with pytest.raises(InputError, match=r"Layers \(range end\) must be a whole number from 0 to 29; got 40"):
        parse_ranges("0-40", "Layers", 0, 29)
    with pytest.raises(InputError, match="Layers must be a whole number from 0 to 29; got -1"):
        parse_ranges("-1", "Layers", 0, 29)


def test_parse_text_bounds_and_surrogates():
    assert parse_text("abc", "The text", 10) == "abc"
    with pytest.raises(InputError, match="The text has 11 characters; the limit is 10."):
        parse_text("x" * 11, "The text", 10)
    with pytest.raises(InputError, match="lone UTF-16 surrogate"):
        parse_text("ab\ud800", "The text", 10)
    with pytest.raises(InputError, match="The text is required"):
        parse_text(" \n", "The text", 10)


def test_url_int_always_opens():
    assert url_int("7", 0) == 7
    assert url_int("abc", 3) == 3
    assert url_int("999", 0, 0, 29) == 29 and url_int("-5", 0, 0, 29) == 0


def test_tracked_fields_are_the_ones_parsed_successfully():
    with track_fields() as fields:
        parse_int(3, "Layer", 0, 29, field="a")
        parse_choice("js", "Div", ("js",), field="b")
        with pytest.raises(InputError):
            parse_int(99, "Head", 0, 8, field="c")
        assert parsed_fields() == ["a", "b"]
    assert fields == ["a", "b"] and parsed_fields() == []
