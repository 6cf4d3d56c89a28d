"""Delivery faults on purpose (:mod:`simulator.adapters.delivery.faults`): each fault hits the
configured fraction of the messages, within a binomial bound; every message's callback runs
exactly once; the messages hit depend on the seed, the target and the message only, never on
timing; reordered messages are overtaken by at most ``window`` later ones."""

from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.adapters.delivery.faults import REORDER_MAX_HOLD_S, FaultStage
from simulator.adapters.delivery.transport import Delivery
from simulator.config.delivery import DeliveryFaults
from simulator.formats import WireMessage

N = 20_000
SIGMAS = 4.5


def message(i: int) -> WireMessage:
    return WireMessage(topic=f"Italia/cnc-{i % 7:02d}/telemetry", key=b"", headers=(),
                       value=f'{{"seq": {i}, "spindle_rpm": {1200 + i % 50}}}'.encode())


def index(m: WireMessage) -> int:
    return int(m.value.split(b",")[0].removeprefix(b'{"seq": '))


def faults(**values: Any) -> DeliveryFaults:
    return DeliveryFaults.model_validate(values)


@dataclass
class Run:
    """What came out of a stage for messages 0..n-1: the order (indices, copies included), the
    time each went out, which were held (neither sent nor dropped by their own feed), and every
    callback's calls."""

    out: list[int] = field(default_factory=list)
    out_at: list[float] = field(default_factory=list)
    held: set[int] = field(default_factory=set)
    calls: Counter[int] = field(default_factory=Counter)

    def take(self, deliveries: list[Delivery], at: float) -> None:
        for m, done in deliveries:
            self.out.append(index(m))
            self.out_at.append(at)
            done()

    @property
    def received(self) -> Counter[int]:
        return Counter(self.out)

    def overtaken(self) -> dict[int, int]:
        """For each message received, how many messages given after it arrived before it."""
        seen: list[int] = []
        counts = {}
        for i in self.out:
            if i not in counts:
                counts[i] = len(seen) - bisect.bisect_right(seen, i)
                bisect.insort(seen, i)
        return counts


def run(stage: FaultStage, n: int, times: Callable[[int], float] = lambda i: 0.0, *, due_every: int = 0,
        first: int = 0) -> Run:
    """Feed messages ``first``..``first+n-1`` at ``times(i)``, calling ``due`` every ``due_every``
    messages when given, then release everything held."""
    result = Run()
    now = 0.0
    for i in range(first, first + n):
        now = times(i)
        sent = stage.feed((message(i), functools.partial(result.calls.update, [i])), now)
        if not any(index(m) == i for m, _ in sent) and not result.calls[i]:  # neither sent nor dropped
            result.held.add(i)
        result.take(sent, now)
        if due_every and i % due_every == 0:
            result.take(stage.due(now), now)
    result.take(stage.release_all(), now)
    return result


def assert_binomial(observed: int, n: int, p: float) -> None:
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(observed - n * p) <= SIGMAS * sigma + 1, f"{observed} of {n}, expected {n * p:.0f} ± {sigma:.1f}"


def assert_each_callback_once(result: Run, n: int, first: int = 0) -> None:
    assert result.calls == Counter(range(first, first + n))


def test_drop_alone_leaves_out_that_fraction_and_keeps_the_order() -> None:
    stage = FaultStage(faults(drop=0.1), seed=7, target="local")
    result = run(stage, N)
    missing = set(range(N)) - set(result.out)
    assert_binomial(len(missing), N, 0.1)
    assert stage.dropped == len(missing)
    assert result.out == sorted(result.out) and len(result.out) == len(set(result.out))
    assert_each_callback_once(result, N)  # the dropped ones' by the stage: given up, done


def test_duplicate_alone_sends_that_fraction_twice_the_copy_right_after() -> None:
    stage = FaultStage(faults(duplicate=0.2), seed=7, target="local")
    result = run(stage, N)
    twice = [i for i, count in result.received.items() if count == 2]
    assert set(result.received) == set(range(N)) and max(result.received.values()) == 2
    assert_binomial(len(twice), N, 0.2)
    assert stage.duplicated == len(twice) and len(result.out) == N + len(twice)
    assert [i for k, i in enumerate(result.out) if k == 0 or result.out[k - 1] != i] == list(range(N))
    assert_each_callback_once(result, N)  # the copies' callbacks do nothing


def test_delay_alone_makes_that_fraction_late_by_the_configured_time_and_loses_nothing() -> None:
    stage = FaultStage(faults(delay={"fraction": 0.15, "min_s": 1.0, "max_s": 5.0}), seed=7, target="local")
    step = 0.001
    result = run(stage, N, lambda i: i * step, due_every=10)
    assert sorted(result.out) == list(range(N))  # a permutation: nothing lost, nothing added
    late = {i for i, count in result.overtaken().items() if count}
    assert_binomial(len(late), N, 0.15)
    assert stage.delayed == len(result.held) and late <= result.held
    end = (N - 1) * step
    for i, at in zip(result.out, result.out_at, strict=True):
        if i in result.held and at < end:  # went out by time, not by release_all
            assert 1.0 <= at - i * step <= 5.0 + 10 * step
    assert_each_callback_once(result, N)


