"""A local Azure Event Hubs emulator: an AMQP 1.0 broker the official client talks to unchanged.

There is no Event Hubs emulator to install here (no Docker), so this is a protocol-level
one written on python-qpid-proton. Point the official ``azure-eventhub`` client at it with
a connection string containing ``UseDevelopmentEmulator=true`` (plain TCP, no TLS)::

    Endpoint=sb://127.0.0.1:PORT;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true

Run it on its own with ``python -m beam_pipelines.testing.emulators.eventhubs --port P
--hub NAME:PARTITIONS`` or in-process with :class:`EventHubsEmulator` (the pytest fixture
``eventhubs_emulator`` does that).

What the service does that this emulator does too:

* SASL ANONYMOUS then claims-based security: ``put-token`` on ``$cbs`` is accepted
  (tokens are not verified: it is a development emulator, like Microsoft's own);
* ``$management`` READ of hub properties (``com.microsoft:eventhub``) and partition
  properties (``com.microsoft:partition``), with 404 for an unknown hub or partition;
* send to the hub (round-robin), to a partition key (a stable hash of the key, so one
  key always lands in one partition) or to a partition id; batched messages (the
  client's batch format: one outer message whose data sections are encoded messages)
  are split into events; each event gets ``x-opt-sequence-number``, ``x-opt-offset``
  (a byte offset, as a string), ``x-opt-enqueued-time`` and ``x-opt-partition-key``;
* receive from ``.../ConsumerGroups/CG/Partitions/P`` with the selector filter the
  client sends (offset, sequence number or enqueued time, ``>`` or ``>=``);
* owner level (``com.microsoft:epoch``): a receiver with a higher epoch detaches the
  others of that consumer group and partition with ``amqp:link:stolen``; a lower or
  missing epoch next to an epoch receiver is refused with the same condition;
* an unknown hub, partition or consumer group detaches the link with ``amqp:not-found``.

Not emulated: TLS, token validation, retention (events are kept in memory forever),
consumer-group creation (every consumer group name exists), geo-replication.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

_LOG = logging.getLogger(__name__)

_SECTION_MESSAGE_ANNOTATIONS = 0x72
_SECTION_DATA = 0x75
_MESSAGE_SECTIONS = range(0x70, 0x79)

_ADDRESS = re.compile(
    r"^(?:amqps?://[^/]+/)?(?P<hub>[^/]+)"
    r"(?:/ConsumerGroups/(?P<group>[^/]+))?(?:/Partitions/(?P<partition>[^/]+))?/?$",
    re.IGNORECASE,
)
_SELECTOR = re.compile(
    r"amqp\.annotation\.x-opt-(?P<field>offset|sequence-number|enqueued-time)\s*"
    r"(?P<op>>=|>|=)\s*'(?P<value>-?\d+|@latest)'"
)


def partition_for_key(key: str, partitions: int) -> int:
    """The partition a partition key maps to: stable across runs and processes."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


@dataclass
class _Event:
    sequence_number: int
    offset: int
    enqueued_ms: int
    partition_key: str | None
    raw: bytes  # the encoded message as the producer sent it


@dataclass
class _Partition:
    id: str
    events: list[_Event] = field(default_factory=list)
    next_offset: int = 0

    def append(self, raw: bytes, partition_key: str | None, now_ms: int) -> _Event:
        event = _Event(len(self.events), self.next_offset, now_ms, partition_key, raw)
        self.events.append(event)
        self.next_offset += len(raw)
        return event

    def start_index(self, selector: str | None) -> int:
        """Index of the first event a receiver with this selector filter gets."""
        if not selector:
            return 0
        match = _SELECTOR.search(selector)
        if not match:
            raise ValueError(f"unsupported selector filter {selector!r}")
        if match["value"] == "@latest":
            return len(self.events)
        value = int(match["value"])
        key = {"offset": lambda e: e.offset, "sequence-number": lambda e: e.sequence_number,
               "enqueued-time": lambda e: e.enqueued_ms}[match["field"]]
        inclusive = match["op"] in (">=", "=")
        for index, event in enumerate(self.events):
            if key(event) > value or (inclusive and key(event) == value):
                return index
        return len(self.events)


@dataclass
class _Hub:
    name: str
    partitions: list[_Partition]
    created_ms: int
    round_robin: Iterator[int] = field(default_factory=itertools.count)

    def partition(self, partition_id: str) -> _Partition | None:
        for partition in self.partitions:
            if partition.id == partition_id:
                return partition
        return None


