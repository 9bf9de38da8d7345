from dalistream.metrics import Stages, Tally


def test_a_tally_hands_over_every_n_items_and_the_rest_when_flushed():
    seen: list[tuple[str, int, float]] = []
    stages = Stages(lambda stage, items, wall_s: seen.append((stage, items, wall_s)))
    tally = Tally(stages, "receive", every=3)
    for _ in range(4):
        tally.add(0.5, 0.25)
    assert seen == [("receive", 3, 1.5)]  # one observation for three packets, not three
    tally.flush()
    tally.flush()  # nothing left: nothing handed over
    assert seen == [("receive", 3, 1.5), ("receive", 1, 0.5)]
    cost = stages.snapshot()["receive"]
    assert (cost.items, cost.wall_s, cost.cpu_s) == (4, 2.0, 1.0)
