"""Data-quality rules on Arrow tables (the vectorized path) keep the per-record contract:
the same records pass, the same fail, on the same rule, with the same dead letter."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pyarrow as pa
import pytest

from beam_pipelines import pageviews, sessions
from beam_pipelines.skeleton.user_events import vectorized
from beam_pipelines.testing.files import read_jsonl_dir
from beam_pipelines.wiring.quality import tables_allowed
from transforms.base.errors import ConfigError
from transforms.batches import EVENT_SCHEMA
from transforms.quality import (
    CheckQualityTables,
    Matches,
    MaxClockSkew,
    OneOf,
    Range,
    Required,
    Rule,
    Type,
    UniqueWithinWindow,
    check_table,
    vectorizable,
)
from transforms.records import UserEvent

pytestmark = pytest.mark.unit

T0 = 1_733_000_000.0  # parsed events carry float seconds


def fixed_clock() -> float:
    return T0 + 3600.0


class _OddUsers(Rule):
    """A rule with no vectorized form: every row is a candidate, the rule decides."""

    kind = "odd_users"

    def __init__(self) -> None:
        super().__init__("user_id", None)

    def check(self, record):
        return None if not record.user_id[-1:].isdigit() or int(record.user_id[-1]) % 2 \
            else f"user {record.user_id} is even"


def per_record(rules, events):
    """The per-record contract (CheckQuality's _CheckRules): first failing rule wins."""
    valid, failed = [], []
    for event in events:
        for rule in rules:
            detail = rule.check(event)
            if detail is not None:
                failed.append((event, rule.name, f"rule {rule.name} failed: {detail}"))
                break
        else:
            valid.append(event)
    return valid, failed


def table_of(events) -> pa.Table:
    return pa.table({"user_id": [e.user_id for e in events], "action": [e.action for e in events],
                     "page": [e.page for e in events],
                     "timestamp": pa.array([e.timestamp for e in events], pa.float64()),
                     "event_second": [0] * len(events)},  # not a field of the records
                    schema=EVENT_SCHEMA)


def assert_same(rules, events):
    expected_valid, expected_failed = per_record(rules, events)
    got = check_table(rules, table_of(events), UserEvent, "pageviews")
    valid = [UserEvent(*row[:4]) for row in zip(*(got.valid.column(n).to_pylist()
                                                   for n in EVENT_SCHEMA.names), strict=True)]
    assert valid == expected_valid
    failed = [(UserEvent(**json.loads(d.payload)), d.reason_code, d.reason)
              for d in got.dead_letters]
    assert sorted(failed, key=repr) == sorted(expected_failed, key=repr)
    assert {(d.step, d.pipeline, d.origin["source"]) for d in got.dead_letters} <= {
        ("quality", "pageviews", "quality")}


EDGE_EVENTS = [
    UserEvent("user_1", "page_view", "/", T0),
    UserEvent("user_2", "click", "/cart", T0 + 0.5),
    UserEvent("42", "scroll", "/café/menü", T0 - 1),
    UserEvent("user_٣", "hover", "/products/٣", T0 + 3600 + 300),  # Arabic-Indic digit 3
    UserEvent("user_4", "Click", "/search?q=1", T0 + 3600 + 301),
    UserEvent("user_5", "page_view", "/a b", -0.0 + T0 + 1e-7),
    UserEvent("user_6", "page_view", "/x", float(2**53)),
    UserEvent("user_7", "page_view", "/x", 0.0),
    UserEvent("user_8", "page_view", "/x", -0.0),
    UserEvent("user_9", "purchase", "/checkout", 1e300),
]


@pytest.mark.parametrize("rules", [
    [Required("user_id"), Required("page")],
    [Type("timestamp", "number"), Type("user_id", "string")],
    [Type("timestamp", "integer", name="t_int"), Type("page", "number", name="p_num")],
    [Range("timestamp", min=T0, max=T0 + 3600)],
    [Range("timestamp", min=T0, max=T0 + 3600, exclusive=True)],
    [Range("timestamp", min=2**53 + 1), Range("page", max=3, name="page_range")],
    [Range("timestamp", min=Decimal("1733000000.0000001"), max=Decimal("1e301"))],
    [Range("timestamp", max=0)],
    [OneOf("action", ["page_view", "click", 1]), OneOf("timestamp", [1_733_000_000, 0, 2**53 + 1,
                                                                     Decimal("0.1"), 10**400])],
    [OneOf("timestamp", [float("nan"), True, "1733000000"])],
    [Matches("page", r"/[a-z/]*"), Matches("user_id", r"user_\d"), Matches("timestamp", r".*")],
    [MaxClockSkew("timestamp", 300, clock=fixed_clock)],
    [MaxClockSkew("timestamp", 0, max_past=60, clock=fixed_clock)],
    [_OddUsers(), OneOf("action", ["page_view"])],
    [OneOf("action", ["page_view", "click", "scroll"]), Matches("page", r"/[a-z/]*"),
     Range("timestamp", min=T0), MaxClockSkew("timestamp", 300, clock=fixed_clock)],
], ids=lambda rules: "+".join(r.name for r in rules))
def test_each_rule_on_tables_decides_as_per_record(rules):
    assert_same(rules, EDGE_EVENTS)


def test_random_events_and_rules_on_tables_decide_as_per_record():
    rnd = random.Random(7)
    pages = ["/", "/cart", "/products/1", "/Ελλάδα", "/a b", ""]
    actions = ["page_view", "click", "scroll", "Click", ""]
    times = [T0, T0 + 0.25, T0 - 60, T0 + 3600 + 299.5, T0 + 3601 + 300, 946_684_800.0]
    events = [UserEvent(f"user_{rnd.randrange(30)}", rnd.choice(actions), rnd.choice(pages),
                        rnd.choice(times) + rnd.choice([0, 1e-6, 0.5])) for _ in range(2000)]
    pool = [Required("page"), Required("action"), OneOf("action", ["page_view", "click"]),
            Matches("page", r"/[a-z0-9/]*"), Range("timestamp", min=T0, max=T0 + 3600),
            Range("timestamp", min=T0, exclusive=True, name="after_t0"),
            MaxClockSkew("timestamp", 300, max_past=3000, clock=fixed_clock),
            Matches("user_id", r"user_[0-9]*[13579]", name="odd_user")]
    for _ in range(20):
        assert_same(rnd.sample(pool, rnd.randrange(1, 5)), events)


def test_tables_refuse_unique_within_window_and_duplicate_names():
    assert vectorizable([Required("page")]) and not vectorizable(
        [Required("page"), UniqueWithinWindow("user_id", 60)])
    with pytest.raises(ConfigError, match="unique_within_window"):
        CheckQualityTables([UniqueWithinWindow("user_id", 60)], UserEvent, pipeline="p")
    with pytest.raises(ConfigError, match="unique rule names"):
        CheckQualityTables([Required("page"), Required("page")], UserEvent, pipeline="p")


def test_a_table_without_failures_is_passed_on_as_it_is():
    table = table_of([UserEvent("u", "page_view", "/", T0)])
    checked = check_table([Required("page")], table, UserEvent, "pageviews")
    assert checked.valid is table and checked.dead_letters == []


# ---- the pipelines: arrow and records paths give the same counts and dead letters -----------

RULES = {"UserEvent": [
    {"rule": "required", "field": "user_id"},
    {"rule": "one_of", "field": "action", "values": ["page_view", "click"]},
    {"rule": "matches", "field": "page", "pattern": "/[a-z0-9/_-]*", "name": "ascii_page"},
    {"rule": "range", "field": "timestamp", "min": 1733000000, "max": 1733018000,
     "exclusive": True},
    {"rule": "max_clock_skew", "field": "timestamp", "seconds": 300},
]}


def _run(tmp_path, pipeline, name, rules, *extra):
    out, dead = tmp_path / name / "out", tmp_path / name / "dead"
    pipeline.run(["--source=file", f"--input={tmp_path / 'events.jsonl'}",
                  "--sink=jsonl", f"--output={out}", f"--dead_letter={dead}",
                  f"--quality_rules={rules}", *extra])
    results = sorted(json.dumps(row, sort_keys=True) for row in read_jsonl_dir(str(out)))
    letters = sorted((d["reason_code"], d["reason"], d["payload"], json.dumps(d["origin"],
                      sort_keys=True), d["step"]) for d in read_jsonl_dir(str(dead)))
    assert results
    return results, letters


@pytest.mark.parametrize("pipeline", [pageviews, sessions], ids=lambda m: m.__name__)
def test_rules_give_the_same_results_and_dead_letters_on_both_paths(tmp_path, pipeline):
    """On dirty data (malformed lines of every kind, a fifth of the records failing a rule),
    --batch_engine=arrow (rules on tables) and =records (rules per record) agree."""
    from benchmarks import datagen

    datagen.generate(str(tmp_path / "events.jsonl"), 6000, seed=5, profile="realistic",
                     dirty=0.05)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    arrow = _run(tmp_path, pipeline, "arrow", rules)
    records = _run(tmp_path, pipeline, "records", rules, "--batch_engine=records")
    assert arrow == records
    reasons = {letter[0] for letter in arrow[1]}
    assert {"invalid_json", "one_of.action", "ascii_page", "range.timestamp"} <= reasons


def test_unique_within_window_keeps_a_run_per_record(tmp_path):
    (tmp_path / "events.jsonl").write_text("")
    rules = tmp_path / "rules.json"
    flags = ["--source=file", f"--input={tmp_path / 'events.jsonl'}"]
    for rule, path in [({"rule": "required", "field": "page"}, "blocks"),
                       ({"rule": "unique_within_window", "id_field": "user_id",
                         "window_seconds": 60}, None)]:
        rules.write_text(json.dumps({"UserEvent": [rule]}))
        options = pageviews.PAGEVIEWS.parse_flags([*flags, f"--quality_rules={rules}"])
        assert tables_allowed(options, "UserEvent") is (path is not None)
        assert vectorized(options, pageviews.PAGEVIEWS.checked_source(options), False) == path


def test_the_documented_rules_file_is_the_benchmarks_and_loads_for_each_schema():
    from pathlib import Path

    from beam_pipelines import schemas
    from transforms.quality import load_rules

    root = Path(__file__).resolve().parents[2]
    section = (root / "docs" / "production.md").read_text().split(
        "## Data-quality rules", 1)[1].split("\n## ", 1)[0]
    example = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    assert example == json.loads((root / "benchmarks" / "quality_rules.json").read_text())
    for schema in example:
        rules = load_rules(example, schema=schema, fields=schemas.field_names(schema),
                           schemas=list(schemas.SCHEMAS))
        assert [rule.name for rule in rules]
        for rule in rules:  # each rule the table documents
            assert f"| `{rule.kind}` |" in section