@dataclass
class _Consumer:
    link: Any
    hub: str
    group: str
    partition: _Partition
    epoch: int | None
    position: int
    tags: Iterator[int] = field(default_factory=itertools.count)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _split_sections(raw: bytes) -> list[tuple[int, Any, bytes]]:
    """(descriptor code, value, encoded bytes) for each section of an encoded message."""
    from proton import Data

    sections = []
    rest = raw
    while rest:
        data = Data()
        used = data.decode(rest)
        if used <= 0:
            raise ValueError("undecodable AMQP section")
        data.rewind()
        data.next()
        value = data.get_object()
        code = getattr(value, "descriptor", None)
        inner = getattr(value, "value", value)
        if isinstance(inner, memoryview):  # a view into ``data``: copy before it is freed
            inner = bytes(inner)
        sections.append((int(code) if code is not None else -1, inner, rest[:used]))
        rest = rest[used:]
    return sections


def _annotation(annotations: dict | None, name: str) -> Any:
    for key, value in (annotations or {}).items():
        if str(key) == name:
            return value
    return None


def _unbatch(raw: bytes) -> list[tuple[bytes, str | None]]:
    """The events in one transfer: a batch (data sections that are messages) or one message.

    Proton does not expose a delivery's message-format, so a batch is recognised by its
    shape: every data section decodes completely as an AMQP message. A user payload that
    happens to be a valid encoded AMQP message would be taken for a batch (never JSON).
    """
    sections = _split_sections(raw)
    outer_key = None
    for code, value, _ in sections:
        if code == _SECTION_MESSAGE_ANNOTATIONS:
            outer_key = _annotation(value, "x-opt-partition-key")
    bodies = [value for code, value, _ in sections if code == _SECTION_DATA]
    inner: list[bytes] = []
    for body in bodies:
        body = bytes(body)
        try:
            inner_sections = _split_sections(body)
        except Exception:  # not a message: a plain payload
            inner = []
            break
        if not inner_sections or any(code not in _MESSAGE_SECTIONS for code, _, _ in inner_sections):
            inner = []
            break
        inner.append(body)
    if not inner:
        return [(raw, outer_key)]
    events = []
    for body in inner:
        key = outer_key
        for code, value, _ in _split_sections(body):
            if code == _SECTION_MESSAGE_ANNOTATIONS:
                key = _annotation(value, "x-opt-partition-key") or key
        events.append((body, key))
    return events


def _with_annotations(event: _Event) -> bytes:
    """The event as a consumer receives it: the sent message plus the service's annotations."""
    from proton import Data, Described, symbol, timestamp, ulong

    annotations: dict = {}
    rest = []
    for code, value, encoded in _split_sections(event.raw):
        if code == _SECTION_MESSAGE_ANNOTATIONS:
            annotations.update(value or {})
        else:
            rest.append((code, encoded))
    annotations[symbol("x-opt-sequence-number")] = event.sequence_number
    annotations[symbol("x-opt-offset")] = str(event.offset)
    annotations[symbol("x-opt-enqueued-time")] = timestamp(event.enqueued_ms)
    if event.partition_key is not None:
        annotations[symbol("x-opt-partition-key")] = str(event.partition_key)
    data = Data()
    data.put_object(Described(ulong(_SECTION_MESSAGE_ANNOTATIONS), annotations))
    encoded_annotations = data.encode()
    # Sections must stay in order: header and delivery annotations before, the rest after.
    before = [encoded for code, encoded in rest if code < _SECTION_MESSAGE_ANNOTATIONS]
    after = [encoded for code, encoded in rest if code > _SECTION_MESSAGE_ANNOTATIONS]
    return _padded_message(b"".join(before) + encoded_annotations + b"".join(after))


