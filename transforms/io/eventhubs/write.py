"""``WriteToEventHubs``: JSON of each record, batched per partition key (a record field) so
that events with one key land in one partition, in order; a failure fails the bundle."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.base.errors import SinkError
from transforms.io.eventhubs.client import check_connection, client_module, wrap
from transforms.sinks import as_dict

__all__ = ["WriteToEventHubs"]

_NAMESPACE = "eventhubs"


def _json_default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


def _nothing() -> None:
    pass


class _WriteEvents(beam.DoFn):
    def __init__(self, connection_string: str, eventhub: str, key_field: Optional[str],
                 value_fn: Optional[Callable[[Any], bytes]] = None) -> None:
        self._connection_string = connection_string
        self._eventhub = eventhub
        self._key_field = key_field
        self._value_fn = value_fn
        self._written = Metrics.counter(_NAMESPACE, "events_written")

    def setup(self) -> None:
        # A registry-backed encoder (RecordEncoder) prepares its schema first.
        getattr(self._value_fn, "setup", _nothing)()
        azure_eh = client_module()
        self._client = azure_eh.EventHubProducerClient.from_connection_string(
            str.__str__(self._connection_string), eventhub_name=self._eventhub, retry_total=2)
        self._event_data = azure_eh.EventData

    def start_bundle(self) -> None:
        self._pending: dict[Optional[str], list[bytes]] = {}

    # No return annotation: Beam 2.78 rejects a process() annotated "-> None" (it reads
    # the annotation as the type of the outputs, which must be iterable).
    def process(self, record: Any):
        row = record if isinstance(record, (bytes, str)) else as_dict(record)
        if isinstance(row, str):
            row = row.encode("utf-8")
        if isinstance(row, bytes):
            body = row
        elif self._value_fn is not None:
            body = self._value_fn(row)
        else:
            body = json.dumps(row, default=_json_default).encode()
        key = None
        if self._key_field and isinstance(row, dict) and row.get(self._key_field) is not None:
            key = str(row[self._key_field])
        self._pending.setdefault(key, []).append(body)
        if sum(len(v) for v in self._pending.values()) >= 5000:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        try:
            for key, bodies in self._pending.items():
                batch = self._client.create_batch(partition_key=key)
                for body in bodies:
                    try:
                        batch.add(self._event_data(body))
                    except ValueError:  # the batch is full: send it, start the next
                        self._client.send_batch(batch)
                        batch = self._client.create_batch(partition_key=key)
                        batch.add(self._event_data(body))
                if len(batch):
                    self._client.send_batch(batch)
                self._written.inc(len(bodies))
        except Exception as exc:
            if isinstance(exc, SinkError):
                raise
            raise wrap(exc, f"cannot write to {self._eventhub!r}", SinkError) from None
        self._pending = {}

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()


class WriteToEventHubs(beam.PTransform):
    """Records (NamedTuple, dict, str or bytes) -> one event each, JSON for records,
    batched per partition key (the ``partition_key_field`` of each record). Nothing is
    dead-lettered: a failed send fails the bundle, which the runner retries.

    :param connection_string: a namespace or hub connection string (never logged).
    :param eventhub: the hub (default: the connection string's EntityPath).
    :param partition_key_field: the record field whose value is the partition key.
    :param value_fn: a record (as a dict) -> the event body, instead of JSON (a
        :class:`transforms.formats.RecordEncoder`: Avro, Protobuf, JSON Schema).
    """

    def __init__(self, connection_string: str, eventhub: Optional[str] = None, *,
                 partition_key_field: Optional[str] = None,
                 value_fn: Optional[Callable[[Any], bytes]] = None) -> None:
        super().__init__()
        self._eventhub = check_connection(connection_string, eventhub, "--eventhub")
        self._connection_string = connection_string
        self._key_field = partition_key_field
        self._value_fn = value_fn

    def expand(self, records: beam.PCollection) -> beam.pvalue.PDone:
        records | "Send" >> beam.ParDo(
            _WriteEvents(self._connection_string, self._eventhub, self._key_field,
                         self._value_fn))
        return beam.pvalue.PDone(records.pipeline)
