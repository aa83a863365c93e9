"""``jaxconv compare``: the custom-VJP conv beside ``jax.grad`` of lax's conv, case by case.

For each :class:`Case` (a convolution's shapes and window options),
:func:`compare` runs, in one process and on the same random inputs:

* ``jaxconv.conv`` (ours, or any function with its signature passed as ``conv_fn``),
* ``jaxconv.lax_conv`` (``lax.conv_general_dilated``, differentiated by JAX),
* PyTorch's ``conv1d/2d/3d`` with autograd, when torch is importable,
* a plain GEMM of the conv's im2col shape, the practical speed limit,

and returns one :class:`CaseResult` per case:

**Errors.** Max abs error and max relative error of the output, dL/dx, dL/dw
(and dL/db with a bias) against lax at ``precision=HIGHEST`` (computed in
float32 for 16-bit dtypes). "Relative" is the max abs error divided by the
max abs value of the reference, which stays meaningful where single elements
are near zero. The gradients are those of ``L = sum(conv(x, w, b) * g)`` for a
fixed random cotangent ``g``, taken from the very executables that are timed.

**Tolerances.** A case passes when every relative error is at most its
dtype's tolerance (:data:`TOLERANCES`):

==========  =========
dtype       tolerance
==========  =========
float64     1e-10
float32     1e-4
float16     5e-3
bfloat16    4e-2
==========  =========

float32 and float64 sit far above rounding noise (an error there is a bug);
the 16-bit ones are about ten units of roundoff (2**-8 for bfloat16, 2**-11
for float16), as the outputs and gradients themselves are rounded to the dtype.

**Times.** Median wall time of the jitted forward and of the jitted
``jax.value_and_grad(L, argnums=(0, 1[, 2]))``, after compile and warm-up,
each call ended by ``jax.block_until_ready``. The implementations are
interleaved call by call (rotating which goes first) so machine noise hits
all of them; PyTorch, whose OpenMP threads keep spinning after a call, runs in
its own blocks between the JAX ones, with an untimed call after each switch.
Each measurement takes at least ``repeats`` calls and, on average, about
``min_time`` seconds. lax is timed at default precision (what users run).

**Rates.** Forward FLOPs are ``2 * N * FN * prod(out) * C/groups * prod(kernel)``;
``value_and_grad`` counts three times that (forward and two backward GEMMs).
The GEMM reference is a jitted ``(M, K) @ (K, N)`` with ``M = N_batch * prod(out)``,
``K = C/groups * prod(kernel)``, ``N = FN`` (a batch of ``groups`` matmuls when grouped).

**Memory.** ``temp_size_in_bytes`` of XLA's ``compiled.memory_analysis()``,
or None where the backend does not report it.

**Timing noise from malloc.** XLA allocates its large temporary buffers on every
call; with glibc's default thresholds each buffer is a fresh ``mmap`` whose page
faults can cost tens of ms, and the same configuration flips between two
speeds from one process to the next. Start the process with
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` raised (see
:data:`MALLOC_ENV`); ``benchmarks/run.py`` does this itself, and the CLI
prints a note when they are not set.

>>> case = Case.parse("x=8,3,16,16 w=4,3,3,3 padding=1")
>>> case.out_shape, case.flops
((8, 4, 16, 16), 442368)
>>> sorted(PRESETS)
['cnn', 'cpu-small']
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._api import Padding, conv, conv_spec, lax_conv
from jaxconv._geometry import PADDING_STRINGS

TOLERANCES: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-4,
    "float16": 5e-3,
    "bfloat16": 4e-2,
}
"""Largest allowed relative error (max abs error / max abs reference) per dtype."""

MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(2**30),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
}
"""glibc settings for stable timings: keep freed buffers up to 1 GiB in the heap instead of unmapping them."""

_CASE_KEYS = ("name", "x", "w", "stride", "padding", "dilation", "groups", "bias")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

# --- cases --------------------------------------------------------------------


def _int_tuple(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a shape (a sequence of ints), got {value!r}")
    shape = tuple(value)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"{name} must be a shape of positive ints, got {value!r}")
    return tuple(int(d) for d in shape)


def _freeze(value: Any) -> Any:
    """Lists (from JSON or a user) to tuples, so that a Case is hashable and compares equal."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _format_ints(value: int | Sequence[int]) -> str:
    return str(value) if isinstance(value, int) else ",".join(map(str, value))


def _format_padding(padding: Padding) -> str:
    if isinstance(padding, (int, str)):
        return str(padding)
    return ",".join(f"{e[0]}:{e[1]}" if isinstance(e, tuple) else str(e) for e in padding)


def _default_name(x: Sequence[int], w: Sequence[int], stride: Any, padding: Any, dilation: Any, groups: int) -> str:
    name = "x".join(map(str, x)) + "*" + "x".join(map(str, w))
    if stride != 1:
        name += f"/s{_format_ints(stride)}"
    if padding != 0:
        name += f"/p{_format_padding(padding)}"
    if dilation != 1:
        name += f"/d{_format_ints(dilation)}"
    if groups != 1:
        name += f"/g{groups}"
    return name


