"""Frames leave the decoder in presentation order; FrameTimes gives them presentation times."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dalistream.decode.timing import FrameTimes

# An IBBP GOP as x264 -bf 2 sends it: in decode order, each unit's presentation index.
DECODE_ORDER = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]
# The decoder returns frames in presentation order, with a delay of two units.
OUTPUT_AFTER_FEEDING = {2: [0], 3: [1], 4: [2], 5: [3], 6: [4], 7: [5], 8: [6], 9: [7], 10: [8, 9]}


def run(stamps: list[float], voided: set[int] = frozenset()) -> list[tuple[int, float]]:
    """Feed DECODE_ORDER (unit i stamped stamps[i]); the (presentation index, time) of each frame out."""
    times: FrameTimes[int] = FrameTimes()
    out = []
    by_presentation = {p: tag for tag, p in enumerate(DECODE_ORDER)}
    for tag, presentation in enumerate(DECODE_ORDER):
        times.fed(tag, presentation, stamps[tag])
        if tag in voided:
            times.void(tag)
        for shown in OUTPUT_AFTER_FEEDING.get(tag + 1, []):
            result = times.frame(by_presentation[shown])
            if result is not None:
                out.append(result)
    for shown in OUTPUT_AFTER_FEEDING[len(DECODE_ORDER)]:
        result = times.frame(by_presentation[shown])
        if result is not None:
            out.append(result)
    return out


def test_presentation_stamps_are_kept_as_they_are() -> None:
    stamps = [p * 0.04 for p in DECODE_ORDER]  # RTP timestamps as RFC 6184 means them
    out = run(stamps)
    assert out == [(p, p * 0.04) for p in range(10)]


def test_decode_order_stamps_are_handed_out_in_ascending_order() -> None:
    stamps = [tag * 0.04 for tag in range(10)]  # a sender that stamps in decode order
    out = run(stamps)
    assert [unit for unit, _ in out] == list(range(10))
    times = [t for _, t in out]
    # Found out at the first backward step (the fourth frame): from there on the sender's
    # clock, ascending; a stamp given out before the switch is missing at the end, so the last
    # frame repeats the one before rather than step back.
    assert times == sorted(times) and times[-1] == stamps[-1], times
    assert len(set(times)) == len(times) - 1


def test_ippp_streams_keep_their_own_stamps_when_units_vanish() -> None:
    times: FrameTimes[int] = FrameTimes()
    out = []
    for tag in range(20):
        times.fed(tag, tag, tag * 0.04)
        if tag == 7:
            times.void(tag)  # rejected by the decoder
        elif tag != 12:  # swallowed without a word
            out.append(times.frame(tag))
        times.expire(tag - 4)
    assert out == [(tag, tag * 0.04) for tag in range(20) if tag not in (7, 12)]
    assert len(times) == 0 and not times.reordered


@given(st.permutations(list(range(10))))
def test_times_never_step_back(stamp_order: list[int]) -> None:
    out = run([0.04 * i for i in stamp_order])
    times = [t for _, t in out]
    assert times == sorted(times)
