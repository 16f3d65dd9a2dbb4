"""The input contracts: what each pipeline accepts, and how a record of it is parsed.

A contract is the record type valid inputs become, the parse function (a decoded JSON
object -> ``(record, event second)``, or :class:`~transforms.validation.InvalidRecord`
with the reason) and the seeded generator of synthetic inputs in that contract (the
default ``--source=synthetic``). :meth:`InputContract.parser` is the Beam transform:
RawRecords -> ``ParsedRecords(valid, dead_letters)``.

* :data:`USER_EVENTS` (``user_events``): the pageviews input;
* :data:`IOT_READINGS` (``iot_readings``): the iot_alerts input;
* :data:`TRANSACTIONS` (``transactions``): the fraud input (card transactions).
* :data:`SERVICE_LOGS` (``service_logs``): the error_rate input.

Write a new one the same way: a NamedTuple, a parse function built from the validators
of ``transforms.validation``, a generator with ``payloads(count, first)``.
"""

from __future__ import annotations

from transforms.contracts.iot_readings import IOT_READINGS, parse_reading
from transforms.contracts.service_logs import SERVICE_LOGS, parse_service_log
from transforms.contracts.spec import InputContract
from transforms.contracts.transactions import TRANSACTIONS, parse_transaction
from transforms.contracts.user_events import USER_EVENTS, parse_user_event

__all__ = ["IOT_READINGS", "SERVICE_LOGS", "TRANSACTIONS", "USER_EVENTS", "InputContract",
           "parse_reading", "parse_service_log", "parse_transaction", "parse_user_event"]
