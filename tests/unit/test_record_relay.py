"""The relay a cluster worker writes through when the coordinator gathers the output: records
handed over in order, each once; bounded, and a loss said in an output_gap event first."""

from __future__ import annotations

from dalistream.sinks import RecordRelay


def records(camera: str, seqs: range) -> list[dict]:
    return [{"type": "detections", "camera": camera, "seq": seq} for seq in seqs]


def test_records_are_taken_in_order_each_once():
    relay = RecordRelay().start()
    relay.submit(records("a", range(3)))
    relay.submit(records("b", range(2)))
    assert relay.queued == 5 and relay.paths == [] and relay.written == 0
    assert [(r["camera"], r["seq"]) for r in relay.take()] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    assert relay.take() == [] and relay.recovered and relay.problem is None


def test_beyond_its_bound_records_are_lost_counted_and_the_next_take_says_so_first():
    clock = iter([100.0, 104.0, 104.0])
    relay = RecordRelay(limit=4, clock=lambda: next(clock))
    relay.submit(records("a", range(3)))
    relay.submit(records("a", range(3, 6)))  # one fits, two are lost
    assert relay.lost == 2 and not relay.recovered and "did not collect" in relay.problem
    gap, *kept = relay.take()
    assert gap["event"] == "output_gap" and gap["records_lost"] == 2 and gap["camera"] is None
    assert (gap["from"], gap["to"]) == ("1970-01-01T00:01:40.000Z", "1970-01-01T00:01:44.000Z")
    assert [r["seq"] for r in kept] == [0, 1, 2, 3]
    assert relay.recovered and relay.lost == 2
    relay.close()