class _Broker:
    """The proton event handler: all broker state lives here, touched only by the reactor
    thread except :meth:`create_hub` (guarded by the lock)."""

    def __init__(self, hubs: dict[str, int], namespace: str) -> None:
        self.lock = threading.Lock()
        self.namespace = namespace
        self.hubs: dict[str, _Hub] = {}
        for name, count in hubs.items():
            self.create_hub(name, count)
        self.consumers: dict[Any, _Consumer] = {}
        self.replies: dict[Any, list[bytes]] = {}  # $cbs/$management sender link -> outbox
        self.tags = itertools.count()

    # -- administration ---------------------------------------------------------------
    def create_hub(self, name: str, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions: expected a whole number > 0, got {partitions!r}")
        with self.lock:
            if name not in self.hubs:
                self.hubs[name] = _Hub(name, [_Partition(str(i)) for i in range(partitions)],
                                       _now_ms())

    def hub(self, name: str) -> _Hub | None:
        with self.lock:
            return self.hubs.get(name)

    # -- connection, session, link lifecycle ------------------------------------------
    def on_connection_bound(self, event) -> None:
        sasl = event.transport.sasl()
        sasl.allow_insecure_mechs = True
        sasl.allowed_mechs("ANONYMOUS")

    def on_connection_remote_open(self, event) -> None:
        if event.connection.state & event.connection.LOCAL_UNINIT:
            event.connection.container = f"eventhubs-emulator-{uuid.uuid4().hex[:8]}"
            event.connection.open()

    def on_session_remote_open(self, event) -> None:
        if event.session.state & event.session.LOCAL_UNINIT:
            event.session.incoming_capacity = 1 << 24
            event.session.open()

    def on_link_remote_open(self, event) -> None:
        link = event.link
        if not link.state & link.LOCAL_UNINIT:
            return
        try:
            if link.is_receiver:
                self._open_incoming(link)
            else:
                self._open_outgoing(link)
        except _LinkRefused as refused:
            self._refuse(link, refused.condition, refused.description)

    def on_link_remote_close(self, event) -> None:
        self._forget(event.link)
        if not event.link.state & event.link.LOCAL_CLOSED:
            event.link.close()

    def on_session_remote_close(self, event) -> None:
        if not event.session.state & event.session.LOCAL_CLOSED:
            event.session.close()

    def on_connection_remote_close(self, event) -> None:
        if not event.connection.state & event.connection.LOCAL_CLOSED:
            event.connection.close()

    def on_connection_unbound(self, event) -> None:
        self.forget_connection(event.connection)

    def forget_connection(self, connection) -> None:
        for link in [link for link in self.consumers if link.connection == connection]:
            self._forget(link)
        for link in [link for link in self.replies if link.connection == connection]:
            self._forget(link)

    def on_transport_error(self, event) -> None:
        condition = event.transport.condition
        if condition:
            _LOG.debug("transport error: %s %s", condition.name, condition.description)

    def _forget(self, link) -> None:
        self.consumers.pop(link, None)
        self.replies.pop(link, None)

    def _refuse(self, link, condition: str, description: str) -> None:
        from proton import Condition

        self._copy_terminus(link)
        link.open()
        link.condition = Condition(condition, description)
        link.close()

    @staticmethod
    def _copy_terminus(link) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)

    # -- links the client sends on: producers, $cbs and $management requests --------
    def _open_incoming(self, link) -> None:
        address = link.remote_target.address or ""
        if address not in ("$cbs", "$management"):
            self._resolve(address, producer=True)
        self._copy_terminus(link)
        link.open()
        link.flow(1000)

    def on_delivery(self, event) -> None:
        link, delivery = event.link, event.delivery
        if link.is_sender:
            if delivery.remote_state or delivery.remote_settled:
                delivery.settle()
            return
        if not delivery.readable or delivery.partial:
            return
        raw = link.recv(delivery.pending) or b""
        link.advance()
        address = link.target.address or ""
        outcome, condition = delivery.ACCEPTED, None
        try:
            if address == "$cbs":
                self._reply(link, raw, self._cbs(raw))
            elif address == "$management":
                self._reply(link, raw, self._management(raw))
            else:
                self._publish(address, raw)
        except _LinkRefused as refused:
            from proton import Condition

            outcome, condition = delivery.REJECTED, Condition(refused.condition, refused.description)
        if condition is not None:
            delivery.local.condition = condition
        delivery.update(outcome)
        delivery.settle()
        if link.credit < 500:
            link.flow(1000 - link.credit)

    def _publish(self, address: str, raw: bytes) -> None:
        hub, _, partition = self._resolve(address, producer=True)
        now = _now_ms()
        touched = set()
        with self.lock:
            for body, key in _unbatch(raw):
                target = partition
                if target is None:
                    if key is not None:
                        target = hub.partitions[partition_for_key(str(key), len(hub.partitions))]
                    else:
                        target = hub.partitions[next(hub.round_robin) % len(hub.partitions)]
                target.append(body, None if key is None else str(key), now)
                touched.add(id(target))
        for consumer in list(self.consumers.values()):
            if id(consumer.partition) in touched:
                self._pump(consumer)

    def _resolve(self, address: str, *, producer: bool):
        match = _ADDRESS.match(address)
        if not match:
            raise _LinkRefused("amqp:not-found", f"The messaging entity '{address}' could not be found.")
        hub = self.hub(match["hub"])
        if hub is None:
            raise _LinkRefused(
                "amqp:not-found",
                f"The messaging entity 'sb://{self.namespace}/{match['hub']}' could not be found. "
                f"(emulator hubs: {', '.join(sorted(self.hubs)) or 'none'})",
            )
        partition = None
        if match["partition"] is not None:
            partition = hub.partition(match["partition"])
            if partition is None:
                raise _LinkRefused(
                    "amqp:not-found",
                    f"The specified partition is invalid for an EventHub partition sender or "
                    f"receiver. It should be between 0 and {len(hub.partitions) - 1}. "
                    f"(partition {match['partition']!r} of {hub.name!r})",
                )
        elif not producer:
            raise _LinkRefused("amqp:not-found", f"A receiver needs a partition: {address!r}")
        return hub, match["group"] or "$Default", partition

    # -- $cbs and $management -----------------------------------------------------------
    def _cbs(self, raw: bytes):
        from proton import Message

        request = Message()
        request.decode(raw)
        properties: dict[Any, Any] = dict(request.properties or {})
        operation = properties.get("operation")
        if operation != "put-token":
            return request, 400, f"unsupported $cbs operation {operation!r}", None
        return request, 202, "Accepted", None

    def _management(self, raw: bytes):
        from proton import UNDESCRIBED, Array, Data, Message, timestamp

        request = Message()
        request.decode(raw)
        props: dict[Any, Any] = dict(request.properties or {})
        operation, kind = props.get("operation"), props.get("type")
        name = props.get("name")
        if operation != "READ":
            return request, 400, f"unsupported $management operation {operation!r}", None
        hub = self.hub(str(name))
        if hub is None:
            return request, 404, (f"The messaging entity 'sb://{self.namespace}/{name}' could not "
                                  f"be found."), None
        if kind == "com.microsoft:eventhub":
            return request, 200, "OK", {
                "name": hub.name,
                "type": "com.microsoft:eventhub",
                "created_at": timestamp(hub.created_ms),
                "partition_count": len(hub.partitions),
                "partition_ids": Array(UNDESCRIBED, Data.STRING,  # type: ignore[arg-type]
                                       *[p.id for p in hub.partitions]),
            }
        if kind == "com.microsoft:partition":
            partition = hub.partition(str(props.get("partition")))
            if partition is None:
                return request, 404, (f"partition {props.get('partition')!r} not found in "
                                      f"{hub.name!r} (0..{len(hub.partitions) - 1})"), None
            with self.lock:
                last = partition.events[-1] if partition.events else None
            return request, 200, "OK", {
                "name": hub.name,
                "type": "com.microsoft:partition",
                "partition": partition.id,
                "begin_sequence_number": 0,
                "last_enqueued_sequence_number": last.sequence_number if last else -1,
                "last_enqueued_offset": str(last.offset) if last else "-1",
                "last_enqueued_time_utc": timestamp(last.enqueued_ms if last else 0),
                "is_partition_empty": last is None,
            }
        return request, 400, f"unsupported $management type {kind!r}", None

    def _reply(self, link, raw: bytes, result) -> None:
        from proton import Message

        request, status, description, body = result
        # Both spellings: the service's, and the one this client version looks up.
        properties = {"status-code": status, "status-description": description,
                      "statusDescription": description}
        if status == 404:
            properties["error-condition"] = "amqp:not-found"
        response = Message(correlation_id=request.id, properties=properties, body=body)
        for candidate in self.replies:
            if (candidate.session == link.session
                    and candidate.source.address == link.target.address):
                self.replies[candidate].append(_padded_message(response.encode()))
                self._pump_replies(candidate)
                return
        _LOG.warning("no reply link for %s request", link.target.address)

    def _pump_replies(self, link) -> None:
        outbox = self.replies.get(link)
        while outbox and link.credit > 0:
            link.delivery(str(next(self.tags)).encode())
            link.send(outbox.pop(0))
            link.advance()

    # -- links the client receives on: consumers and replies ---------------------------
    def _open_outgoing(self, link) -> None:
        address = link.remote_source.address or ""
        if address in ("$cbs", "$management"):
            self._copy_terminus(link)
            link.open()
            self.replies[link] = []
            return
        hub, group, partition = self._resolve(address, producer=False)
        selector = None
        filters = link.remote_source.filter
        if filters is not None:
            filters.rewind()
            if filters.next() is not None:
                for value in (filters.get_object() or {}).values():
                    selector = getattr(value, "value", value)
        epoch = None
        for key, value in (link.remote_properties or {}).items():
            if str(key) == "com.microsoft:epoch":
                epoch = int(value)
        rivals = [c for c in self.consumers.values()
                  if c.hub == hub.name and c.group.lower() == group.lower()
                  and c.partition is partition]
        for rival in rivals:
            if rival.epoch is not None and (epoch is None or rival.epoch > epoch):
                raise _LinkRefused(
                    "amqp:link:stolen",
                    f"Receiver with epoch {epoch} cannot be created because a receiver with a "
                    f"higher epoch {rival.epoch} already exists for partition {partition.id} of "
                    f"consumer group {group}.",
                )
        if epoch is not None:
            for rival in rivals:
                if rival.epoch is None or rival.epoch <= epoch:
                    self.consumers.pop(rival.link, None)
                    self._steal(rival, epoch)
        try:
            with self.lock:
                position = partition.start_index(str(selector) if selector else None)
        except ValueError as exc:
            raise _LinkRefused("amqp:not-implemented", str(exc)) from None
        self._copy_terminus(link)
        link.open()
        consumer = _Consumer(link, hub.name, group, partition, epoch, position)
        self.consumers[link] = consumer
        self._pump(consumer)

    @staticmethod
    def _steal(rival: _Consumer, epoch: int) -> None:
        from proton import Condition

        rival.link.condition = Condition(
            "amqp:link:stolen",
            f"New receiver with higher epoch of '{epoch}' is created hence current receiver "
            f"with epoch '{rival.epoch}' is getting disconnected.",
        )
        rival.link.close()

    def on_link_flow(self, event) -> None:
        link = event.link
        if link.is_sender:
            if link in self.consumers:
                self._pump(self.consumers[link])
            elif link in self.replies:
                self._pump_replies(link)

    def _pump(self, consumer: _Consumer) -> None:
        link = consumer.link
        while link.credit > 0:
            with self.lock:
                if consumer.position >= len(consumer.partition.events):
                    break
                event = consumer.partition.events[consumer.position]
            consumer.position += 1
            link.delivery(f"{consumer.partition.id}-{next(consumer.tags)}".encode())
            link.send(_with_annotations(event))
            link.advance()


