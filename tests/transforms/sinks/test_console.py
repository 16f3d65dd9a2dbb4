"""The console sink shows values for people: floats to two decimals, lists comma-joined."""

import pytest

from transforms.sinks.console import cell, format_table

pytestmark = pytest.mark.unit


def test_cells_round_floats_and_join_lists_for_display():
    assert cell(30.458333333333332) == "30.46"
    assert cell(2.0) == "2.00"
    assert cell(7) == "7" and cell(True) == "True" and cell(None) == ""
    assert cell(["temperature", "humidity"]) == "temperature,humidity"
    assert cell([1.005, 2.5]) == "1.00,2.50"


def test_a_table_shows_the_rounded_value():
    table = format_table([{"device": "d1", "AvgTemp": 30.458333333333332}], ["device", "AvgTemp"])
    assert table.splitlines()[-1] == "d1      30.46"
