"""error_rate's input contract (which log lines are errors), its exact breach rule and the
synthetic log generator."""

from __future__ import annotations

import pytest

from beam_pipelines.error_rate import CountErrors, Limits, _Rate
from transforms.contracts.service_logs import ERROR_LEVELS, parse_service_log
from transforms.io.synthetic.logs import MALFORMED_KINDS, SyntheticLogs, malformed_log
from transforms.parse import parse_or_reject
from transforms.records import ServiceLog
from transforms.validation import InvalidRecord
from transforms.windowing import WindowedResult

pytestmark = pytest.mark.unit

T = "2024-03-10T12:00:00.250+05:30"


def parsed(**fields) -> ServiceLog:
    return parse_service_log({"service": "api", "timestamp": T, **fields})[0]


@pytest.mark.parametrize("fields, error", [
    ({"level": "ERROR"}, True),
    ({"level": " Fatal "}, True),
    ({"level": "crit"}, True),
    ({"level": "warning"}, False),
    ({"level": "INFO"}, False),
    ({"status": 500}, True),
    ({"status": 503}, True),
    ({"status": "502"}, True),  # a string of digits is a status too
    ({"status": 499}, False),  # client errors are not the service's errors
    ({"status": 404}, False),
    ({"status": 200, "level": "error"}, False),  # both: the status decides
    ({"status": 503, "level": "info"}, True),
    ({"status": None, "level": "error"}, True),  # null is absent
    ({"level": None, "status": 200}, False),
])
def test_which_lines_are_errors(fields, error):
    assert parsed(**fields).error is error


def test_a_line_keeps_its_level_status_and_utc_time():
    line, whole = parse_service_log({"service": "api", "level": "ERROR", "status": 503,
                                     "timestamp": T, "message": "boom", "extra": [1]})
    assert line == ServiceLog("api", True, "error", 503, "2024-03-10T06:30:00.25Z")
    assert whole == 1710052200
    assert parse_service_log({"service": "api", "level": "info",
                              "timestamp": 1710052200.75})[1] == 1710052200


@pytest.mark.parametrize("fields, code", [
    ({"level": "loud"}, "unknown_level"),
    ({"level": 50}, "wrong_type"),  # numeric levels mean different things per logger
    ({"level": ""}, "empty_field"),
    ({"status": "ok"}, "wrong_type"),
    ({"status": 500.0}, "wrong_type"),
    ({"status": True}, "wrong_type"),
    ({"status": 700}, "out_of_range"),
    ({"status": 99}, "out_of_range"),
    ({}, "missing_field"),
    ({"level": None, "status": None}, "missing_field"),
])
def test_lines_that_cannot_be_classified_are_refused(fields, code):
    with pytest.raises(InvalidRecord) as info:
        parsed(**fields)
    assert info.value.code == code


def test_service_and_timestamp_follow_the_shared_validators():
    for obj, code in [({"level": "info", "timestamp": T}, "missing_field"),
                      ({"service": "", "level": "info", "timestamp": T}, "empty_field"),
                      ({"service": "api", "level": "info", "timestamp": "2024-01-01T00:00:00"},
                       "invalid_time"),
                      ({"service": "api", "level": "info", "timestamp": 4_200_000_000},
                       "out_of_range")]:
        with pytest.raises(InvalidRecord) as info:
            parse_service_log(obj)
        assert info.value.code == code


def test_error_levels_are_lower_case_names():
    assert all(level == level.lower().strip() for level in ERROR_LEVELS)


def test_the_breach_is_decided_exactly():
    rate = _Rate(Limits(0.05, 20))
    window = (1_704_067_200.0, 1_704_067_260.0)

    def breaching(events, errors):
        [result] = rate.process(WindowedResult("api", *window, (events, errors)))
        return result.breaching

    assert not breaching(20, 1)  # 0.05 exactly is not above 0.05 (in floats 1/20 > 0.05 is False too)
    assert breaching(20, 2)
    assert not breaching(19, 19)  # too few lines to say
    assert not breaching(100, 5) and breaching(100, 6)
    tricky = _Rate(Limits(0.07, 1))  # 0.07 * 100 = 7.000000000000001 in floats
    [result] = tricky.process(WindowedResult("api", *window, (100, 7)))
    assert not result.breaching


def test_count_errors_merges_in_any_order():
    fn = CountErrors()
    lines = [parsed(level="error"), parsed(level="info"), parsed(status=503)]
    one = fn.create_accumulator()
    for line in lines:
        one = fn.add_input(one, line)
    parts = [fn.add_input(fn.create_accumulator(), line) for line in reversed(lines)]
    assert fn.extract_output(one) == fn.extract_output(fn.merge_accumulators(parts)) == (3, 2)


def test_limits_are_checked():
    with pytest.raises(ValueError, match="--max_error_ratio"):
        Limits(1.5, 20).validated()
    with pytest.raises(ValueError, match="--min_events"):
        Limits(0.1, 0).validated()


def test_the_generator_is_deterministic_mixed_and_scripts_one_incident():
    generator = SyntheticLogs(seed=3, malformed=0.05)
    first = list(generator.payloads(3000))
    assert first == list(SyntheticLogs(seed=3, malformed=0.05).payloads(3000))
    assert list(generator.payloads(10, 1500)) == first[1500:1510]  # any range on its own
    outcomes = [parse_or_reject(parse_service_log, p) for p in first]
    valid = [o[0] for o in outcomes if not isinstance(o, InvalidRecord)]
    assert 0.02 < 1 - len(valid) / len(first) < 0.09
    shapes = [line for line, _ in generator.records(400) if line is not None]
    assert {"level" in s for s in shapes} == {True, False}
    assert {"status" in s for s in shapes} == {True, False}
    assert {type(s["timestamp"]).__name__ for s in shapes if "timestamp" in s} == {"int", "float", "str"}
    # Errors cluster in checkout's scripted incident (minutes 5 to 8 of event time).
    by_phase: dict[bool, list[bool]] = {True: [], False: []}
    for index, line in enumerate(generator.lines(3000)):
        during = 300 <= index / generator.rate < 480 and line["service"] == "checkout"
        by_phase[during].append(parse_service_log(line)[0].error)
    assert sum(by_phase[True]) / len(by_phase[True]) > 0.3
    assert sum(by_phase[False]) / len(by_phase[False]) < 0.02


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_every_malformed_kind_is_refused(kind):
    line = {"service": "api", "status": 200, "level": "info", "timestamp": T}
    assert isinstance(parse_or_reject(parse_service_log, malformed_log(line, kind)), InvalidRecord)