@dataclasses.dataclass(frozen=True)
class Case:
    """One convolution to compare: shapes and window options, checked like :func:`jaxconv.conv` checks them.

    Attributes:
      name: a label without whitespace or ``=``; empty gives one made from the shapes.
      x: input shape ``(N, C, *spatial)``, 1 to 3 spatial dims.
      w: filter shape ``(FN, C / groups, *kernel)``.
      stride, padding, dilation, groups: as in :func:`jaxconv.conv`.
      with_bias: whether the conv has a bias (then dL/db is compared too).

    >>> Case("c", (2, 3, 8, 8), (4, 3, 3, 3), padding=1).spec
    'name=c x=2,3,8,8 w=4,3,3,3 padding=1'
    >>> Case("bad", (2, 3, 8, 8), (4, 2, 3, 3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: case 'bad': x has C=3 channels (x.shape=(2, 3, 8, 8)) but w expects groups * w.shape[1] = 1 * 2 ...
    """

    name: str
    x: tuple[int, ...]
    w: tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: Padding = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    with_bias: bool = False

    def __post_init__(self) -> None:
        set_ = lambda field, value: object.__setattr__(self, field, value)
        set_("x", _int_tuple(self.x, "x"))
        set_("w", _int_tuple(self.w, "w"))
        for field in ("stride", "padding", "dilation"):
            set_(field, _freeze(getattr(self, field)))
        if isinstance(self.padding, str):
            set_("padding", self.padding.upper())
        if not isinstance(self.with_bias, (bool, np.bool_)):
            raise ValueError(f"with_bias must be a bool, got {self.with_bias!r}")
        set_("with_bias", bool(self.with_bias))
        if not self.name:
            set_("name", _default_name(self.x, self.w, self.stride, self.padding, self.dilation, self.groups))
        if not isinstance(self.name, str) or "=" in self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"case name must be a string without whitespace or '=', got {self.name!r}")
        try:
            self.conv_spec()
        except (ValueError, TypeError) as error:
            raise ValueError(f"case {self.name!r}: {error}") from None

    @classmethod
    def parse(cls, text: str, *, name: str = "") -> Case:
        """Reads a case from ``key=value`` tokens separated by whitespace.

        Keys: ``x`` and ``w`` (required; comma-separated ints), ``stride`` and
        ``dilation`` (an int or one per spatial dim), ``padding`` (an int, one
        per spatial dim, ``lo:hi`` pairs such as ``1:2,0:1``, or ``VALID``,
        ``SAME``, ``SAME_LOWER``), ``groups``, ``bias`` (0/1, true/false),
        ``name``. ``Case.parse(case.spec) == case``.

        Args:
          text: the specification.
          name: the name when ``text`` has no ``name=``; empty gives one made from the shapes.

        Returns:
          The case.

        Raises:
          ValueError: naming the token at fault, for malformed or inconsistent specs.

        >>> Case.parse("x=64,64,32,32 w=64,64,3,3 stride=1 padding=1").name
        '64x64x32x32*64x64x3x3/p1'
        >>> Case.parse("x=4,6,12,12 w=6,2,5,5 groups=3 padding=2:3,4:1 bias=1").padding
        ((2, 3), (4, 1))
        >>> Case.parse("x=1,1,5,5 kernel=3")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: unknown key 'kernel' in case spec 'x=1,1,5,5 kernel=3'; keys are name, x, w, stride, ...
        """
        if not isinstance(text, str):
            raise ValueError(f"a case spec must be a string, got {type(text).__name__}")
        fields: dict[str, Any] = {}
        for token in text.split():
            key, sep, value = token.partition("=")
            key = key.lower()
            if not sep or not value:
                raise ValueError(f"expected key=value in case spec {text!r}, got {token!r}")
            if key not in _CASE_KEYS:
                raise ValueError(f"unknown key {key!r} in case spec {text!r}; keys are {', '.join(_CASE_KEYS)}")
            if key in fields:
                raise ValueError(f"key {key!r} given twice in case spec {text!r}")
            fields[key] = _parse_value(key, value, text)
        missing = [key for key in ("x", "w") if key not in fields]
        if missing:
            raise ValueError(f"case spec {text!r} lacks {' and '.join(missing)} (e.g. 'x=8,3,32,32 w=16,3,3,3')")
        fields.setdefault("name", name)
        fields["with_bias"] = fields.pop("bias", False)
        return cls(**fields)

    @property
    def spec(self) -> str:
        """The case as a string that :meth:`parse` reads back; default options are left out."""
        parts = [f"name={self.name}", f"x={_format_ints(self.x)}", f"w={_format_ints(self.w)}"]
        if self.stride != 1:
            parts.append(f"stride={_format_ints(self.stride)}")
        if self.padding != 0:
            parts.append(f"padding={_format_padding(self.padding)}")
        if self.dilation != 1:
            parts.append(f"dilation={_format_ints(self.dilation)}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.with_bias:
            parts.append("bias=1")
        return " ".join(parts)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`jaxconv.conv` for this case."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def conv_spec(self, dtype: Any = jnp.float32) -> Any:
        """The core's static :class:`jaxconv.ConvSpec`: the same argument checks as ``jaxconv.conv``."""
        b = jax.ShapeDtypeStruct((self.w[0],), dtype) if self.with_bias else None
        return conv_spec(jax.ShapeDtypeStruct(self.x, dtype), jax.ShapeDtypeStruct(self.w, dtype), b, **self.options)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """``(N, FN, *out_spatial)``."""
        return (self.x[0], self.w[0], *self.conv_spec().geometry.out_spatial)

    @property
    def gemm_shape(self) -> tuple[int, int, int, int]:
        """``(groups, M, K, N)`` of the forward GEMM, per group: ``M = N_batch * prod(out)``, ``K = C/G * prod(k)``."""
        geometry = self.conv_spec().geometry
        return (
            self.groups,
            self.x[0] * geometry.num_windows,
            self.w[1] * geometry.window_size,
            self.w[0] // self.groups,
        )

    @property
    def flops(self) -> int:
        """Forward FLOPs, ``2 * N * FN * prod(out) * C/groups * prod(kernel)`` (multiply and add)."""
        groups, m, k, n = self.gemm_shape
        return 2 * groups * m * k * n


def _parse_ints(value: str, key: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise ValueError(f"{key} must be comma-separated ints in case spec {text!r}, got {value!r}") from None


def _parse_value(key: str, value: str, text: str) -> Any:
    if key == "name":
        return value
    if key == "bias":
        if value.lower() not in _TRUE + _FALSE:
            raise ValueError(f"bias must be 0/1 or true/false in case spec {text!r}, got {value!r}")
        return value.lower() in _TRUE
    if key == "padding":
        if value.upper() in PADDING_STRINGS:
            return value.upper()
        entries: list[Any] = []
        for entry in value.split(","):
            lo, sep, hi = entry.partition(":")
            ints = _parse_ints(f"{lo},{hi}" if sep else lo, key, text)
            entries.append(ints if sep else ints[0])
        return entries[0] if len(entries) == 1 and isinstance(entries[0], int) else tuple(entries)
    ints = _parse_ints(value, key, text)
    if key in ("x", "w"):
        return ints
    if key == "groups":
        if len(ints) != 1:
            raise ValueError(f"groups must be one int in case spec {text!r}, got {value!r}")
        return ints[0]
    return ints[0] if len(ints) == 1 else ints


_CNN = (
    ("lenet1", "x=128,1,28,28 w=32,1,5,5"),
    ("lenet2", "x=128,32,12,12 w=64,32,5,5"),
    ("cifar1", "x=64,3,32,32 w=64,3,3,3 padding=1"),
    ("cifar2", "x=64,64,32,32 w=64,64,3,3 padding=1"),
    ("cifar3", "x=64,128,16,16 w=128,128,3,3 padding=1"),
    ("cifar_s2", "x=64,64,32,32 w=128,64,3,3 stride=2 padding=1"),
    ("conv1x1", "x=64,256,16,16 w=256,256,1,1"),
    ("depthwise", "x=64,64,32,32 w=64,1,3,3 padding=1 groups=64"),
    ("dilated", "x=64,64,32,32 w=64,64,3,3 padding=2 dilation=2"),
)
_CPU_SMALL = (
    ("small", "x=8,3,16,16 w=8,3,3,3 padding=1 bias=1"),
    ("strided", "x=4,8,15,15 w=16,8,3,3 stride=2 padding=SAME"),
    ("grouped", "x=4,6,12,12 w=6,2,5,5 groups=3 dilation=2 padding=2:3,4:1 bias=1"),
    ("conv1d", "x=4,4,32 w=8,4,7 stride=3"),
    ("conv3d", "x=2,2,6,7,8 w=4,2,3,2,3 padding=1"),
)
PRESETS: dict[str, tuple[Case, ...]] = {
    "cpu-small": tuple(Case.parse(spec, name=name) for name, spec in _CPU_SMALL),
    "cnn": tuple(Case.parse(spec, name=name) for name, spec in _CNN),
}
"""Named case sets. ``cpu-small``: tiny cases of every kind, seconds in all (tests, notebooks).
``cnn``: the benchmark set of ``benchmarks/run.py`` (NCHW f32 CNN layers, one depthwise, one dilated)."""


# --- timing -------------------------------------------------------------------


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
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if min_time < 0:
        raise ValueError(f"min_time must be >= 0, got {min_time}")
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
    blocks = 1 if len(groups) == 1 else max(1, min(blocks, total))
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


# --- results ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Error:
    """Max abs error, and the same divided by the max abs value of the reference."""

    abs: float
    rel: float

    @classmethod
    def of(cls, value: Any, reference: Any) -> Error:
        """Computed in float64.

        >>> Error.of(np.array([1.0, 2.1]), np.array([1.0, 2.0]))
        Error(abs=0.1, rel=0.05)
        """
        value = np.asarray(value, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if value.shape != reference.shape:
            raise ValueError(f"shapes differ: {value.shape} vs reference {reference.shape}")
        if value.size == 0:
            return cls(0.0, 0.0)
        error = float(np.max(np.abs(value - reference)))
        scale = float(np.max(np.abs(reference)))
        return cls(error, error / scale if scale > 0 else (0.0 if error == 0 else math.inf))


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """Everything :func:`compare` measured on one case.

    Attributes:
      case: the case.
      dtype: the dtype's name.
      tolerance: the largest relative error that passes.
      errors: ours against the reference, keyed ``out``, ``dx``, ``dw`` (and ``db``).
      torch_errors: PyTorch's errors, or None when torch did not run.
      forward: forward times keyed ``jaxconv``, ``lax``, ``gemm`` (and ``torch``).
      value_and_grad: value-and-grad times keyed ``jaxconv``, ``lax`` (and ``torch``).
      temp_bytes: XLA temp bytes keyed ``jaxconv_forward``, ``lax_forward``,
        ``jaxconv_value_and_grad``, ``lax_value_and_grad``; None where not reported.
      notes: anything skipped, e.g. why torch did not run.
    """

    case: Case
    dtype: str
    tolerance: float
    errors: dict[str, Error]
    torch_errors: dict[str, Error] | None
    forward: dict[str, Timing]
    value_and_grad: dict[str, Timing]
    temp_bytes: dict[str, int | None]
    notes: tuple[str, ...] = ()

    @property
    def max_rel_error(self) -> float:
        return max(e.rel for e in self.errors.values())

    @property
    def torch_max_rel_error(self) -> float | None:
        return None if self.torch_errors is None else max(e.rel for e in self.torch_errors.values())

    @property
    def ok(self) -> bool:
        """Every error of ours, and of torch when it ran, within the tolerance (NaN fails)."""
        worst = [self.max_rel_error] + ([self.torch_max_rel_error] if self.torch_errors is not None else [])
        return all(e <= self.tolerance for e in worst)

    def ratio(self, kind: Literal["forward", "value_and_grad"], other: str = "lax") -> float | None:
        """Median time of ours over ``other``'s (below 1: ours is faster)."""
        times = getattr(self, kind)
        return times["jaxconv"].median / times[other].median if other in times else None

    def gflops(self, kind: Literal["forward", "value_and_grad"], who: str = "jaxconv") -> float | None:
        """GFLOP/s: the case's FLOPs (three times the forward's for value_and_grad) over the median time."""
        times = getattr(self, kind)
        if who not in times:
            return None
        flops = self.case.flops * (3 if kind == "value_and_grad" else 1)
        return flops / times[who].median / 1e9

    @property
    def gemm_gflops(self) -> float:
        """The measured rate of a plain GEMM of the forward's shape."""
        return self.case.flops / self.forward["gemm"].median / 1e9

    def gemm_fraction(self, kind: Literal["forward", "value_and_grad"] = "forward") -> float:
        """Our rate as a fraction of the GEMM rate."""
        return self.gflops(kind) / self.gemm_gflops

    @property
    def temp_ratio(self) -> float | None:
        """Our value_and_grad temp bytes over lax's."""
        ours, theirs = self.temp_bytes["jaxconv_value_and_grad"], self.temp_bytes["lax_value_and_grad"]
        if ours is None or theirs is None:
            return None
        return ours / theirs if theirs else (1.0 if ours == 0 else math.inf)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the raw measurements and the ratios and rates derived from them."""
        raw = dataclasses.asdict(self)
        raw["case"] = dict(raw["case"], spec=self.case.spec, out_shape=self.case.out_shape, flops=self.case.flops)
        raw["max_rel_error"] = self.max_rel_error
        raw["torch_max_rel_error"] = self.torch_max_rel_error
        raw["ok"] = self.ok
        raw["derived"] = {
            "forward_ratio_vs_lax": self.ratio("forward"),
            "value_and_grad_ratio_vs_lax": self.ratio("value_and_grad"),
            "forward_ratio_vs_torch": self.ratio("forward", "torch"),
            "value_and_grad_ratio_vs_torch": self.ratio("value_and_grad", "torch"),
            "forward_gflops": self.gflops("forward"),
            "value_and_grad_gflops": self.gflops("value_and_grad"),
            "lax_forward_gflops": self.gflops("forward", "lax"),
            "lax_value_and_grad_gflops": self.gflops("value_and_grad", "lax"),
            "gemm_gflops": self.gemm_gflops,
            "forward_gemm_fraction": self.gemm_fraction("forward"),
            "value_and_grad_gemm_fraction": self.gemm_fraction("value_and_grad"),
            "value_and_grad_temp_ratio": self.temp_ratio,
        }
        return raw


# --- the comparison -----------------------------------------------------------


def _loss(conv_fn: Callable[..., jax.Array], options: Mapping[str, Any], with_bias: bool) -> Callable[..., jax.Array]:
    """``L = sum(conv(x, w, b) * g)``: its gradient is the conv's VJP applied to the cotangent ``g``."""
    if with_bias:
        return lambda x, w, b, g: jnp.sum(conv_fn(x, w, b, **options) * g)
    return lambda x, w, g: jnp.sum(conv_fn(x, w, None, **options) * g)


def _compiled(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    return jax.jit(fn).lower(*args).compile()


def _temp_bytes(compiled: Any) -> int | None:
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backends without the analysis raise various errors
        return None
    size = getattr(analysis, "temp_size_in_bytes", None)
    return None if size is None else int(size)


def _blocking(fn: Callable[..., Any], args: Sequence[Any]) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(fn(*args))


def _gemm_operands(case: Case, dtype: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    groups, m, k, n = case.gemm_shape
    ka, kb = jax.random.split(key)
    lead = (groups,) if groups > 1 else ()
    return jax.random.normal(ka, (*lead, m, k), dtype), jax.random.normal(kb, (*lead, k, n), dtype)


def _reference_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(jnp.float32) if dtype.itemsize < 4 else dtype


def _check_dtype(dtype: Any) -> np.dtype:
    dtype = jnp.dtype(dtype)
    if dtype.name not in TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(TOLERANCES)}, got {dtype.name}")
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1 or jax.config.update('jax_enable_x64', True)"
        )
    return dtype


def _as_cases(cases: str | Case | Iterable[Case | str]) -> list[Case]:
    if isinstance(cases, Case):
        return [cases]
    if isinstance(cases, str):
        if cases in PRESETS:
            return list(PRESETS[cases])
        return [Case.parse(cases)]
    return [case if isinstance(case, Case) else Case.parse(case) for case in cases]


def _torch_or_none(torch: bool | Literal["auto"]) -> tuple[Any, str | None]:
    if torch is False:
        return None, None
    try:
        import torch as torch_module
    except ImportError as error:
        if torch is True:
            raise ValueError(f"torch=True but PyTorch cannot be imported: {error}") from None
        return None, "torch not installed"
    return torch_module, None


def _torch_device(torch: Any) -> str:
    on_gpu = jax.default_backend() in ("gpu", "cuda", "rocm")
    return "cuda" if on_gpu and torch.cuda.is_available() else "cpu"


def _torch_functions(
    torch: Any, case: Case, inputs: Sequence[np.ndarray], dtype: np.dtype, device: str
) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], tuple[Any, ...]]]:
    """Forward, forward + autograd backward, and the errors' (out, *grads) of PyTorch's conv."""
    import torch.nn.functional as F

    torch_dtype = getattr(torch, dtype.name)
    x, w, b, g = (None if a is None else torch.tensor(a, device=device, dtype=torch_dtype) for a in inputs)
    params = (x, w) + ((b,) if b is not None else ())
    conv_nd = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(case.x) - 2]
    geometry = case.conv_spec().geometry
    pads = geometry.padding
    symmetric = all(lo == hi >= 0 for lo, hi in pads)
    # F.pad wants (last_lo, last_hi, ..., first_lo, first_hi); negative pads crop.
    pad_arg = tuple(p for lo_hi in reversed(pads) for p in lo_hi)

    def torch_conv(x, w, b):
        if not symmetric:
            x = F.pad(x, pad_arg)
        padding = tuple(lo for lo, _ in pads) if symmetric else 0
        return conv_nd(x, w, b, stride=geometry.stride, padding=padding, dilation=geometry.dilation, groups=case.groups)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            out = torch_conv(x, w, b)
        sync()
        return out

    leaves = tuple(p.detach().requires_grad_(True) for p in params)

    def value_and_grad():
        out = torch_conv(*leaves, *(() if b is not None else (None,)))
        loss = torch.sum(out * g)
        grads = torch.autograd.grad(loss, leaves)
        sync()
        return loss, grads

    def outputs():
        out = torch_conv(*leaves, *(() if b is not None else (None,)))
        grads = torch.autograd.grad(out, leaves, grad_outputs=g)
        return tuple(t.detach().to("cpu", torch.float64).numpy() for t in (out, *grads))

    return forward, value_and_grad, outputs