class _LinkRefused(Exception):
    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


# -- frame layout ---------------------------------------------------------------------
# Proton omits trailing null fields of a performative's list, as AMQP 1.0 allows; the
# service sends every field, and the client's pure-Python transport indexes them
# (frame[4] of open, frame[13] of attach, ...). Outgoing frames are therefore re-laid out
# with every field present: same values, lists padded with nulls to the full arity.
_ARITY = {
    0x10: 10, 0x11: 8, 0x12: 14, 0x13: 11, 0x14: 11, 0x15: 6, 0x16: 3, 0x17: 1, 0x18: 1,
    0x1D: 3, 0x23: 2, 0x25: 1, 0x27: 3, 0x28: 11, 0x29: 7,
    0x40: 1, 0x41: 3, 0x42: 1, 0x43: 1, 0x44: 2,
}
_FIXED = {0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0, 0x94: 16, 0x98: 16}
for _code in range(0x50, 0x57):
    _FIXED[_code] = 1
for _code in (0x60, 0x61):
    _FIXED[_code] = 2
for _code in range(0x70, 0x75):
    _FIXED[_code] = 4
for _code in range(0x80, 0x85):
    _FIXED[_code] = 8


def _skip(buf: bytes, pos: int) -> int:
    """Position after the encoded value starting at ``pos``."""
    code = buf[pos]
    pos += 1
    if code == 0x00:
        return _skip(buf, _skip(buf, pos))
    if code in _FIXED:
        return pos + _FIXED[code]
    if code in (0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0):
        return pos + 1 + buf[pos]
    if code in (0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0):
        return pos + 4 + int.from_bytes(buf[pos:pos + 4], "big")
    raise ValueError(f"unknown AMQP type constructor 0x{code:02x}")


