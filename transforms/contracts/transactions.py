"""The card-transaction contract (the fraud pipeline's input): ``tx_id``, ``card_id``,
``amount``, ``currency``, ``merchant``, ``country``, ``lat``, ``lon``, ``timestamp``.

The rules and the parse function live with the fraud engine
(:mod:`transforms.fraud.contract`; numbers are kept as the exact decimals written);
``docs/fraud.md`` is the reference. The synthetic source generates realistic card
traffic (:class:`transforms.fraud.generate.SyntheticTransactions`): bursts, spikes,
far-away use, blocklisted merchants and, with ``--synthetic_malformed``, invalid lines.
"""

from __future__ import annotations

from transforms.contracts.spec import InputContract
from transforms.fraud.contract import parse_transaction
from transforms.fraud.generate import SyntheticTransactions
from transforms.fraud.records import Transaction

__all__ = ["TRANSACTIONS", "parse_transaction", "synthetic_transactions"]


def synthetic_transactions(seed: int = 42, rate: float = 4.0,
                           malformed: float = 0.0) -> SyntheticTransactions:
    """The generator ``--source=synthetic`` builds (``--synthetic_seed``,
    ``--synthetic_rate`` transactions per second of event time, ``--synthetic_malformed``
    the fraction of invalid lines)."""
    return SyntheticTransactions(seed=seed, rate=rate, dirty=malformed)


TRANSACTIONS = InputContract("Transaction", Transaction, parse_transaction, synthetic_transactions,
                             noun="transactions")