def test_reorder_alone_lets_that_fraction_be_overtaken_by_at_most_window_later_messages() -> None:
    stage = FaultStage(faults(reorder={"fraction": 0.1, "window": 5}), seed=7, target="local")
    result = run(stage, N)  # all at one instant: no message goes out by time
    assert sorted(result.out) == list(range(N))
    overtaken = result.overtaken()
    late = {i for i, count in overtaken.items() if count}
    assert_binomial(len(late), N, 0.1)
    assert max(overtaken.values()) <= 5
    assert {count for count in overtaken.values() if count} == {1, 2, 3, 4, 5}
    assert stage.reordered == len(result.held) and late <= result.held
    assert_each_callback_once(result, N)


def test_reordered_messages_go_out_by_time_when_the_stream_is_quiet() -> None:
    stage = FaultStage(faults(reorder={"fraction": 1.0, "window": 100}), seed=1, target="local")
    calls: list[int] = []
    assert stage.feed((message(0), lambda: calls.append(0)), 10.0) == []
    assert stage.held == 1 and stage.next_due() == 10.0 + REORDER_MAX_HOLD_S
    assert stage.due(10.0 + REORDER_MAX_HOLD_S - 0.01) == []
    released = stage.due(10.0 + REORDER_MAX_HOLD_S)
    assert [index(m) for m, _ in released] == [0] and stage.held == 0 and stage.next_due() is None


def test_faults_together_follow_the_precedence() -> None:
    """Drop wins over delay, delay over reorder; duplicate is independent of both."""
    stage = FaultStage(faults(drop=0.2, duplicate=0.1, delay={"fraction": 0.3, "min_s": 0.5, "max_s": 1.0},
                              reorder={"fraction": 0.25, "window": 3}), seed=11, target="local")
    result = run(stage, N, lambda i: i * 0.0005, due_every=7)
    assert_binomial(stage.dropped, N, 0.2)
    kept = N - stage.dropped
    assert_binomial(stage.delayed, kept, 0.3)
    assert_binomial(stage.reordered, kept - stage.delayed, 0.25)
    assert_binomial(stage.duplicated, kept, 0.1)
    assert len(result.out) == kept + stage.duplicated and len(result.received) == kept
    assert stage.messages == N and stage.held == 0
    assert_each_callback_once(result, N)


def test_the_same_seed_gives_the_same_sequence_and_another_seed_or_target_another() -> None:
    config = faults(drop=0.05, duplicate=0.05, delay={"fraction": 0.05, "min_s": 0.1, "max_s": 0.3},
                    reorder={"fraction": 0.1, "window": 4})
    times = lambda i: i * 0.01  # noqa: E731

    def sequence(seed: int, target: str) -> list[int]:
        return run(FaultStage(config, seed=seed, target=target), 2000, times, due_every=3).out

    assert sequence(3, "local") == sequence(3, "local")
    assert sequence(3, "local") != sequence(4, "local")
    assert sequence(3, "local") != sequence(3, "aio")
    assert run(FaultStage(config.model_copy(update={"seed": 4}), seed=3, target="local"), 2000, times,
               due_every=3).out == sequence(4, "local")  # faults.seed wins over the default


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.floats(0, 0.5), min_size=1, max_size=50), due_every=st.integers(0, 5))
def test_which_messages_are_hit_does_not_depend_on_timing(steps: list[float], due_every: int) -> None:
    config = faults(drop=0.1, duplicate=0.1, delay={"fraction": 0.1, "min_s": 0.2, "max_s": 2.0},
                    reorder={"fraction": 0.1, "window": 6})
    n = 600

    def hits(result: Run) -> tuple[set[int], set[int], set[int]]:
        received = result.received
        return (set(range(n)) - set(received), {i for i, c in received.items() if c == 2}, result.held)

    reference = hits(run(FaultStage(config, seed=5, target="local"), n))
    times = [0.0]
    for i in range(1, n):
        times.append(times[-1] + steps[i % len(steps)])
    result = run(FaultStage(config, seed=5, target="local"), n, times.__getitem__, due_every=due_every)
    assert hits(result) == reference
    assert_each_callback_once(result, n)