def _list_items(buf: bytes, pos: int) -> tuple[list[bytes], int]:
    code = buf[pos]
    if code == 0x45:
        return [], pos + 1
    if code == 0xC0:
        count, start = buf[pos + 2], pos + 3
    elif code == 0xD0:
        count, start = int.from_bytes(buf[pos + 5:pos + 9], "big"), pos + 9
    else:
        raise ValueError("not a list")
    items = []
    for _ in range(count):
        end = _skip(buf, start)
        items.append(buf[start:end])
        start = end
    return items, _skip(buf, pos)


def _padded(buf: bytes, pos: int = 0) -> tuple[bytes, int]:
    """(re-encoded value, end) with described composite lists padded to full arity."""
    end = _skip(buf, pos)
    if buf[pos] == 0x00:
        descriptor_end = _skip(buf, pos + 1)
        descriptor = buf[pos + 1:descriptor_end]
        code = None
        if descriptor[0] == 0x53:
            code = descriptor[1]
        elif descriptor[0] == 0x80:
            code = int.from_bytes(descriptor[1:9], "big")
        if code in _ARITY and buf[descriptor_end] in (0x45, 0xC0, 0xD0):
            items, _ = _list_items(buf, descriptor_end)
            items = [_padded(item)[0] for item in items]
            items += [b"\x40"] * (_ARITY[code] - len(items))
            body = b"".join(items)
            encoded = (b"\xd0" + (len(body) + 4).to_bytes(4, "big")
                       + len(items).to_bytes(4, "big") + body)
            return b"\x00" + descriptor + encoded, end
    return buf[pos:end], end


