"""The rules file: JSON and YAML, one error line per kind of mistake naming the rule and
the field, and blocklists (relative paths, comments, reloading while running)."""

from __future__ import annotations

import json
import logging
import os
import pickle
from decimal import Decimal

import pytest

from transforms.base.errors import ConfigError
from transforms.fraud import blocklists as blocklists_module
from transforms.fraud.rules import (
    AmountSpikeRule,
    BlocklistRule,
    BlocklistSource,
    FileBlocklist,
    GeoVelocityRule,
    StaticBlocklist,
    ThresholdRule,
    VelocityRule,
    load_rules,
    parse_blocklist,
    register_blocklist_source,
    rules_from_document,
)

pytestmark = pytest.mark.unit

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "examples", "fraud")


def test_the_example_rules_cover_every_kind():
    rules = load_rules(os.path.join(EXAMPLES, "rules.json"))
    assert {r.kind for r in rules} == {"threshold", "velocity", "amount_spike", "geo_velocity",
                                       "blocklist"}
    assert rules.key_fields == ("card_id",)
    blocklist = next(r for r in rules if isinstance(r, BlocklistRule))
    assert "quickcash-transfers" in blocklist.source.current()


def test_json_and_yaml_load_the_same_rules(tmp_path):
    (tmp_path / "blocked.txt").write_text("evil\n")
    document = [
        {"name": "big", "kind": "threshold", "action": "review", "field": "amount", "op": ">", "value": 99.5},
        {"name": "ccy", "kind": "threshold", "action": "block", "field": "currency", "op": "not_in",
         "value": ["EUR", "USD"]},
        {"name": "burst", "kind": "velocity", "action": "block", "window": 60, "max_count": 5},
        {"name": "m_burst", "kind": "velocity", "action": "review", "key": "merchant",
         "window": 0.5, "max_count": 50},
        {"name": "spike", "kind": "amount_spike", "action": "review", "factor": 2.5, "history": 10,
         "min_history": 3},
        {"name": "geo", "kind": "geo_velocity", "action": "block", "max_kmh": 900},
        {"name": "bl", "kind": "blocklist", "action": "block", "field": "merchant", "list": "blocked.txt",
         "description": "known bad merchants"},
    ]
    (tmp_path / "rules.json").write_text(json.dumps(document))
    import yaml

    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"rules": document}))
    from_json = load_rules(str(tmp_path / "rules.json"))
    from_yaml = load_rules(str(tmp_path / "rules.yaml"))
    for a, b in zip(from_json, from_yaml, strict=True):
        if isinstance(a, BlocklistRule):
            assert a.source.current() == b.source.current() == {"evil"}
        else:
            assert a == b
    big, ccy, burst, m_burst, spike, geo, bl = from_json
    assert big == ThresholdRule("big", "review", "amount", ">", Decimal("99.5"))
    assert ccy.value == frozenset({"EUR", "USD"})
    assert burst == VelocityRule("burst", "block", "card_id", Decimal(60), 5)
    assert m_burst.key == "merchant" and m_burst.window == Decimal("0.5")
    assert spike == AmountSpikeRule("spike", "review", "card_id", Decimal("2.5"), 10, 3)
    assert geo == GeoVelocityRule("geo", "block", "card_id", Decimal(900))
    assert bl.description == "known bad merchants"
    assert from_json.key_fields == ("card_id", "merchant")
    assert [r.name for r in from_json.stateless] == ["big", "ccy", "bl"]


def _velocity(**fields):
    return {"name": "r", "kind": "velocity", "action": "block", "window": 60, "max_count": 3, **fields}


def _threshold(**fields):
    return {"name": "big_amount", "kind": "threshold", "action": "review", "field": "amount",
            "op": ">", "value": 100, **fields}


def _spike(**fields):
    return {"name": "s", "kind": "amount_spike", "action": "review", "factor": 3, "history": 5,
            "min_history": 2, **fields}


