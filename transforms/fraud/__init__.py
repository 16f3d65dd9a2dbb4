"""The fraud rules engine: decide allow / review / block for each card transaction.

* :mod:`~transforms.fraud.contract` and :mod:`~transforms.fraud.records`: the input
  contract (:class:`Transaction`) and the output record (:class:`Decision`).
* :mod:`~transforms.fraud.rules`: the rules file (JSON or YAML), validated strictly.
* :mod:`~transforms.fraud.blocklists`: blocklist sources that reload while a stream runs;
  :mod:`~transforms.fraud.kafka_blocklist`: one that follows a Kafka topic.
* :mod:`~transforms.fraud.engine`: the exact semantics in plain Python.
* :mod:`~transforms.fraud.transforms`: :class:`DecideTransactions`, stream and batch, with
  :mod:`~transforms.fraud.batches` (a Kafka poll parsed in one pass) and
  :mod:`~transforms.fraud.stateful` (the stateful steps);
* :mod:`~transforms.fraud.replay`: where a restarted stream reads from to rebuild the state.
* :mod:`~transforms.fraud.generate`: realistic sample transactions.

docs/fraud.md is the user's reference.
"""

from transforms.fraud.blocklists import (
    BlocklistSource,
    FileBlocklist,
    StaticBlocklist,
    register_blocklist_source,
)
from transforms.fraud.contract import parse_transaction
from transforms.fraud.engine import DEFAULT_STATE_TTL, Engine, KeyedRules, KeyState
from transforms.fraud.records import Decision, Transaction
from transforms.fraud.rules import RuleSet, load_rules, rules_from_document
from transforms.fraud.transforms import DecideTransactions, FraudResult, ParseTransactions

__all__ = [
    "DEFAULT_STATE_TTL",
    "BlocklistSource",
    "DecideTransactions",
    "Decision",
    "Engine",
    "FileBlocklist",
    "FraudResult",
    "KeyState",
    "KeyedRules",
    "ParseTransactions",
    "RuleSet",
    "StaticBlocklist",
    "Transaction",
    "load_rules",
    "parse_transaction",
    "register_blocklist_source",
    "rules_from_document",
]
