"""Compatibility: the transactions generator moved to :mod:`transforms.io.synthetic.transactions`,
beside the other seeded generators (events, readings, logs).

Kept while code written against the old path is merged; new code imports
``transforms.io.synthetic.transactions``.
"""

from transforms.io.synthetic.transactions import (
    BLOCKED_MERCHANTS,
    DEFAULT_START,
    INVALID_KINDS,
    SyntheticTransactions,
    invalid_payload,
    write_transactions,
)

__all__ = [
    "BLOCKED_MERCHANTS",
    "DEFAULT_START",
    "INVALID_KINDS",
    "SyntheticTransactions",
    "invalid_payload",
    "write_transactions",
]