ERRORS = [
    # The issue's own example.
    ([_threshold(op="=>")], "--rules: rule 'big_amount': field 'op': expected one of >, >=, <, "
     "<=, ==, !=, in, not_in, got '=>'"),
    ([_threshold(kind="treshold")], "--rules: rule 'big_amount': field 'kind': expected one of "
     "threshold, velocity, amount_spike, geo_velocity, blocklist, got 'treshold'"),
    ([_threshold(action="deny")], "--rules: rule 'big_amount': field 'action': expected one of "
     "review, block, got 'deny'"),
    ([{"kind": "velocity", "action": "block", "window": 60, "max_count": 3}],
     "--rules: rule #1: field 'name': missing (every rule needs a unique name)"),
    ([_threshold(name="big amount!")], "--rules: rule 'big amount!': field 'name': expected a name "
     "of letters, digits, _ . and -, got 'big amount!'"),
    ([_threshold(), _threshold(value=5)], "--rules: rule 'big_amount': field 'name': expected a "
     "unique name, got 'big_amount' twice"),
    ([_velocity(windw=60)], "--rules: rule 'r': field 'windw': not a field of a velocity rule (it "
     "takes name, kind, action, description, window, max_count, key)"),
    ([{"name": "r", "kind": "velocity", "action": "block", "max_count": 3}],
     "--rules: rule 'r': field 'window': missing (a velocity rule needs window, max_count)"),
    ([_threshold(field="merchant", op=">", value="m")], "--rules: rule 'big_amount': field 'op': "
     "expected ==, !=, in or not_in for the string field 'merchant', got '>'"),
    ([_threshold(field="amount_eur")], "--rules: rule 'big_amount': field 'field': expected one of "
     "tx_id, card_id, amount, currency, merchant, country, lat, lon, timestamp, got 'amount_eur'"),
    ([_threshold(value="100")], "--rules: rule 'big_amount': field 'value': expected a finite "
     "number (the field 'amount' is a number), got '100'"),
    ([_threshold(value=True)], "--rules: rule 'big_amount': field 'value': expected a finite "
     "number (the field 'amount' is a number), got True"),
    ([_threshold(field="merchant", op="==", value=7)], "--rules: rule 'big_amount': field 'value': "
     "expected a string (the field 'merchant' is a string), got 7"),
    ([_threshold(field="currency", op="in", value=["EUR", "usd"])], "--rules: rule 'big_amount': "
     "field 'value': expected 3 uppercase letters, as the contract requires of 'currency', got 'usd'"),
    ([_threshold(op="in", value=100)], "--rules: rule 'big_amount': field 'value': expected a "
     "non-empty list for in, got 100"),
    ([_threshold(op="not_in", value=[])], "--rules: rule 'big_amount': field 'value': expected a "
     "non-empty list for not_in, got []"),
    ([_velocity(window=0)], "--rules: rule 'r': field 'window': expected a number of seconds > 0, got 0"),
    ([_velocity(window="60s")], "--rules: rule 'r': field 'window': expected a number of seconds "
     "> 0, got '60s'"),
    ([_velocity(max_count=0)], "--rules: rule 'r': field 'max_count': expected a whole number >= 1, got 0"),
    ([_velocity(max_count=2.5)], "--rules: rule 'r': field 'max_count': expected a whole number "
     ">= 1, got 2.5"),
    ([_velocity(max_count=True)], "--rules: rule 'r': field 'max_count': expected a whole number "
     ">= 1, got True"),
    ([_velocity(key="amount")], "--rules: rule 'r': field 'key': expected one of tx_id, card_id, "
     "currency, merchant, country, got 'amount'"),
    ([_spike(factor=-1)], "--rules: rule 's': field 'factor': expected a number > 0, got -1"),
    ([_spike(history=0)], "--rules: rule 's': field 'history': expected a whole number of "
     "transactions >= 1, got 0"),
    ([_spike(min_history=6)], "--rules: rule 's': field 'min_history': expected a whole number "
     "from 1 to history (5), got 6"),
    ([{"name": "g", "kind": "geo_velocity", "action": "block", "max_kmh": 0}],
     "--rules: rule 'g': field 'max_kmh': expected a speed in km/h > 0, got 0"),
    ([{"name": "b", "kind": "blocklist", "action": "block", "field": "amount", "list": "x.txt"}],
     "--rules: rule 'b': field 'field': expected one of tx_id, card_id, currency, merchant, "
     "country, got 'amount'"),
    ([{"name": "b", "kind": "blocklist", "action": "block", "field": "merchant",
       "list": "kafka://blocked-merchants"}],
     "--rules: rule 'b': field 'list': a file; kafka:// blocklists need the pipeline's Kafka wiring "
     "(register_blocklist_source('kafka', ...)), got 'kafka://blocked-merchants'"),
    ([_threshold(description=5)], "--rules: rule 'big_amount': field 'description': expected a "
     "string, got 5"),
    (["big_amount"], "--rules: rule #1: expected an object with name, kind and action, got 'big_amount'"),
    ({"rules": [], "version": 2}, "--rules: rules: expected a list of rules or an object with only "
     "the key 'rules', got the keys ['rules', 'version']"),
    ("rules", "--rules: rules: expected a list of rules, got str"),
]