def _compare_case(
    case: Case,
    *,
    conv_fn: Callable[..., jax.Array],
    dtype: np.dtype,
    tolerance: float,
    repeats: int,
    min_time: float,
    torch: Any,
    torch_note: str | None,
    seed: int,
    say: Callable[[str], None],
) -> CaseResult:
    rng = np.random.default_rng(seed)
    shapes = [case.x, case.w] + ([(case.w[0],)] if case.with_bias else []) + [case.out_shape]
    # Inputs rounded to the dtype once; the reference and torch see the same values.
    host = np.float64 if dtype == np.float64 else np.float32
    inputs = [np.asarray(jnp.asarray(rng.standard_normal(s), dtype).astype(host)) for s in shapes]
    args = [jnp.asarray(a, dtype) for a in inputs]
    grad_names = ("dx", "dw", "db")[: len(args) - 1]
    argnums = tuple(range(len(args) - 1))

    ref_dtype = _reference_dtype(dtype)
    ref_args = [a.astype(ref_dtype) for a in args]
    fns = {}
    for who, fn in (("jaxconv", conv_fn), ("lax", lax_conv)):
        loss = _loss(fn, case.options, case.with_bias)
        fns[f"{who}_forward"] = _compiled(lambda x, w, *b, fn=fn: fn(x, w, *b, **case.options), args[:-1])
        fns[f"{who}_value_and_grad"] = _compiled(jax.value_and_grad(loss, argnums=argnums), args)
    highest = dict(case.options, precision=lax.Precision.HIGHEST)
    reference = _compiled(
        lambda *a: (lax_conv(*a[:-1], **highest), jax.grad(_loss(lax_conv, highest, case.with_bias), argnums)(*a)),
        ref_args,
    )
    gemm_args = _gemm_operands(case, dtype, jax.random.key(seed))
    gemm = _compiled(jnp.matmul, gemm_args)

    ref_out, ref_grads = reference(*ref_args)
    out = fns["jaxconv_forward"](*args[:-1])
    _, grads = fns["jaxconv_value_and_grad"](*args)
    errors = {"out": Error.of(out, ref_out)}
    errors.update((name, Error.of(a, r)) for name, a, r in zip(grad_names, grads, ref_grads))
    del out, grads

    notes = [torch_note] if torch_note else []
    torch_errors = None
    torch_fns: tuple[Callable[[], Any], ...] | None = None
    if torch is not None:
        device = _torch_device(torch)
        torch_inputs = inputs[:2] + (inputs[2:3] if case.with_bias else [None]) + inputs[-1:]
        try:
            *torch_fns, torch_outputs = _torch_functions(torch, case, torch_inputs, dtype, device)
            torch_values = torch_outputs()
            references = (ref_out, *ref_grads)
            torch_errors = {name: Error.of(a, r) for name, a, r in zip(("out", *grad_names), torch_values, references)}
        except (RuntimeError, TypeError, NotImplementedError, AttributeError) as error:
            torch_fns, torch_errors = None, None
            notes.append(f"torch failed on {dtype.name} ({device}): {str(error).splitlines()[0]}")
    del ref_out, ref_grads

    def timed(kind: str, extra: Mapping[str, Callable[[], Any]]) -> dict[str, Timing]:
        kind_args = args[:-1] if kind == "forward" else args
        jax_group = {who: _blocking(fns[f"{who}_{kind}"], kind_args) for who in ("jaxconv", "lax")}
        groups = [{**jax_group, **extra}]
        if torch_fns is not None:
            groups.append({"torch": torch_fns[0 if kind == "forward" else 1]})
        say(f"{case.name}: timing {kind}")
        return time_interleaved(groups, repeats=repeats, min_time=min_time)

    forward = timed("forward", {"gemm": _blocking(gemm, gemm_args)})
    value_and_grad = timed("value_and_grad", {})
    temp_bytes = {name: _temp_bytes(compiled) for name, compiled in fns.items()}
    return CaseResult(
        case=case,
        dtype=dtype.name,
        tolerance=tolerance,
        errors=errors,
        torch_errors=torch_errors,
        forward=forward,
        value_and_grad=value_and_grad,
        temp_bytes=temp_bytes,
        notes=tuple(notes),
    )


