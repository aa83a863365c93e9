"""The interleaved timer: functions called by turns so that machine noise hits them alike."""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jaxconv._validate import as_finite, as_int


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall times of one measured function, in seconds."""

    median: float
    min: float
    iqr: float
    repeats: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        """Summarises samples; the interquartile range ``iqr`` says how noisy they were.

        >>> Timing.of([3.0, 1.0, 2.0, 4.0, 5.0])
        Timing(median=3.0, min=1.0, iqr=2.0, repeats=5)
        """
        quartiles = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else [samples[0]] * 3
        return cls(statistics.median(samples), min(samples), quartiles[2] - quartiles[0], len(samples))


def time_interleaved(
    groups: Sequence[Mapping[str, Callable[[], Any]]],
    *,
    repeats: int = 10,
    min_time: float = 0.5,
    max_repeats: int = 10_000,
    blocks: int = 3,
) -> dict[str, Timing]:
    """Times functions by turns, so that machine noise hits them alike.

    Every function is called once untimed (warm-up) and once to estimate its
    cost. Then the functions of a group are called in rounds, one call each,
    rotating which goes first. With several groups, rounds run in ``blocks``
    blocks per group, group after group, and each function is called once
    untimed after a switch: a group holds the functions that share a thread
    pool, and another pool's threads still spinning from its last call should
    not be charged to them.

    Args:
      groups: ``{name: fn}`` mappings; each ``fn()`` must return only when its work is done.
      repeats: at least this many timed calls per function.
      min_time: and enough calls for about this many seconds per function on average.
      max_repeats: at most this many calls per function.
      blocks: blocks per group when there are several groups.

    Returns:
      ``{name: Timing}`` for every function.

    >>> t = time_interleaved([{"a": lambda: time.sleep(0.002), "b": lambda: None}], repeats=3, min_time=0)
    >>> t["a"].repeats, t["a"].median > 0.002 > t["b"].median
    (3, True)
    """
    repeats = as_int(repeats, "repeats", minimum=1)
    min_time = as_finite(min_time, "min_time", minimum=0)
    max_repeats = as_int(max_repeats, "max_repeats", minimum=repeats)
    blocks = as_int(blocks, "blocks", minimum=1)
    functions = {name: fn for group in groups for name, fn in group.items()}
    if len(functions) != sum(len(group) for group in groups):
        raise ValueError(f"function names must be unique across groups, got {[list(g) for g in groups]}")
    estimate = {}
    for name, fn in functions.items():
        fn()
        start = time.perf_counter()
        fn()
        estimate[name] = time.perf_counter() - start
    per_function = min_time * len(functions) / max(sum(estimate.values()), 1e-9)
    total = min(max_repeats, max(repeats, math.ceil(per_function)))
    blocks = 1 if len(groups) == 1 else min(blocks, total)
    samples: dict[str, list[float]] = {name: [] for name in functions}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        done = 0
        for block in range(blocks):
            rounds = total * (block + 1) // blocks - done
            done += rounds
            for group in groups:
                names = list(group)
                if len(groups) > 1:
                    for name in names:
                        group[name]()
                for round_ in range(rounds):
                    shift = round_ % len(names)
                    for name in names[shift:] + names[:shift]:
                        start = time.perf_counter()
                        group[name]()
                        samples[name].append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing.of(values) for name, values in samples.items()}
