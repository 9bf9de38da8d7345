"""The MQTT sink's outbox with plain inputs: bounded, oldest dropped first and counted, messages
in flight held until acknowledged and sent again in order, gaps opened and closed."""

from __future__ import annotations

from dalistream.sinks.outbox import BEHIND, Outbox


def put(outbox: Outbox, *bodies: int, now: float = 0.0) -> None:
    outbox.put([("t", body, False) for body in bodies], now)


def drain(outbox: Outbox) -> list[int]:
    taken = []
    while (message := outbox.take()) is not None:
        taken.append(message.body)
        outbox.done(message)
    return taken


def test_beyond_capacity_the_oldest_are_dropped_counted_in_a_gap():
    outbox = Outbox(3)
    put(outbox, 1, 2, 3, 4, 5, now=10.0)
    assert (len(outbox), outbox.dropped) == (3, 2)
    assert drain(outbox) == [3, 4, 5] and outbox.published == 3
    gap = outbox.settle(12.0)  # connected, nothing waits: the gap of drops ends
    assert gap == {"from": "1970-01-01T00:00:10.000Z", "to": "1970-01-01T00:00:12.000Z", "messages_dropped": 2, "reason": BEHIND}
    assert outbox.settle(13.0) is None


def test_messages_in_flight_go_back_first_in_order_when_the_connection_is_lost():
    outbox = Outbox(10)
    put(outbox, 1, 2, 3, 4)
    first, second, third = outbox.take(), outbox.take(), outbox.take()
    outbox.done(second)  # acknowledged: never sent again
    put(outbox, 5)
    outbox.requeue(1.0)
    assert drain(outbox) == [1, 3, 4, 5]
    assert (outbox.published, outbox.dropped, len(outbox)) == (5, 0, 0)
    outbox.done(first)  # a late acknowledgement of a message already sent again counts once
    assert outbox.published == 5 and third is not None


def test_requeued_messages_are_the_oldest_so_they_are_dropped_first():
    outbox = Outbox(3)
    put(outbox, 1, 2)
    outbox.take(), outbox.take()
    put(outbox, 3, 4)
    outbox.requeue(1.0)
    put(outbox, 5)
    assert drain(outbox) == [3, 4, 5] and outbox.dropped == 2


def test_an_outage_is_one_gap_from_its_first_reason_with_every_drop_in_it():
    outbox = Outbox(2)
    assert outbox.disconnected(5.0, "cannot connect: refused") is True
    assert outbox.disconnected(6.0, "cannot connect: not authorised") is False  # a retry, not a new outage
    assert outbox.gap_reason == "cannot connect: not authorised"
    put(outbox, 1, 2, 3, now=7.0)
    assert outbox.settle(8.0) is None  # an outage ends only when the broker is back
    gap = outbox.connected(9.0)
    assert gap["messages_dropped"] == 1 and gap["reason"] == "cannot connect: refused" and gap["from"].endswith("05.000Z")
    assert outbox.gap_reason is None and outbox.connected(10.0) is None


def test_first_goes_ahead_pushing_nothing_out_and_drop_all_closes_the_books():
    outbox = Outbox(2)
    put(outbox, 1, 2)
    outbox.put([("t", 0, False)], 0.0, first=True)
    assert outbox.dropped == 0 and outbox.take().body == 0
    gap = outbox.drop_all(3.0, "stopped")
    assert gap["messages_dropped"] == 3 and outbox.dropped == 3 and len(outbox) == 0