def _progress_writer(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda message: print(message, file=sys.stderr, flush=True)
    return lambda message: None


def compare(
    cases: str | Case | Iterable[Case | str],
    *,
    dtype: Any = "float32",
    repeats: int = 10,
    min_time: float = 0.5,
    torch: bool | Literal["auto"] = "auto",
    conv_fn: Callable[..., jax.Array] | None = None,
    tolerance: float | None = None,
    seed: int = 0,
    progress: bool | Callable[[str], None] = False,
) -> list[CaseResult]:
    """Compares ``conv_fn`` (default :func:`jaxconv.conv`) with lax's conv, and PyTorch's, on each case.

    See the module docstring for what is measured and how.

    Args:
      cases: a preset name (see :data:`PRESETS`), a :class:`Case`, a case spec
        string, or a sequence of cases and spec strings.
      dtype: one of :data:`TOLERANCES`' dtypes; float64 needs ``jax_enable_x64``.
      repeats: at least this many timed calls per measurement.
      min_time: and about this many seconds per measurement (0: exactly ``repeats`` calls).
      torch: also run PyTorch: True (an error if it is missing), False, or "auto" (when importable).
      conv_fn: the implementation under test, with :func:`jaxconv.conv`'s signature.
      tolerance: overrides the dtype's tolerance.
      seed: seeds the random inputs.
      progress: True prints progress to stderr; a callable receives each message.

    Returns:
      One :class:`CaseResult` per case, in order.

    >>> [r] = compare("x=2,3,9,9 w=4,3,3,3 stride=2 bias=1", repeats=1, min_time=0, torch=False)
    >>> r.ok, sorted(r.errors), r.value_and_grad["jaxconv"].median > 0
    (True, ['db', 'dw', 'dx', 'out'], True)
    """
    dtype = _check_dtype(dtype)
    cases = _as_cases(cases)
    tolerance = TOLERANCES[dtype.name] if tolerance is None else float(tolerance)
    say = _progress_writer(progress)
    torch_module, torch_note = _torch_or_none(torch)
    old_threads = None
    if torch_module is not None:
        old_threads = torch_module.get_num_threads()
        torch_module.set_num_threads(cpu_count())
    results = []
    try:
        for index, case in enumerate(cases):
            say(f"[{index + 1}/{len(cases)}] {case.name}: compiling ({case.spec})")
            result = _compare_case(
                case,
                conv_fn=conv if conv_fn is None else conv_fn,
                dtype=dtype,
                tolerance=tolerance,
                repeats=repeats,
                min_time=min_time,
                torch=torch_module,
                torch_note=torch_note,
                seed=seed + index,
                say=say,
            )
            results.append(result)
            say(
                f"[{index + 1}/{len(cases)}] {case.name}: max rel error {result.max_rel_error:.1e}, "
                f"forward {result.ratio('forward'):.2f}x lax, value_and_grad {result.ratio('value_and_grad'):.2f}x lax"
            )
    finally:
        if old_threads is not None:
            torch_module.set_num_threads(old_threads)
    return results


# --- environment, tables, files ----------------------------------------------


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def malloc_note() -> str | None:
    """A warning when glibc's malloc thresholds are not raised (see :data:`MALLOC_ENV`); None when they are."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    unset = [name for name in MALLOC_ENV if name not in os.environ]
    if not unset:
        return None
    settings = " ".join(f"{name}={value}" for name, value in MALLOC_ENV.items())
    return (
        f"note: {', '.join(unset)} not set; XLA's big temp buffers are then mmapped afresh on every call and "
        f"timings can flip between two speeds from one process to the next. For stable timings run with: {settings}"
    )


def environment() -> dict[str, Any]:
    """The machine and the versions: what a benchmark result must be read with."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "malloc_env": {name: os.environ.get(name) for name in MALLOC_ENV},
        "numpy": np.__version__,
        "torch": _version("torch"),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _ratio(value: float | None) -> str:
    return _fmt(value, ".3g")


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def geometric_mean(values: Iterable[float | None]) -> float | None:
    """Of the values that are not None; None if none are.

    >>> geometric_mean([0.5, 2.0, None])
    1.0
    """
    present = [v for v in values if v is not None]
    return math.exp(sum(map(math.log, present)) / len(present)) if present else None


def format_results(results: Sequence[CaseResult]) -> str:
    """Two plain tables, one row per case: accuracy, then speed and memory, and the geometric means."""
    accuracy_header = ["case", "dtype", "out abs/rel", "dL/dx abs/rel", "dL/dw abs/rel", "dL/db abs/rel"]
    accuracy_header += ["torch max rel", "tolerance", "ok"]
    accuracy = []
    for r in results:
        cells = [r.case.name, r.dtype]
        for name in ("out", "dx", "dw", "db"):
            e = r.errors.get(name)
            cells.append("-" if e is None else f"{e.abs:.1e}/{e.rel:.1e}")
        cells += [_fmt(r.torch_max_rel_error, ".1e"), f"{r.tolerance:.0e}", "ok" if r.ok else "FAIL"]
        accuracy.append(cells)
    speed_header = ["case", "fwd ms", "lax", "ratio", "vag ms", "lax", "ratio", "noise", "GFLOP/s fwd", "vag"]
    speed_header += ["GEMM", "fwd/GEMM", "temp MiB", "lax", "ratio", "torch vag ms", "ours/torch"]
    speed = []
    for r in results:
        f, v = r.forward, r.value_and_grad
        noise = max(t.iqr / t.median for t in (v["jaxconv"], v["lax"]))
        speed.append(
            [
                r.case.name,
                f"{f['jaxconv'].median * 1e3:.2f}",
                f"{f['lax'].median * 1e3:.2f}",
                _ratio(r.ratio("forward")),
                f"{v['jaxconv'].median * 1e3:.2f}",
                f"{v['lax'].median * 1e3:.2f}",
                _ratio(r.ratio("value_and_grad")),
                f"{noise:.0%}",
                _fmt(r.gflops("forward"), ".1f"),
                _fmt(r.gflops("value_and_grad"), ".1f"),
                f"{r.gemm_gflops:.1f}",
                f"{r.gemm_fraction():.0%}",
                _mib(r.temp_bytes["jaxconv_value_and_grad"]),
                _mib(r.temp_bytes["lax_value_and_grad"]),
                _ratio(r.temp_ratio),
                _fmt(v["torch"].median * 1e3 if "torch" in v else None, ".2f"),
                _ratio(r.ratio("value_and_grad", "torch")),
            ]
        )
    means = {
        "forward vs lax": geometric_mean(r.ratio("forward") for r in results),
        "value_and_grad vs lax": geometric_mean(r.ratio("value_and_grad") for r in results),
        "value_and_grad vs torch": geometric_mean(r.ratio("value_and_grad", "torch") for r in results),
    }
    notes = [f"{r.case.name}: {note}" for r in results for note in r.notes]
    return "\n".join(
        [
            "Accuracy (max abs / max abs normalised by max |reference|; reference: lax at precision=HIGHEST)",
            _table(accuracy_header, accuracy),
            "",
            "Speed (median ms; ratio = jaxconv / lax; vag = value_and_grad; noise = IQR/median, worst of the two;",
            "       fwd/GEMM = our forward GFLOP/s over a plain GEMM of the same M, K, N; temp = vag's XLA temp bytes)",
            _table(speed_header, speed),
            "",
            "geometric means of jaxconv time ratios: " + ", ".join(f"{k} {_ratio(v)}" for k, v in means.items()),
            *notes,
        ]
    )


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def write_json(path: str | os.PathLike, results: Sequence[CaseResult], **meta: Any) -> None:
    """``{"environment": ..., "tolerances": ..., "results": [...]}`` with each result's :meth:`CaseResult.to_dict`."""
    document = {
        "environment": environment(),
        "tolerances": TOLERANCES,
        **meta,
        "results": [r.to_dict() for r in results],
    }
    with open(path, "w") as file:
        json.dump(document, file, indent=2, default=str)
        file.write("\n")


def write_csv(path: str | os.PathLike, results: Sequence[CaseResult]) -> None:
    """One row per case: the flattened :meth:`CaseResult.to_dict` (columns like ``errors.dx.rel``)."""
    rows = [_flatten(r.to_dict()) for r in results]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# --- the subcommand -----------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxconv compare``."""
    parser.add_argument(
        "--preset",
        action="append",
        choices=sorted(PRESETS),
        help="a named case set (repeatable); default cpu-small when no --case is given",
    )
    parser.add_argument(
        "--case",
        action="append",
        type=_case_argument,
        metavar="SPEC",
        help='a case such as "x=64,64,32,32 w=64,64,3,3 stride=1 padding=1" (repeatable; keys: '
        + ", ".join(_CASE_KEYS)
        + "; padding also lo:hi,lo:hi or VALID/SAME/SAME_LOWER)",
    )
    parser.add_argument("--only", action="append", metavar="NAME", help="run only the cases of this name (repeatable)")
    parser.add_argument("--dtype", default="float32", choices=sorted(TOLERANCES), help="default float32")
    parser.add_argument("--repeats", type=_positive_int, default=10, help="at least N timed calls per measurement")
    parser.add_argument(
        "--min-time", type=float, default=0.5, help="and about this many seconds per measurement (default 0.5)"
    )
    parser.add_argument(
        "--torch", choices=("auto", "on", "off"), default="auto", help="also time PyTorch (auto: when installed)"
    )
    parser.add_argument("--tolerance", type=float, help="override the dtype's tolerance on relative errors")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--json", metavar="FILE", help="write all measurements as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write one row per case as CSV")
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def _case_argument(text: str) -> Case:
    try:
        return Case.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def select_cases(presets: Sequence[str] | None, cases: Sequence[Case] | None, only: Sequence[str] | None) -> list[Case]:
    """The presets' cases then the given ones, filtered by name; ValueError for names that match nothing.

    >>> [c.name for c in select_cases(["cnn"], None, ["cifar2", "conv1x1"])]
    ['cifar2', 'conv1x1']
    """
    selected = [case for preset in presets or () for case in PRESETS[preset]] + list(cases or ())
    if not presets and not cases:
        selected = list(PRESETS["cpu-small"])
    if only:
        unknown = sorted(set(only) - {case.name for case in selected})
        if unknown:
            raise ValueError(f"--only {', '.join(unknown)}: no such case; cases are {[c.name for c in selected]}")
        selected = [case for case in selected if case.name in only]
    return selected


def run(args: argparse.Namespace) -> int:
    """``jaxconv compare``: exit status 0 when every error is within tolerance, 1 otherwise, 2 on bad options."""
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    try:
        cases = select_cases(args.preset, args.case, args.only)
    except ValueError as error:
        print(f"jaxconv compare: error: {error}", file=sys.stderr)
        return 2
    note = malloc_note()
    if note:
        print(note, file=sys.stderr)
    torch = {"auto": "auto", "on": True, "off": False}[args.torch]
    info = environment()
    print(
        f"jax {info['jax']} on {info['backend']} ({info['device']}, {info['cpu']}, {info['cores']} cores), "
        f"torch {info['torch'] if torch is not False else 'off'}, dtype {args.dtype}",
        flush=True,
    )
    results = compare(
        cases,
        dtype=args.dtype,
        repeats=args.repeats,
        min_time=args.min_time,
        torch=torch,
        tolerance=args.tolerance,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(format_results(results))
    if args.json:
        write_json(args.json, results)
    if args.csv:
        write_csv(args.csv, results)
    failed = [r.case.name for r in results if not r.ok]
    if failed:
        print(f"FAIL: errors above the tolerance in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
