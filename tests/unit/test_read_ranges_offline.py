"""The read layer's per-partition bookkeeping (``_Part``), without a broker: runs of records as
a read_committed consumer delivers them, aborted records and markers skipped."""

from __future__ import annotations

from dataclasses import dataclass

from streamml.kafka.read import TopicRange, _Part


@dataclass
class Rec:
    off: int

    def offset(self) -> int:
        return self.off


def offsets(run: list[Rec]) -> list[int]:
    return [m.off for m in run]


def test_a_run_that_jumps_an_aborted_gap_past_the_end_finishes_at_the_end() -> None:
    # 0-4 committed, 5 its marker, 6-10 aborted, 11 marker, 12-16 committed: one consume call can
    # bring 0-4 and 12-16 together; a range ending inside the gap (at 9) is read to 9
    part = _Part(TopicRange("t", 0, 0, 9))
    got = part.take([Rec(o) for o in [0, 1, 2, 3, 4, 12, 13, 14, 15, 16]])
    assert offsets(got) == [0, 1, 2, 3, 4] and part.done and part.pos == 9
    assert part.take([Rec(17)]) == []  # done: nothing more is taken


def test_runs_inside_the_range_move_the_position_record_by_record() -> None:
    part = _Part(TopicRange("t", 0, 10, 20))
    assert offsets(part.take([Rec(10), Rec(11)])) == [10, 11] and part.pos == 12 and not part.done
    assert offsets(part.take([Rec(11), Rec(12)])) == [12] and part.pos == 13  # re-fetched after a seek
    assert offsets(part.take([Rec(19)])) == [19] and part.done and part.pos == 20


def test_a_run_entirely_past_the_end_takes_nothing_and_finishes() -> None:
    part = _Part(TopicRange("t", 0, 0, 9))
    part.take([Rec(o) for o in range(5)])
    assert part.take([Rec(12), Rec(13)]) == [] and part.done and part.pos == 9


def test_reaching_the_end_by_position_finishes_without_a_record() -> None:
    part = _Part(TopicRange("t", 0, 0, 9))
    part.take([Rec(o) for o in range(5)])
    part.reached(6)  # the commit marker at 5 skipped
    assert part.pos == 6 and not part.done
    part.reached(12)
    assert part.pos == 9 and part.done
