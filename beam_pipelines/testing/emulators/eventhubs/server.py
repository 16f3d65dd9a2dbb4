"""The emulator's server: a selectors loop over proton's engine, in a background thread."""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from typing import Any, Iterable

from beam_pipelines.testing.emulators.eventhubs.amqp import Wire
from beam_pipelines.testing.emulators.eventhubs.broker import Broker
from beam_pipelines.testing.servers import free_port

__all__ = ["EventHubsEmulator", "send_events"]

_LOG = logging.getLogger(__name__)

# The emulators running in this process, by "host:port": send_events stores events in
# them directly (see there).
_RUNNING: dict[str, EventHubsEmulator] = {}


class _Client:
    def __init__(self, sock, transport, connection, collector) -> None:
        self.sock = sock
        self.transport = transport
        self.connection = connection
        self.collector = collector
        self.wire = Wire()
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
            port = free_port()
        self.host, self.port = host, port
        self._broker = Broker(dict(hubs or {}), namespace=f"{host}:{port}")
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

    def seed(self, hub: str, bodies: Iterable[bytes], partition: str | None = None) -> None:
        """Store ``bodies`` as plain events (``EventData(body)``) of ``partition``, or round
        robin over the hub's partitions, as a producer would; attached receivers get them."""
        self._broker.seed(hub, list(bodies), partition)
        if self._thread is not None:
            self._wake[1].send(b"p")  # receivers are served from the I/O thread only

    def start(self) -> EventHubsEmulator:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, self.port))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="eventhubs-emulator", daemon=True)
        self._thread.start()
        _RUNNING[f"{self.host}:{self.port}"] = self
        return self

    def stop(self) -> None:
        _RUNNING.pop(f"{self.host}:{self.port}", None)
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
                        self._broker.pump_all()  # what seed() stored; flushed below
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
    """Send ``bodies`` round-robin over ``partitions`` partition ids (one batch per
    partition, in order), or to the hub when ``partitions`` is None.

    An emulator of this process stores them directly (:meth:`EventHubsEmulator.seed`): the
    official client takes ~0.45 s of client-side polling per connection and opens one per
    partition plus two, which made seeding a hub most of an Event Hubs test. The client's
    send path is tested on its own (test_eventhubs.py, WriteToEventHubs). Any other
    endpoint gets the events through the official client.
    """
    bodies = list(bodies)
    endpoint = connection_string.split("sb://", 1)[-1].split(";", 1)[0].rstrip("/")
    local = _RUNNING.get(endpoint)
    if local is not None:
        if partitions:
            for index in range(partitions):
                local.seed(hub, bodies[index::partitions], str(index))
        else:
            local.seed(hub, bodies)
        return
    from azure.eventhub import EventData, EventHubProducerClient

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
