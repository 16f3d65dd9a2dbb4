"""The broker: the proton event handler that keeps the hubs and answers every link."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import uuid
from typing import Any

from beam_pipelines.testing.emulators.eventhubs.amqp import (
    data_message,
    padded_message,
    unbatch,
    with_annotations,
)
from beam_pipelines.testing.emulators.eventhubs.store import (
    Consumer,
    Hub,
    Partition,
    now_ms,
    partition_for_key,
)

__all__ = ["Broker"]

_LOG = logging.getLogger(__name__)

_ADDRESS = re.compile(
    r"^(?:amqps?://[^/]+/)?(?P<hub>[^/]+)"
    r"(?:/ConsumerGroups/(?P<group>[^/]+))?(?:/Partitions/(?P<partition>[^/]+))?/?$",
    re.IGNORECASE,
)


class Broker:
    """The proton event handler: all broker state lives here, touched only by the reactor
    thread except :meth:`create_hub` (guarded by the lock)."""

    def __init__(self, hubs: dict[str, int], namespace: str) -> None:
        self.lock = threading.Lock()
        self.namespace = namespace
        self.hubs: dict[str, Hub] = {}
        for name, count in hubs.items():
            self.create_hub(name, count)
        self.consumers: dict[Any, Consumer] = {}
        self.replies: dict[Any, list[bytes]] = {}  # $cbs/$management sender link -> outbox
        self.tags = itertools.count()

    # -- administration ---------------------------------------------------------------
    def create_hub(self, name: str, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions: expected a whole number > 0, got {partitions!r}")
        with self.lock:
            if name not in self.hubs:
                self.hubs[name] = Hub(name, [Partition(str(i)) for i in range(partitions)],
                                       now_ms())

    def hub(self, name: str) -> Hub | None:
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
        now = now_ms()
        touched = set()
        with self.lock:
            for body, key in unbatch(raw):
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

    def seed(self, hub_name: str, bodies: list[bytes], partition_id: str | None) -> None:
        """Store ``bodies`` as a producer's plain events to ``partition_id`` (or round robin),
        from any thread; receivers get them once :meth:`pump_all` runs on the I/O thread."""
        hub = self.hub(hub_name)
        if hub is None:
            raise KeyError(f"no hub {hub_name!r} (emulator hubs: {', '.join(sorted(self.hubs))})")
        now = now_ms()
        with self.lock:
            target = None if partition_id is None else hub.partition(partition_id)
            if partition_id is not None and target is None:
                raise KeyError(f"no partition {partition_id!r} in {hub_name!r}")
            for body in bodies:
                into = target or hub.partitions[next(hub.round_robin) % len(hub.partitions)]
                into.append(data_message(body), None, now)

    def pump_all(self) -> None:
        """Deliver what :meth:`seed` stored to every receiver with credit (I/O thread only)."""
        for consumer in list(self.consumers.values()):
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
                self.replies[candidate].append(padded_message(response.encode()))
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
        consumer = Consumer(link, hub.name, group, partition, epoch, position)
        self.consumers[link] = consumer
        self._pump(consumer)

    @staticmethod
    def _steal(rival: Consumer, epoch: int) -> None:
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

    def _pump(self, consumer: Consumer) -> None:
        link = consumer.link
        while link.credit > 0:
            with self.lock:
                if consumer.position >= len(consumer.partition.events):
                    break
                event = consumer.partition.events[consumer.position]
            consumer.position += 1
            link.delivery(f"{consumer.partition.id}-{next(consumer.tags)}".encode())
            link.send(with_annotations(event))
            link.advance()


class _LinkRefused(Exception):
    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description
