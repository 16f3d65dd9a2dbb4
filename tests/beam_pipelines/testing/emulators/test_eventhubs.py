"""The Event Hubs emulator, driven by the official azure-eventhub client (sync API)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from beam_pipelines.testing.emulators.eventhubs import partition_for_key, send_events
from beam_pipelines.testing.polling import wait_for

pytestmark = pytest.mark.integration




class Receiver:
    """A consumer client receiving one partition in a thread; events and errors collected."""

    def __init__(self, connection_string: str, hub: str, partition: str, position,
                 inclusive: bool = False, owner_level=None) -> None:
        self.events: list = []
        self.errors: list = []
        self.client = EventHubConsumerClient.from_connection_string(
            connection_string, "$Default", eventhub_name=hub, retry_total=0)
        kwargs = {"partition_id": partition, "starting_position": position,
                  "starting_position_inclusive": inclusive,
                  "on_error": lambda _ctx, error: self.errors.append(error)}
        if owner_level is not None:
            kwargs["owner_level"] = owner_level
        self.thread = threading.Thread(
            target=self.client.receive, args=(lambda _ctx, event: self.events.append(event),),
            kwargs=kwargs, daemon=True)
        self.thread.start()

    def bodies(self) -> list[str]:
        return [event.body_as_str() for event in self.events]

    def close(self) -> None:
        self.client.close()
        self.thread.join(10)


class Reads:
    """``read()``s of one test: closing a client takes most of a second (it joins its
    keep-alive thread, which sleeps in 1 s steps), so each is closed in the background
    while the next read runs, and :meth:`close` waits for all of them."""

    def __init__(self, connection_string: str, hub: str) -> None:
        self.connection_string, self.hub = connection_string, hub
        self.closers: list[threading.Thread] = []

    def __call__(self, partition, position, count, inclusive=False) -> list:
        receiver = Receiver(self.connection_string, self.hub, partition, position, inclusive)
        try:
            wait_for(lambda: len(receiver.events) >= count, what=f"{count} events")
            return list(receiver.events)
        finally:
            closer = threading.Thread(target=receiver.close, daemon=True)
            closer.start()
            self.closers.append(closer)

    def close(self) -> None:
        for closer in self.closers:
            closer.join(15)
            assert not closer.is_alive(), "a receiver did not close"


def test_send_receive_positions_and_properties(eventhubs_emulator, eventhub):
    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=3)
    producer = EventHubProducerClient.from_connection_string(conn, eventhub_name=hub)
    with producer:
        props = producer.get_eventhub_properties()
        assert props["eventhub_name"] == hub
        assert props["partition_ids"] == ["0", "1", "2"]
        empty = producer.get_partition_properties("1")
        assert empty["is_empty"] is True and empty["last_enqueued_sequence_number"] == -1

        batch = producer.create_batch(partition_key="device-7")  # a batch: one transfer
        for i in range(5):
            batch.add(EventData(f"keyed-{i}"))
        producer.send_batch(batch)
        producer.send_batch([EventData(f"p1-{i}") for i in range(3)], partition_id="1")
        producer.send_batch([EventData("p1-late")], partition_id="1")
        producer.send_event(EventData("round-robin"))

        keyed = str(partition_for_key("device-7", 3))
        keyed_props = producer.get_partition_properties(keyed)
        p1 = producer.get_partition_properties("1")
    assert keyed_props["last_enqueued_sequence_number"] >= 4 and not keyed_props["is_empty"]
    expected_p1 = 4 + (5 if keyed == "1" else 0)
    assert p1["last_enqueued_sequence_number"] + 1 >= expected_p1

    read = Reads(conn, hub)
    try:
        # The keyed batch: all five in the key's partition, in order, with the key annotated.
        events = read(keyed, "-1", 5)
        keyed_events = [e for e in events if e.partition_key == b"device-7"]
        assert [e.body_as_str() for e in keyed_events] == [f"keyed-{i}" for i in range(5)]

        # Partition 1 from the start, then from a sequence number, an offset, an enqueued time.
        events = [e for e in read("1", "-1", expected_p1) if e.body_as_str().startswith("p1")]
        assert [e.body_as_str() for e in events] == ["p1-0", "p1-1", "p1-2", "p1-late"]
        second, last = events[1], events[3]
        assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)
        from_seq = read("1", second.sequence_number, 3, inclusive=True)
        assert [e.body_as_str() for e in from_seq if e.body_as_str().startswith("p1")][:3] == \
            ["p1-1", "p1-2", "p1-late"]
        after_offset = read("1", str(events[2].offset), 1)
        assert after_offset[0].body_as_str() == "p1-late"
        assert int(last.offset) > int(second.offset)
        at_time = read("1", last.enqueued_time, 1, inclusive=True)
        assert at_time[0].sequence_number <= last.sequence_number
        assert isinstance(last.enqueued_time, dt.datetime)
    finally:
        read.close()


def test_owner_level_receivers_steal_and_refuse(eventhubs_emulator, eventhub):
    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=1)
    with EventHubProducerClient.from_connection_string(conn, eventhub_name=hub) as producer:
        producer.send_batch([EventData("e0")], partition_id="0")
    first = Receiver(conn, hub, "0", "-1", owner_level=1)
    second = third = None
    try:
        wait_for(lambda: first.events, what="the first receiver's event")
        second = Receiver(conn, hub, "0", "-1", owner_level=2)
        wait_for(lambda: second.events, what="the second receiver's event")
        wait_for(lambda: first.errors, what="the first receiver to be disconnected")
        assert "higher epoch of '2'" in str(first.errors[0])
        third = Receiver(conn, hub, "0", "-1", owner_level=0)
        wait_for(lambda: third.errors, what="the lower-epoch receiver to be refused")
        assert "higher epoch 2" in str(third.errors[0]) and not third.events
        assert not second.errors
    finally:  # closed side by side: each takes most of a second (see Reads)
        closers = [threading.Thread(target=r.close) for r in (first, second, third) if r]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()


def test_unknown_hub_and_partition_are_clear_errors(eventhubs_emulator, eventhub):
    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=2)
    with EventHubProducerClient.from_connection_string(
            conn, eventhub_name="no-such-hub", retry_total=0) as producer:
        with pytest.raises(EventHubError, match="404|could not be found"):
            producer.get_eventhub_properties()
    with EventHubProducerClient.from_connection_string(
            conn, eventhub_name=hub, retry_total=0) as producer:
        with pytest.raises(EventHubError, match="partition"):
            producer.send_batch([EventData("x")], partition_id="9")



def test_seeded_events_are_what_the_client_sends_and_reach_attached_receivers(
        eventhubs_emulator, eventhub):
    """send_events stores into an in-process emulator directly: the events must be the ones
    the official client's send makes, and a receiver attached before them gets them."""
    conn = eventhubs_emulator.connection_string
    sent, seeded = eventhub(partitions=1), eventhub(partitions=1)
    bodies = [b"short", b"x" * 300]  # both data-section sizes
    with EventHubProducerClient.from_connection_string(conn, eventhub_name=sent) as producer:
        producer.send_batch([EventData(b) for b in bodies], partition_id="0")
    receiver = Receiver(conn, seeded, "0", "-1")
    try:
        wait_for(lambda: eventhubs_emulator.receivers(seeded, "0") == [None],
                 what="the receiver attached")
        send_events(conn, seeded, bodies, partitions=1)
        wait_for(lambda: len(receiver.events) >= 2, what="the seeded events")
    finally:
        receiver.close()
    assert receiver.bodies() == ["short", "x" * 300]

    def stored(hub):
        events = eventhubs_emulator._broker.hubs[hub].partitions[0].events
        return [(e.sequence_number, e.offset, e.partition_key, e.raw) for e in events]

    assert stored(seeded) == stored(sent)