def _relayout_frame(frame: bytes) -> bytes:
    doff = frame[4] * 4
    body = frame[doff:]
    if not body:  # an empty (heartbeat) frame
        return frame
    performative, used = _padded(body)
    new_body = performative + body[used:]
    header = frame[4:doff]
    return (len(new_body) + doff).to_bytes(4, "big") + header + new_body


def _padded_message(raw: bytes) -> bytes:
    """A message's header and properties sections with every field, as the service sends."""
    out = []
    pos = 0
    while pos < len(raw):
        section, pos = _padded_sections(raw, pos)
        out.append(section)
    return b"".join(out)


_SECTION_ARITY = {0x70: 5, 0x73: 13}


def _padded_sections(raw: bytes, pos: int) -> tuple[bytes, int]:
    end = _skip(raw, pos)
    if raw[pos] == 0x00 and raw[pos + 1] == 0x53 and raw[pos + 2] in _SECTION_ARITY \
            and raw[pos + 3] in (0x45, 0xC0, 0xD0):
        items, _ = _list_items(raw, pos + 3)
        items += [b"\x40"] * (_SECTION_ARITY[raw[pos + 2]] - len(items))
        body = b"".join(items)
        return (raw[pos:pos + 3] + b"\xd0" + (len(body) + 4).to_bytes(4, "big")
                + len(items).to_bytes(4, "big") + body), end
    return raw[pos:end], end