def test_a_restarted_stage_hits_the_same_messages_whatever_came_before() -> None:
    """No sequence of random numbers: a stage that starts in the middle of the stream (after a
    restart) or sees it in another order makes the same decisions for each message."""
    config = faults(drop=0.1, duplicate=0.1, delay={"fraction": 0.1, "min_s": 0.2, "max_s": 2.0},
                    reorder={"fraction": 0.1, "window": 6})
    whole = FaultStage(config, seed=5, target="local")
    later = FaultStage(config, seed=5, target="local")
    backwards = FaultStage(config, seed=5, target="local")
    decisions = [whole.decide(message(i)) for i in range(2000)]
    assert [later.decide(message(i)) for i in range(1000, 2000)] == decisions[1000:]
    assert [backwards.decide(message(i)) for i in reversed(range(2000))] == decisions[::-1]
    result = run(FaultStage(config, seed=5, target="local"), 1000, first=1000)
    assert set(range(1000, 2000)) - set(result.out) == {1000 + i for i, d in enumerate(decisions[1000:]) if d.drop}
    assert result.held == {1000 + i for i, d in enumerate(decisions[1000:])
                           if d.delay_s is not None or d.reorder_k is not None}


@settings(max_examples=40, deadline=None)
@given(drop=st.floats(0, 1), duplicate=st.floats(0, 1), delay=st.floats(0, 1), reorder=st.floats(0, 1),
       window=st.integers(1, 20), max_s=st.floats(0, 3), seed=st.integers(-(2**63), 2**63),
       steps=st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_any_faults_keep_each_callback_exactly_once_and_send_only_the_given_messages(
        drop: float, duplicate: float, delay: float, reorder: float, window: int, max_s: float, seed: int,
        steps: Sequence[float]) -> None:
    stage = FaultStage(faults(drop=drop, duplicate=duplicate, delay={"fraction": delay, "min_s": 0, "max_s": max_s},
                              reorder={"fraction": reorder, "window": window}), seed=seed, target="t")
    n = 300
    times = [0.0]
    for i in range(1, n):
        times.append(times[-1] + steps[i % len(steps)])
    result = run(stage, n, times.__getitem__, due_every=2)
    assert_each_callback_once(result, n)
    received = result.received
    assert set(received) <= set(range(n)) and max(received.values(), default=1) <= 2
    assert stage.dropped == n - len(received) and stage.duplicated == len(result.out) - len(received)
    assert stage.held == 0 and stage.next_due() is None
    only_reorder = not delay
    if only_reorder:
        assert max(result.overtaken().values(), default=0) <= window


def test_release_all_sends_what_is_held_in_the_order_it_was_given() -> None:
    stage = FaultStage(faults(delay={"fraction": 1.0, "min_s": 1, "max_s": 100}), seed=2, target="local")
    for i in range(50):
        assert stage.feed((message(i), lambda: None), 0.0) == []
    assert stage.held == 50
    next_due = stage.next_due()
    assert next_due is not None and 1.0 <= next_due <= 100.0
    assert [index(m) for m, _ in stage.release_all()] == list(range(50))
    assert stage.held == 0 and stage.release_all() == []


def test_all_off_sends_everything_unchanged_in_order_without_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = FaultStage(DeliveryFaults(), seed=1, target="local")

    def no_hashing(m: WireMessage) -> None:
        raise AssertionError("a message was hashed with every fault off")

    monkeypatch.setattr(stage, "decide", no_hashing)
    deliveries: list[Delivery] = [(message(i), lambda: None) for i in range(1000)]
    out = [sent for delivery in deliveries for sent in stage.feed(delivery, 0.0)]
    assert out == deliveries and all(a is b for a, b in zip(out, deliveries, strict=True))
    assert stage.messages == 1000 and stage.held == 0 and stage.next_due() is None


def test_configure_at_run_time_changes_the_faults_from_then_on_and_keeps_what_is_held() -> None:
    stage = FaultStage(DeliveryFaults(), seed=9, target="local")
    first = run(stage, 5000)
    assert first.out == list(range(5000))
    stage.configure(faults(drop=0.5))
    second = run(stage, 5000, first=5000)
    assert_binomial(5000 - len(second.out), 5000, 0.5)
    assert_each_callback_once(second, 5000, first=5000)

    stage.configure(faults(delay={"fraction": 1.0, "min_s": 2.0, "max_s": 2.0}))
    calls: list[int] = []
    assert stage.feed((message(10_000), lambda: calls.append(1)), 100.0) == []
    stage.configure(DeliveryFaults())
    assert stage.held == 1 and stage.next_due() == 102.0
    assert [index(m) for m, _ in stage.feed((message(10_001), lambda: None), 101.0)] == [10_001]
    assert [index(m) for m, _ in stage.feed((message(10_002), lambda: None), 102.0)] == [10_000, 10_002]
    assert stage.held == 0


def test_health_tells_the_faults_and_the_counters() -> None:
    config = faults(duplicate=0.25, reorder={"fraction": 0.5, "window": 3})
    stage = FaultStage(config, seed=42, target="local")
    run(stage, 400)
    health = stage.health()
    assert health["faults"] == "duplicate 0.25, reorder 0.5 within 3"
    assert health["seed"] == 42 and health["duplicate"] == 0.25 and health["reorder"] == {"fraction": 0.5, "window": 3}
    assert health["messages"] == 400 and health["dropped"] == 0 and health["delayed"] == 0 and health["held"] == 0
    assert 0 < health["duplicated"] < 400 and 0 < health["reordered"] < 400
