"""Alert rules on hand-made score sequences: K of N, thresholds at the edge, cooldown,
extension and closing, quiet hours, flood control, onset/end estimates. No audio, no model."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from earmark.errors import RuleError
from earmark.monitor.rules import Closed, Opened, Rule, RuleState, Schedule, Window, parse_time_range

HOP, WIN = 2.0, 10.0


def rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "name": "r",
        "labels": ("glass",),
        "against": ("speech", "silence"),
        "threshold": 0.75,
        "k": 1,
        "n": 1,
        "cooldown_s": 60.0,
        "max_quiet_s": 10.0,
    }
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def run(r: Rule, scores: list[float | None], *, t0: float = 0.0, when: datetime | None = None) -> list:
    """Feed windows i*HOP..i*HOP+WIN with the given glass probabilities; return every action with its index."""
    state = RuleState(rule=r)
    out = []
    for i, p in enumerate(scores):
        probs = None if p is None else {"glass": p, "speech": (1 - p) / 2, "silence": (1 - p) / 2}
        w = Window(start_s=t0 + i * HOP, end_s=t0 + i * HOP + WIN, probs=probs, local_time=when)
        out.extend((i, a) for a in state.step(w))
    out.extend((len(scores), a) for a in state.close_all())
    return out


def opened(actions: list) -> list[tuple[int, Opened]]:
    return [(i, a) for i, a in actions if isinstance(a, Opened)]


def closed(actions: list) -> list[tuple[int, Closed]]:
    return [(i, a) for i, a in actions if isinstance(a, Closed)]


def test_k_of_n_three_of_three_needs_three_hits_in_a_row() -> None:
    r = rule(k=3, n=3)
    assert opened(run(r, [0.9, 0.9, 0.1, 0.9, 0.9, 0.1])) == []
    acts = opened(run(r, [0.0, 0.9, 0.9, 0.9, 0.0]))
    assert [i for i, _ in acts] == [3]  # fires on the third hit, not before


def test_k_of_n_two_of_three_tolerates_one_miss() -> None:
    acts = opened(run(rule(k=2, n=3), [0.0, 0.9, 0.2, 0.9, 0.0]))
    assert [i for i, _ in acts] == [3]
    assert opened(run(rule(k=2, n=3), [0.9, 0.2, 0.2, 0.9, 0.2, 0.2])) == []  # hits too far apart


def test_threshold_edge_is_inclusive() -> None:
    assert len(opened(run(rule(threshold=0.75), [0.75]))) == 1
    assert opened(run(rule(threshold=0.75), [0.7499999])) == []


def test_per_label_threshold_overrides_the_rule_threshold() -> None:
    r = rule(labels=("glass", "alarm"), label_thresholds=(("glass", 0.5),))
    state = RuleState(rule=r)
    acts = state.step(
        Window(start_s=0, end_s=10, probs={"glass": 0.55, "alarm": 0.45, "speech": 0, "silence": 0})
    )
    assert [a.label for a in acts] == ["glass"]  # 0.55 passes glass's 0.5; alarm needs 0.75
    acts = state.step(
        Window(start_s=2, end_s=12, probs={"glass": 0.0, "alarm": 0.76, "speech": 0, "silence": 0})
    )
    assert [a.label for a in acts if isinstance(a, Opened)] == ["alarm"]


def test_continuous_sound_is_one_event_extended_then_closed_after_quiet() -> None:
    scores = [0.0] * 3 + [0.95] * 20 + [0.0] * 10
    acts = run(rule(max_quiet_s=10.0), scores)
    assert len(opened(acts)) == 1
    ((ci, c),) = closed(acts)
    assert c.peak == pytest.approx(0.95) and c.windows == 20
    # the last hit is window 22 (44-54 s); window 23 (46-56) hears nothing: the sound ended by 46 s
    assert c.end_s == pytest.approx(46.0)
    # window 24 falls no further, so the fade-out is over: closed then, not max_quiet_s / hop windows later
    assert ci == 24


def test_max_quiet_keeps_an_event_open_through_short_gaps() -> None:
    scores = [0.9] * 5 + [0.1] * 2 + [0.9] * 5 + [0.1] * 12
    acts = run(rule(max_quiet_s=15.0), scores)
    assert len(opened(acts)) == 1 and len(closed(acts)) == 1
    acts = run(rule(max_quiet_s=5.0, cooldown_s=0.0), [0.9] * 5 + [0.1] * 6 + [0.9] * 5 + [0.1] * 12)
    assert len(opened(acts)) == 2  # a long enough gap splits it


def test_cooldown_suppresses_new_events_then_allows_one() -> None:
    r = rule(max_quiet_s=0.0, cooldown_s=30.0)
    state = RuleState(rule=r)
    events = []
    pattern = ([0.9] + [0.1] * 2) * 20  # a hit every 6 s for 2 minutes
    for i, p in enumerate(pattern):
        w = Window(start_s=i * HOP, end_s=i * HOP + WIN, probs={"glass": p, "speech": 0, "silence": 0})
        events += [a for a in state.step(w) if isinstance(a, Opened)]
    # closes 2 s after each hit, then 30 s of cooldown: at most one event per ~36 s of a 120 s stream
    assert 3 <= len(events) <= 4
    assert state.suppressed > 0
    gaps = [b.trigger_s - a.trigger_s for a, b in itertools.pairwise(events)]
    assert all(g >= 30.0 for g in gaps)


def test_flood_ten_minutes_of_hits_is_one_event() -> None:
    n = int(600 / HOP)  # 10 minutes of stream at a 2 s hop: 300 windows, every one a hit
    acts = run(rule(k=3, n=3), [0.99] * n + [0.0] * 10)
    assert len(opened(acts)) == 1 and len(closed(acts)) == 1
    ((_, c),) = closed(acts)
    assert c.windows == n and c.end_s - c.start_s == pytest.approx(600.0, abs=HOP)


def test_onset_is_dated_by_the_rising_run_not_the_trigger() -> None:
    # sound starts at 20 s: windows ending after 20 s hear more and more of it
    scores = [0.0] * 6 + [0.2, 0.5, 0.8, 0.9, 0.95] + [0.95] * 5
    ((_, o),) = opened(run(rule(k=3, n=3), scores))
    assert o.start_s == pytest.approx(20.0)  # window 5 (10-20 s) heard nothing; window 6 rose
    assert o.trigger_s == pytest.approx(10 * HOP + WIN)  # the third hit in a row fired it


def test_onset_of_a_short_sound_is_the_newest_hop_of_its_first_window() -> None:
    ((_, o),) = opened(run(rule(), [0.01] * 5 + [0.9] * 5 + [0.01] * 8))
    assert o.start_s == pytest.approx(18.0)  # window 4 ended at 18 s hearing nothing


def test_skipped_windows_count_as_misses_and_close_events() -> None:
    acts = run(rule(), [0.9] * 3 + [None] * 8)
    assert len(opened(acts)) == 1
    ((i, _),) = closed(acts)
    assert i < 11  # closed by the quiet windows, not by close_all at the end


def test_quiet_hours_and_days_block_opening() -> None:
    night = datetime(2025, 3, 3, 23, 30)  # a Monday
    day = datetime(2025, 3, 3, 12, 0)
    r = rule(schedule=Schedule(active=(parse_time_range("22:00-06:00"),)))
    assert len(opened(run(r, [0.9] * 3, when=night))) == 1
    assert opened(run(r, [0.9] * 3, when=day)) == []
    r = rule(schedule=Schedule(quiet=(parse_time_range("08:00-18:00"),)))
    assert opened(run(r, [0.9] * 3, when=day)) == [] and len(opened(run(r, [0.9] * 3, when=night))) == 1
    r = rule(schedule=Schedule(days=("sat", "sun")))
    assert opened(run(r, [0.9] * 3, when=night)) == []
    assert len(opened(run(r, [0.9] * 3, when=datetime(2025, 3, 8, 12, 0)))) == 1


def test_time_range_crossing_midnight_and_edges() -> None:
    r = parse_time_range("22:00-06:00")
    assert r.contains(datetime(2025, 1, 1, 22, 0).time()) and r.contains(datetime(2025, 1, 1, 5, 59).time())
    assert not r.contains(datetime(2025, 1, 1, 6, 0).time()) and not r.contains(
        datetime(2025, 1, 1, 12).time()
    )
    with pytest.raises(RuleError, match="HH:MM-HH:MM"):
        parse_time_range("late evening")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"labels": ()}, "no label to alert on"),
        ({"against": ()}, "other labels"),
        ({"against": ("Glass", "x")}, "both alerted on and background"),
        ({"k": 4, "n": 3}, "k <= n"),
        ({"threshold": 1.5}, "not in 0..1"),
        ({"label_thresholds": (("dog", 0.5),)}, "does not alert on"),
    ],
)
def test_bad_rules_say_what_is_wrong(kw: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        rule(**kw)


def test_same_scores_same_events() -> None:
    scores = [0.1, 0.8, 0.9, 0.2, 0.85, 0.95, 0.1, 0.0, 0.0, 0.99, 0.99, 0.99] * 5
    assert run(rule(k=2, n=3, cooldown_s=5.0), scores) == run(rule(k=2, n=3, cooldown_s=5.0), scores)