class _Wire:
    """Re-lays out proton's outgoing bytes frame by frame (protocol headers pass through)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        out = []
        while True:
            if self.pending[:4] == b"AMQP" and len(self.pending) >= 8:
                out.append(self.pending[:8])
                self.pending = self.pending[8:]
                continue
            if len(self.pending) < 8 or self.pending[:4] == b"AMQP":
                break
            size = int.from_bytes(self.pending[:4], "big")
            if len(self.pending) < size:
                break
            frame, self.pending = self.pending[:size], self.pending[size:]
            out.append(_relayout_frame(frame))
        return b"".join(out)


class _Client:
    def __init__(self, sock, transport, connection, collector) -> None:
        self.sock = sock
        self.transport = transport
        self.connection = connection
        self.collector = collector
        self.wire = _Wire()
        self.outgoing = b""
        self.closed = False


class EventHubsEmulator:
    """The broker on ``host:port`` (a free port when 0), served by a background thread.

    ``connection_string`` is what clients use; :meth:`create_hub` adds a hub at any time.
    Use as a context manager or call :meth:`start` / :meth:`stop`. The I/O loop is our
    own (selectors + proton's engine) so every outgoing frame can be re-laid out.
    """

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1",
                 hubs: dict[str, int] | None = None) -> None:
        if port == 0:
            from beam_pipelines.testing.servers import free_port

            port = free_port()
        self.host, self.port = host, port
        self._broker = _Broker(dict(hubs or {}), namespace=f"{host}:{port}")
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._listener: Any = None
        self._wake: Any = None

    @property
    def connection_string(self) -> str:
        return (f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
                f"SharedAccessKey=emulator-key;UseDevelopmentEmulator=true")

    def create_hub(self, name: str, partitions: int = 4) -> str:
        """Create hub ``name`` with ``partitions`` partitions (no-op if it exists); returns name."""
        self._broker.create_hub(name, partitions)
        return name

    def receivers(self, hub: str, partition: str,
                  consumer_group: str = "$Default") -> list[int | None]:
        """Owner levels (None: no level) of the receivers attached to a partition now; lets a
        test wait for a receiver to be attached instead of sleeping."""
        while True:
            try:  # the emulator thread may change the dict while we copy it: copy again
                consumers = list(self._broker.consumers.values())
                break
            except RuntimeError:
                continue
        return [c.epoch for c in consumers
                if c.hub == hub and c.partition.id == partition
                and c.group.lower() == consumer_group.lower()]

    def start(self) -> EventHubsEmulator:
        import socket

        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, self.port))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="eventhubs-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._wake[1].send(b"x")
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> EventHubsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the I/O loop -------------------------------------------------------------------
    def _serve(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        selector.register(self._wake[0], selectors.EVENT_READ, "wake")
        clients: dict[Any, _Client] = {}
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                deadline = None
                for client in list(clients.values()):
                    tick = client.transport.tick(now)
                    if tick:
                        deadline = tick if deadline is None else min(deadline, tick)
                    # Work done for another connection (a producer feeding this
                    # connection's consumer) leaves events and bytes here too.
                    self._dispatch(client)
                    if client.closed:
                        # An abrupt disconnect never detaches its links: forget them, or a
                        # dead receiver would keep its owner level.
                        self._broker.forget_connection(client.connection)
                        selector.unregister(client.sock)
                        client.sock.close()
                        del clients[client.sock]
                    else:
                        events = selectors.EVENT_READ
                        if client.outgoing:
                            events |= selectors.EVENT_WRITE
                        selector.modify(client.sock, events, client)
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                for key, mask in selector.select(timeout):
                    if key.data is None:
                        self._accept(selector, clients)
                    elif key.data == "wake":
                        self._wake[0].recv(64)
                    else:
                        try:
                            self._io(key.data, mask)
                        except Exception:  # one broken connection must not stop the others
                            _LOG.exception("Event Hubs emulator: connection failed")
                            key.data.closed = True
        finally:
            for client in clients.values():
                client.sock.close()
            selector.close()
            self._listener.close()
            for sock in self._wake:
                sock.close()

    def _accept(self, selector, clients) -> None:
        import selectors

        from proton import Collector, Connection, Transport

        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        transport = Transport(Transport.SERVER)
        sasl = transport.sasl()
        sasl.allow_insecure_mechs = True
        sasl.allowed_mechs("ANONYMOUS")
        transport.idle_timeout = 120.0
        connection = Connection()
        collector = Collector()
        connection.collect(collector)
        transport.bind(connection)
        client = _Client(sock, transport, connection, collector)
        clients[sock] = client
        selector.register(sock, selectors.EVENT_READ, client)
        self._dispatch(client)

    def _io(self, client: _Client, mask: int) -> None:
        import selectors

        if mask & selectors.EVENT_READ and not client.closed:
            try:
                data = client.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data:
                self._push(client, data)
            elif data == b"":
                client.transport.close_tail()
                client.closed = True
        self._dispatch(client)
        if mask & selectors.EVENT_WRITE:
            self._flush(client)

    def _push(self, client: _Client, data: bytes) -> None:
        # The transport takes at most capacity() bytes at a time; it frees capacity as it
        # decodes, so feed it in slices and handle the events of each.
        while data:
            capacity = client.transport.capacity()
            if capacity <= 0:
                client.transport.close_tail()
                client.closed = True
                return
            client.transport.push(data[:capacity])
            data = data[capacity:]
            self._dispatch(client)

    def _dispatch(self, client: _Client) -> None:
        collector = client.collector
        event = collector.peek()
        while event is not None:
            try:
                event.dispatch(self._broker)
            except Exception:  # a bug must not take the whole emulator down
                _LOG.exception("Event Hubs emulator: error handling %s", event.type)
            collector.pop()
            event = collector.peek()
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        while True:
            pending = client.transport.pending()
            if pending <= 0:
                if pending < 0 and not client.outgoing:
                    client.closed = True
                break
            data = client.transport.peek(pending)
            client.transport.pop(pending)
            client.outgoing += client.wire.feed(data)
        while client.outgoing:
            try:
                sent = client.sock.send(client.outgoing)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                client.outgoing = b""
                client.closed = True
                break
            client.outgoing = client.outgoing[sent:]


def send_events(connection_string: str, hub: str, bodies: Iterable[bytes],
                partitions: int | None = None) -> None:
    """Send ``bodies`` with the official client: round-robin over ``partitions`` partition
    ids (one batch per partition, in order), or to the hub when ``partitions`` is None."""
    from azure.eventhub import EventData, EventHubProducerClient

    bodies = list(bodies)
    targets: list[dict[str, Any]] = (
        [{"partition_id": str(p)} for p in range(partitions)] if partitions else [{}])
    with EventHubProducerClient.from_connection_string(connection_string, eventhub_name=hub) as producer:
        for index, target in enumerate(targets):
            batch = producer.create_batch(**target)
            for body in bodies[index::len(targets)]:
                try:
                    batch.add(EventData(body))
                except ValueError:  # the batch is full: send it, start the next
                    producer.send_batch(batch)
                    batch = producer.create_batch(**target)
                    batch.add(EventData(body))
            if len(batch):
                producer.send_batch(batch)


# -- Azurite: the Azure Blob Storage emulator, for checkpoint stores ---------------------
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def _azurite_binary() -> str:
    import os
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    candidates = [os.environ.get("AZURITE_BLOB", ""),
                  os.path.join(os.getcwd(), "node_modules", ".bin", "azurite-blob"),
                  os.path.join(root, "node_modules", ".bin", "azurite-blob"),
                  shutil.which("azurite-blob") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    from beam_pipelines.testing.servers import ServerUnavailable

    raise ServerUnavailable(
        "azurite-blob not found: run 'npm install --no-save azurite@3' in the repository "
        "(make test does), or set AZURITE_BLOB to the binary")


class AzuriteBlob:
    """``azurite-blob --inMemoryPersistence`` on a free port; ``connection_string`` for clients."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        from beam_pipelines.testing.servers import free_port

        self.host, self.port = host, port or free_port()
        self._process: Any = None
        self._log: Any = None

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://{self.host}:{self.port}/{AZURITE_ACCOUNT};")

    def start(self) -> AzuriteBlob:
        import subprocess
        import tempfile

        from beam_pipelines.testing.servers import ServerUnavailable, wait_for_port

        binary = _azurite_binary()
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [binary, "--inMemoryPersistence", "--blobHost", self.host, "--blobPort",
             str(self.port), "--skipApiVersionCheck", "--loose", "--silent"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(self.host, self.port, timeout=60, process=self._process)
        except ServerUnavailable as exc:
            self._log.seek(0)
            output = self._log.read().decode("utf-8", "replace")[-2000:]
            self.stop()
            raise ServerUnavailable(f"azurite-blob did not start: {exc}\n{output}") from None
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except Exception:
                self._process.kill()
                self._process.wait(10)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> AzuriteBlob:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _hub_spec(text: str) -> tuple[str, int]:
    name, _, count = text.partition(":")
    try:
        partitions = int(count or "4")
    except ValueError:
        partitions = 0
    if not name or partitions < 1:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME:PARTITIONS (PARTITIONS > 0), got {text!r}")
    return name, partitions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.testing.emulators.eventhubs",
        description="Local Azure Event Hubs emulator (AMQP 1.0, plain TCP).",
    )
    parser.add_argument("--port", type=int, default=5672, help="TCP port to listen on (default 5672).")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
    parser.add_argument("--hub", type=_hub_spec, action="append", default=[],
                        help="A hub to create, NAME or NAME:PARTITIONS (default 4); repeatable.")
    args = parser.parse_args(argv)
    emulator = EventHubsEmulator(args.port, host=args.host, hubs=dict(args.hub)).start()
    print(f"Event Hubs emulator listening on {args.host}:{args.port}", flush=True)
    print(f"connection string: {emulator.connection_string}", flush=True)
    try:
        while emulator._thread is not None and emulator._thread.is_alive():
            emulator._thread.join(1)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