@pytest.mark.parametrize("document, message", ERRORS, ids=[m.split(": ", 2)[-1][:40] for _, m in ERRORS])
def test_each_mistake_is_one_line_naming_the_rule_and_the_field(document, message, monkeypatch):
    # Another test may have imported the fraud pipeline, which registers the kafka:// source;
    # these messages are about a bare rules file, so start from an empty registry.
    monkeypatch.setattr(blocklists_module, "_SOURCES", {})
    with pytest.raises(ConfigError) as caught:
        rules_from_document(document)
    assert str(caught.value) == message
    assert caught.value.flag == "--rules"
    assert "\n" not in str(caught.value)


def test_file_level_mistakes(tmp_path):
    def error(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_rules(str(path))
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert error("bad.json", "[{").startswith(f"--rules: {tmp_path}/bad.json is not valid JSON: ")
    assert error("nan.json", '[{"name": "r", "kind": "threshold", "action": "review", '
                 '"field": "amount", "op": ">", "value": NaN}]').startswith(
        f"--rules: {tmp_path}/nan.json is not valid JSON: NaN is not a number this file may use")
    assert error("bad.yaml", "- name: [").startswith(f"--rules: {tmp_path}/bad.yaml is not valid YAML: ")
    assert error("inf.yaml", "- {name: r, kind: threshold, action: review, field: amount, op: '>', "
                 "value: .inf}") == ("--rules: rule 'r': field 'value': expected a finite number "
                                     "(the field 'amount' is a number), got inf")
    with pytest.raises(ConfigError, match=r"^--rules: cannot read '/nonexistent/rules.json': "):
        load_rules("/nonexistent/rules.json")
    # The flag name is the caller's.
    with pytest.raises(ConfigError, match=r"^--fraud_rules: rule 'big_amount': field 'op'"):
        (tmp_path / "op.json").write_text(json.dumps([_threshold(op="=>")]))
        load_rules(str(tmp_path / "op.json"), flag="--fraud_rules")


def test_a_missing_blocklist_file_is_an_error_at_load(tmp_path):
    (tmp_path / "rules.json").write_text(json.dumps([
        {"name": "bl", "kind": "blocklist", "action": "block", "field": "merchant", "list": "gone.txt"}]))
    with pytest.raises(ConfigError) as caught:
        load_rules(str(tmp_path / "rules.json"))
    assert str(caught.value).startswith(
        f"--rules: rule 'bl': field 'list': cannot read the blocklist {tmp_path}/gone.txt: ")


# ---- blocklists ---------------------------------------------------------------------------

def test_blocklist_format_comments_blank_lines_and_whitespace():
    text = "\ufeff# header comment\n\nevil-shop\n  spaced-shop  \n   # indented comment\nshop#7\r\nlast"
    assert parse_blocklist(text.lstrip("\ufeff")) == {"evil-shop", "spaced-shop", "shop#7", "last"}


def test_blocklist_paths_are_relative_to_the_rules_file(tmp_path, monkeypatch):
    (tmp_path / "conf" / "lists").mkdir(parents=True)
    (tmp_path / "conf" / "lists" / "bad.txt").write_bytes(b"\xef\xbb\xbfevil\n# not me\n")
    (tmp_path / "conf" / "rules.json").write_text(json.dumps([
        {"name": "bl", "kind": "blocklist", "action": "block", "field": "merchant",
         "list": "lists/bad.txt"}]))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    rules = load_rules("../conf/rules.json")
    source = rules.rules[0].source
    assert isinstance(source, FileBlocklist)
    assert source.path == str(tmp_path / "conf" / "lists" / "bad.txt")
    assert source.current() == {"evil"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _touch(path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))


def test_file_blocklist_reloads_on_change_at_most_every_reload_seconds(tmp_path, caplog):
    path = tmp_path / "blocked.txt"
    path.write_text("a\n")
    _touch(path, 1_700_000_000)
    clock = FakeClock()
    source = FileBlocklist(str(path), reload_seconds=30, clock=clock)
    assert source.current() == {"a"}
    path.write_text("a\nb\n")
    _touch(path, 1_700_000_100)
    clock.now += 29
    assert source.current() == {"a"}  # not checked yet
    clock.now += 1
    assert source.current() == {"a", "b"}  # 30 s: checked, changed, re-read
    # Same modification time and size: not re-read, even though the content differs.
    path.write_text("a\nc\n")
    _touch(path, 1_700_000_100)
    clock.now += 60
    assert source.current() == {"a", "b"}
    # A newer file is picked up.
    _touch(path, 1_700_000_200)
    clock.now += 60
    assert source.current() == {"a", "c"}
    # A vanished file (being replaced) keeps the last list and logs why.
    path.unlink()
    clock.now += 60
    with caplog.at_level(logging.WARNING, logger="transforms.fraud.blocklists"):
        assert source.current() == {"a", "c"}
    assert "re-reading failed, keeping the 2 values read last" in caplog.text
    path.write_text("z\n")
    _touch(path, 1_700_000_300)
    clock.now += 60
    assert source.current() == {"z"}


def test_file_blocklist_checks_the_file_first_thing_after_unpickling(tmp_path):
    # A DoFn carries the source to a worker: there it checks the file on first use.
    path = tmp_path / "blocked.txt"
    path.write_text("a\n")
    _touch(path, 1_700_000_000)
    source = FileBlocklist(str(path), reload_seconds=3600)
    path.write_text("a\nb\n")
    _touch(path, 1_700_000_100)
    assert source.current() == {"a"}
    assert pickle.loads(pickle.dumps(source)).current() == {"a", "b"}


def test_blocklist_rule_reads_the_source_on_every_check(tmp_path):
    path = tmp_path / "blocked.txt"
    path.write_text("m-1\n")
    _touch(path, 1_700_000_000)
    (tmp_path / "rules.json").write_text(json.dumps([
        {"name": "bl", "kind": "blocklist", "action": "block", "field": "merchant",
         "list": "blocked.txt", "reload_seconds": 0}]))
    rule = load_rules(str(tmp_path / "rules.json")).rules[0]
    from transforms.fraud import parse_transaction
    from transforms.validation import decode_json_object

    from .support import tx_line

    tx = parse_transaction(decode_json_object(tx_line("t", merchant="m-2")))[0]
    assert not rule.fires(tx)
    path.write_text("m-1\nm-2\n")
    _touch(path, 1_700_000_100)
    assert rule.fires(tx)


def test_other_blocklist_sources_plug_in_by_scheme(monkeypatch):
    monkeypatch.setattr(blocklists_module, "_SOURCES", {})
    opened = []

    class TopicBlocklist(BlocklistSource):
        def __init__(self, target: str, reload_seconds: float) -> None:
            opened.append((target, reload_seconds))
            self.description = target

        def current(self) -> frozenset[str]:
            return frozenset({"evil"})

    register_blocklist_source("kafka", TopicBlocklist)
    rules = rules_from_document([{"name": "bl", "kind": "blocklist", "action": "block",
                                  "field": "merchant", "list": "kafka://blocked-merchants",
                                  "reload_seconds": 5}])
    assert opened == [("kafka://blocked-merchants", 5.0)]
    assert "evil" in rules.rules[0].source
    assert StaticBlocklist(["x"]).current() == {"x"}
    with pytest.raises(ValueError, match="scheme"):
        register_blocklist_source("Kafka://", TopicBlocklist)
