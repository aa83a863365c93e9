"""Tests of jaxconv.compare.timing: the interleaved timer."""

from __future__ import annotations

import time

import pytest

from jaxconv.compare import Timing, time_interleaved


def test_time_interleaved_counts_and_orders_calls():
    calls = []
    slow = lambda: (calls.append("slow"), time.sleep(0.003))
    fast = lambda: calls.append("fast")
    other = lambda: calls.append("other")
    timings = time_interleaved([{"slow": slow, "fast": fast}, {"other": other}], repeats=4, min_time=0, blocks=2)
    assert {name: t.repeats for name, t in timings.items()} == {"slow": 4, "fast": 4, "other": 4}
    assert timings["slow"].median >= 0.003 > timings["fast"].median
    assert timings["slow"].min <= timings["slow"].median
    # Warm-up and estimate: 2 calls each. Then per block and group: one untimed call each after the switch,
    # then 2 rounds rotating which goes first.
    block = ["slow", "fast", "slow", "fast", "fast", "slow", "other", "other", "other"]
    assert calls[6:] == block + block


def test_time_interleaved_min_time_adds_repeats():
    timings = time_interleaved([{"nap": lambda: time.sleep(0.002)}], repeats=1, min_time=0.03)
    assert 5 <= timings["nap"].repeats <= 15


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(repeats=0), ValueError, "repeats must be >= 1, got 0"),
        (dict(repeats=2.5), TypeError, "repeats must be an int"),
        (dict(min_time=-1), ValueError, "min_time must be >= 0"),
        (dict(min_time=float("nan")), ValueError, "min_time must be finite"),
        (dict(blocks=0), ValueError, "blocks must be >= 1"),
    ],
)
def test_time_interleaved_checks_its_options_before_calling(options, error, message):
    calls = []
    with pytest.raises(error, match=message):
        time_interleaved([{"f": lambda: calls.append(1)}], **options)
    assert calls == []


def test_time_interleaved_names_must_be_unique():
    with pytest.raises(ValueError, match="unique across groups"):
        time_interleaved([{"f": lambda: None}, {"f": lambda: None}], repeats=1, min_time=0)


def test_timing_of_one_sample():
    assert Timing.of([2.0]) == Timing(2.0, 2.0, 0.0, 1)
